"""The math core against NumPy float64 referees written here from the papers' equations.

Every ``ref_*`` function below is an independent float64 implementation (it does not
import or mirror the library's code paths): DDPM (Ho et al. 2020) eqs. 4, 6, 7; DDIM
(Song et al. 2021) eqs. 12 and 16; v (Salimans & Ho 2022); zero-terminal SNR (Lin et al.
2024, Algorithm 1); the cosine schedule (Nichol & Dhariwal 2021); and diffusers' beta
and timestep-spacing conventions. The library works in float32, so the default
tolerance is a few float32 ulps (rtol 1e-5, atol 1e-6); every looser tolerance says why.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from diffusion_jax import forward, parameterization, samplers, schedules, timesteps

RTOL, ATOL = 1e-5, 1e-6
F32_EPS = 2.0**-24  # half an ulp of a float32 just below 1 (the rounding error of alpha_bar near 1)


# ----------------------------------------------------------------------------- referees


def ref_linear(T, start=1e-4, end=0.02):
    return np.linspace(start, end, T, dtype=np.float64)


def ref_scaled_linear(T, start=0.00085, end=0.012):
    return np.linspace(math.sqrt(start), math.sqrt(end), T, dtype=np.float64) ** 2


def ref_cosine(T, s=0.008, cap=0.999):
    def f(u):
        return np.cos((u + s) / (1 + s) * np.pi / 2) ** 2

    i = np.arange(T, dtype=np.float64)
    return np.minimum(1.0 - f((i + 1) / T) / f(i / T), cap)


REF_BETAS = {"linear": ref_linear, "scaled_linear": ref_scaled_linear, "squaredcos_cap_v2": ref_cosine}


def ref_alpha_bars(betas):
    """DDPM eq. 4: alpha_bar_t = prod_{s<=t} (1 - beta_s)."""
    out = np.empty_like(betas)
    acc = 1.0
    for i, b in enumerate(betas):
        acc *= 1.0 - b
        out[i] = acc
    return out


def ref_zero_terminal(betas):
    """Lin et al. 2024, Algorithm 1, verbatim in float64. Returns (betas, alpha_bars)."""
    alphas = 1.0 - betas
    alphas_bar = np.cumprod(alphas)
    alphas_bar_sqrt = np.sqrt(alphas_bar)
    a0 = alphas_bar_sqrt[0].copy()
    aT = alphas_bar_sqrt[-1].copy()
    alphas_bar_sqrt = alphas_bar_sqrt - aT
    alphas_bar_sqrt = alphas_bar_sqrt * a0 / (a0 - aT)
    alphas_bar = alphas_bar_sqrt**2
    alphas = alphas_bar[1:] / alphas_bar[:-1]
    alphas = np.concatenate([alphas_bar[0:1], alphas])
    return 1.0 - alphas, alphas_bar


def ref_schedule(name, T, zero):
    betas = REF_BETAS[name](T)
    if zero:
        return ref_zero_terminal(betas)
    return betas, ref_alpha_bars(betas)


def ref_posterior_variance(betas, alpha_bars):
    """DDPM eq. 7: beta_tilde_t = (1 - ab_{t-1}) / (1 - ab_t) beta_t with ab_{-1} = 1, all t."""
    return np.array(
        [betas[s] * (1.0 - (alpha_bars[s - 1] if s > 0 else 1.0)) / (1.0 - alpha_bars[s]) for s in range(len(betas))]
    )


def ref_posterior(betas, alpha_bars, x0, x_t, t):
    """DDPM eqs. 6-7 per row; returns (mean, variance, clipped log variance)."""
    ab = alpha_bars[t]
    ab_prev = np.where(t > 0, alpha_bars[np.maximum(t - 1, 0)], 1.0)
    beta = betas[t]
    alpha = 1.0 - beta
    shape = (-1,) + (1,) * (x0.ndim - 1)
    c0 = (np.sqrt(ab_prev) * beta / (1.0 - ab)).reshape(shape)
    ct = (np.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab)).reshape(shape)
    mean = c0 * x0 + ct * x_t
    var_all = ref_posterior_variance(betas, alpha_bars)
    logvar_all = np.log(np.concatenate([var_all[1:2], var_all[1:]]))
    return mean, var_all[t].reshape(shape), logvar_all[t].reshape(shape)


def ref_convert(pred, x_t, ab, source, target):
    """Closed forms with a = sqrt(ab), b = sqrt(1 - ab), x_t = a x0 + b eps, v = a eps - b x0."""
    a, b = np.sqrt(ab), np.sqrt(1.0 - ab)
    if source == target:
        return pred
    table = {
        ("eps", "x0"): lambda p: (x_t - b * p) / a,
        ("v", "x0"): lambda p: a * x_t - b * p,
        ("x0", "eps"): lambda p: (x_t - a * p) / b,
        ("v", "eps"): lambda p: b * x_t + a * p,
        ("eps", "v"): lambda p: (p - b * x_t) / a,  # a eps - b (x_t - b eps)/a
        ("x0", "v"): lambda p: (a * x_t - p) / b,  # a (x_t - a x0)/b - b x0
    }
    return table[(source, target)](pred)


def ref_ddim_step(pred, x_t, ab, ab_prev, eta, z, prediction):
    """DDIM eq. 12 with sigma from eq. 16."""
    x0 = ref_convert(pred, x_t, ab, prediction, "x0")
    eps = ref_convert(pred, x_t, ab, prediction, "eps")
    sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
    return np.sqrt(ab_prev) * x0 + np.sqrt(1 - ab_prev - sigma**2) * eps + sigma * z, x0


def f64(x):
    return np.asarray(x, np.float64)


# ----------------------------------------------------------------------------- schedules

SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"]


@pytest.mark.parametrize("zero", [False, True])
@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("T", [1000, 37])
def test_schedule_betas_alpha_bars(name, zero, T):
    s = schedules.make_schedule(name, T, zero_terminal_snr=zero)
    betas, ab = ref_schedule(name, T, zero)
    assert s.num_timesteps == T
    assert s.betas.dtype == jnp.float32 and s.alpha_bars.dtype == jnp.float32
    # diffusers rounds betas to float32 (1 ulp = 6e-8 relative); rtol 1e-5 covers that
    # and the float32 storage of alpha_bar.
    np.testing.assert_allclose(f64(s.betas), betas, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(f64(s.alpha_bars), ab, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(f64(s.alphas), 1.0 - betas, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(f64(s.alpha_bars_prev), np.concatenate([[1.0], ab[:-1]]), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(f64(s.signal_scale), np.sqrt(ab), rtol=RTOL, atol=ATOL)


def test_cosine_alias_and_cap():
    a = schedules.make_schedule("cosine", 1000)
    b = schedules.make_schedule("squaredcos_cap_v2", 1000)
    np.testing.assert_array_equal(a.betas, b.betas)
    assert float(a.betas[-1]) == pytest.approx(0.999, rel=1e-6)  # the cap binds at the last step
    assert np.all(np.asarray(a.betas) <= np.float32(0.999))


@pytest.mark.parametrize("zero", [False, True])
@pytest.mark.parametrize("name", SCHEDULES)
def test_snr_and_log_snr(name, zero):
    s = schedules.make_schedule(name, 1000, zero_terminal_snr=zero)
    _, ab = ref_schedule(name, 1000, zero)
    ab32 = f64(s.alpha_bars)
    # (a) the formula: SNR evaluated in float64 on the alpha_bars the library stores.
    #     1 - ab is exact in float32 for ab >= 0.5 (Sterbenz), so only a few roundings.
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(f64(s.snr), ab32 / (1.0 - ab32), rtol=RTOL, atol=0)
        np.testing.assert_allclose(f64(s.log_snr), np.log(ab32) - np.log1p(-ab32), rtol=RTOL, atol=1e-5)
    # (b) end to end against the full float64 referee. Storing alpha_bar near 1 in float32
    #     leaves an absolute error of up to 2^-24 in it, i.e. a relative error of
    #     2^-24 / (1 - ab) in 1 - ab: SNR is ill-conditioned there, so the tolerance is
    #     scaled by that condition number (this is float32 storage, not the formula).
    with np.errstate(divide="ignore"):
        snr_ref = ab / (1.0 - ab)
        log_ref = np.log(ab) - np.log1p(-ab)
    cond = F32_EPS / (1.0 - ab)
    finite = np.isfinite(log_ref)
    snr_lib, log_lib = f64(s.snr), f64(s.log_snr)
    assert np.all(np.abs(snr_lib - snr_ref) <= (RTOL + 2 * cond) * snr_ref + 1e-12)
    assert np.all(np.abs(log_lib[finite] - log_ref[finite]) <= 2 * cond[finite] + 1e-5 + RTOL * np.abs(log_ref[finite]))
    # SNR decreases monotonically along the chain.
    assert np.all(np.diff(snr_lib) < 0)
    if zero:
        assert snr_lib[-1] == 0.0 and log_lib[-1] == -np.inf


# ----------------------------------------------------------------------------- forward process


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(20240611)


def rand_t(rng, B, T):
    t = rng.integers(0, T, size=B)
    t[:3] = [0, T - 1, 1]  # always include the edges
    return t


@pytest.mark.parametrize("name", SCHEDULES)
def test_q_sample_and_moments(name, rng):
    s = schedules.make_schedule(name, 1000)
    _, ab = ref_schedule(name, 1000, False)
    B = 16
    x0 = rng.uniform(-1, 1, size=(B, 4, 4, 3)).astype(np.float32)
    eps = rng.standard_normal((B, 4, 4, 3)).astype(np.float32)
    t = rand_t(rng, B, 1000)
    a = np.sqrt(ab[t]).reshape(-1, 1, 1, 1)
    b = np.sqrt(1 - ab[t]).reshape(-1, 1, 1, 1)
    want = a * f64(x0) + b * f64(eps)  # DDPM eq. 4, reparameterised
    got = forward.q_sample(s, x0, jnp.asarray(t, jnp.int32), eps)
    # |x_t| reaches ~4 (eps is Gaussian), so atol is a few ulps of that magnitude.
    np.testing.assert_allclose(f64(got), want, rtol=RTOL, atol=4e-6)
    mean, std = forward.q_moments(s, x0, jnp.asarray(t, jnp.int32))
    assert std.shape == (B, 1, 1, 1)
    np.testing.assert_allclose(f64(mean), a * f64(x0), rtol=RTOL, atol=ATOL)
    # sqrt(1 - ab) at t = 0 inherits the float32 storage error of ab near 1:
    # relative error up to 2^-24 / (2 (1 - ab_0)) ~ 3e-4 for the linear schedule.
    np.testing.assert_allclose(f64(std), b, rtol=RTOL + F32_EPS / (1 - ab[0]), atol=ATOL)
    # a scalar t is shared by the whole batch
    got_scalar = forward.q_sample(s, x0, 500, eps)
    want_scalar = math.sqrt(ab[500]) * f64(x0) + math.sqrt(1 - ab[500]) * f64(eps)
    np.testing.assert_allclose(f64(got_scalar), want_scalar, rtol=RTOL, atol=4e-6)


@pytest.mark.parametrize("zero", [False, True])
@pytest.mark.parametrize("name", SCHEDULES)
def test_posterior(name, zero, rng):
    s = schedules.make_schedule(name, 1000, zero_terminal_snr=zero)
    B = 32
    x0 = rng.uniform(-1, 1, size=(B, 5, 3)).astype(np.float32)
    x_t = rng.standard_normal((B, 5, 3)).astype(np.float32)
    t = rand_t(rng, B, 1000)
    mean, var, logvar = forward.q_posterior(s, x0, x_t, jnp.asarray(t, jnp.int32))
    assert mean.shape == x0.shape and var.shape == (B, 1, 1) and logvar.shape == (B, 1, 1)

    # (a) The formulas, evaluated by the referee on the float32 schedule the library
    #     stores. 1 - alpha_bar at t <= 1 has only ~4 significant digits in float32
    #     (alpha_bar ~ 0.9999), which is float32 storage, not the posterior formulas; the
    #     schedule itself is checked against the full float64 referee above and (b) below.
    betas32, ab32 = f64(s.betas), f64(s.alpha_bars)
    m_ref, v_ref, lv_ref = ref_posterior(betas32, ab32, f64(x0), f64(x_t), t)
    np.testing.assert_allclose(f64(mean), m_ref, rtol=RTOL, atol=2e-6)
    np.testing.assert_allclose(f64(var), v_ref, rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(f64(logvar), lv_ref, rtol=RTOL, atol=ATOL)
    assert float(var[list(t).index(0), 0, 0]) == 0.0  # beta_tilde_0 = 0
    # clipped log variance: the t = 0 entry is t = 1's
    full = f64(forward.posterior_log_variance_clipped(s))
    assert np.isfinite(full).all() and full[0] == full[1]

    # (b) End to end against the full float64 referee, with tolerance scaled by the
    #     float32 conditioning of 1 - alpha_bar_{t-1} (see test_snr_and_log_snr).
    betas, ab = ref_schedule(name, 1000, zero)
    v_full = ref_posterior_variance(betas, ab)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    cond = F32_EPS / np.maximum(1 - ab_prev, 1e-300) + F32_EPS / (1 - ab)
    lib_v = f64(forward.posterior_variance(s))
    assert np.all(np.abs(lib_v - v_full) <= (RTOL + 2 * cond) * v_full + 1e-12)


def test_posterior_mean_is_consistent_with_forward_marginals():
    """Sanity identity: for x0 fixed, E[x_{t-1}] = E_{x_t}[mu_tilde(x_t, x0)] (DDPM eq. 6-7).

    mu_tilde is linear in x_t, so plugging E[x_t] = sqrt(ab_t) x0 must give sqrt(ab_{t-1}) x0.
    The identity needs ab_t = alpha_t ab_{t-1}; betas and alpha_bars are stored separately
    in float32, so it holds only to ~2^-24 / (1 - ab_t) relative (about 2e-4 at t = 1 for
    the linear schedule, where 1 - ab_1 ~ 2.2e-4). The tolerance carries that factor.
    """
    s = schedules.linear()
    x0 = jnp.asarray(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
    for t in [1, 2, 10, 500, 999]:
        ab_t = float(s.alpha_bars[t])
        mean_xt = math.sqrt(ab_t) * x0
        mu, _, _ = forward.q_posterior(s, x0, mean_xt, t)
        rtol = 1e-5 + 2 * F32_EPS / (1 - ab_t)
        np.testing.assert_allclose(mu, math.sqrt(float(s.alpha_bars[t - 1])) * x0, rtol=rtol, atol=1e-6)


# ----------------------------------------------------------------------------- parameterisations

PREDS = ["eps", "x0", "v"]


@pytest.mark.parametrize("target", PREDS)
@pytest.mark.parametrize("source", PREDS)
def test_conversions(source, target, rng):
    B = 24
    # alpha_bar in [0.05, 0.95] per row: the conversions divide by sqrt(ab) or sqrt(1-ab)
    # (>= 0.22), which amplifies float32 rounding of O(1..4) inputs by at most ~5x,
    # hence atol 1e-5 instead of 1e-6.
    ab = rng.uniform(0.05, 0.95, size=B)
    x_t = rng.standard_normal((B, 3, 2)).astype(np.float32)
    pred = rng.standard_normal((B, 3, 2)).astype(np.float32)
    want = ref_convert(f64(pred), f64(x_t), ab.reshape(-1, 1, 1), source, target)
    ab32 = jnp.asarray(ab, jnp.float32)
    got = parameterization.convert(pred, x_t, ab32, source=source, target=target)
    np.testing.assert_allclose(f64(got), want, rtol=RTOL, atol=1e-5)
    fn = {"eps": parameterization.to_eps, "x0": parameterization.to_x0, "v": parameterization.to_v}[target]
    np.testing.assert_allclose(f64(fn(pred, x_t, ab32, source)), want, rtol=RTOL, atol=1e-5)
    # a scalar alpha_bar broadcasts over the whole batch
    got_s = parameterization.convert(pred, x_t, jnp.float32(ab[0]), source=source, target=target)
    want_s = ref_convert(f64(pred), f64(x_t), np.float64(np.float32(ab[0])), source, target)
    np.testing.assert_allclose(f64(got_s), want_s, rtol=RTOL, atol=1e-5)


def test_velocity_definition(rng):
    """Salimans & Ho 2022: v = sqrt(ab) eps - sqrt(1 - ab) x0, and v = d x_phi / d phi."""
    x0 = rng.uniform(-1, 1, size=(8, 3)).astype(np.float32)
    eps = rng.standard_normal((8, 3)).astype(np.float32)
    phi = rng.uniform(0.1, 1.4, size=8)
    ab = np.cos(phi) ** 2
    want = np.cos(phi)[:, None] * f64(eps) - np.sin(phi)[:, None] * f64(x0)
    got = parameterization.velocity(x0, eps, jnp.asarray(ab, jnp.float32))
    np.testing.assert_allclose(f64(got), want, rtol=RTOL, atol=2e-6)
    # With a = cos(phi), b = sin(phi): x_phi = cos(phi) x0 + sin(phi) eps and
    # d x_phi / d phi = cos(phi) eps - sin(phi) x0 = v (central finite difference).
    h = 1e-6
    x_phi = lambda p: np.cos(p)[:, None] * f64(x0) + np.sin(p)[:, None] * f64(eps)
    fd = (x_phi(phi + h) - x_phi(phi - h)) / (2 * h)
    np.testing.assert_allclose(f64(got), fd, rtol=1e-5, atol=2e-6)


# ----------------------------------------------------------------------------- DDIM step


@pytest.mark.parametrize("prediction", PREDS)
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("t, t_prev", [(500, 480), (999, 979), (20, 0), (0, None)])
def test_ddim_step(prediction, eta, t, t_prev, rng):
    s = schedules.linear()
    ab32 = f64(s.alpha_bars)
    ab = ab32[t]
    ab_prev = 1.0 if t_prev is None else ab32[t_prev]  # the final step goes to the data
    B = 6
    x_t = rng.standard_normal((B, 4, 2)).astype(np.float32)
    pred = rng.standard_normal((B, 4, 2)).astype(np.float32)
    z = rng.standard_normal((B, 4, 2)).astype(np.float32)
    x_prev, x0 = samplers.ddim_step(
        pred, x_t, jnp.float32(ab), jnp.float32(ab_prev), eta, z, prediction=prediction
    )
    want_prev, want_x0 = ref_ddim_step(f64(pred), f64(x_t), ab, ab_prev, eta, f64(z), prediction)
    # eps -> x0 at t = 999 divides by sqrt(ab) ~ 6e-3: float32 rounding of O(4) inputs is
    # amplified ~160x there, so the tolerance is relative to the largest |value|.
    scale = max(1.0, np.abs(want_x0).max(), np.abs(want_prev).max())
    np.testing.assert_allclose(f64(x0), want_x0, rtol=RTOL, atol=2e-6 * scale)
    np.testing.assert_allclose(f64(x_prev), want_prev, rtol=RTOL, atol=2e-6 * scale)
    # DDIM eq. 16
    sig = samplers.ddim_sigma(jnp.float32(ab), jnp.float32(ab_prev), eta)
    want_sig = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    assert float(sig) == pytest.approx(want_sig, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("prediction", PREDS)
def test_ddim_step_per_row_alpha_bar(prediction, rng):
    """ddim_step, like the conversions it builds on, should accept per-row (B,) alpha_bars.

    B = 3 equals the feature size on purpose: a missing expand_to broadcasts (B,) along
    the LAST axis and gives silently wrong numbers instead of an error.
    """
    B = 3
    ab = np.array([0.3, 0.5, 0.7])
    ab_prev = np.array([0.4, 0.65, 0.8])
    x_t = rng.standard_normal((B, 3)).astype(np.float32)
    pred = rng.standard_normal((B, 3)).astype(np.float32)
    z = rng.standard_normal((B, 3)).astype(np.float32)
    got, _ = samplers.ddim_step(
        pred, x_t, jnp.asarray(ab, jnp.float32), jnp.asarray(ab_prev, jnp.float32), 0.5, z, prediction=prediction
    )
    want, _ = ref_ddim_step(f64(pred), f64(x_t), ab[:, None], ab_prev[:, None], 0.5, f64(z), prediction)
    np.testing.assert_allclose(f64(got), want, rtol=RTOL, atol=1e-5)


# ----------------------------------------------------------------------------- DDIM grids


def ref_grid(T, n, spacing):
    """diffusers' DDIMScheduler.set_timesteps (steps_offset = 0)."""
    if spacing == "leading":
        return (np.arange(0, n) * (T // n)).round()[::-1].astype(np.int64)
    if spacing == "trailing":
        return (np.round(np.arange(T, 0, -T / n)) - 1).astype(np.int64)
    return np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("T, n", [(1000, 1), (1000, 7), (1000, 10), (1000, 50), (1000, 999), (1000, 1000), (100, 3), (37, 5)])
def test_ddim_grid_matches_diffusers_formula(T, n, spacing):
    got = timesteps.ddim_timesteps(T, n, spacing)
    np.testing.assert_array_equal(got, ref_grid(T, n, spacing))


def test_ddim_grid_literals_from_real_diffusers():
    # Checked by the lead against diffusers 0.42.1 DDIMScheduler (steps_offset=0).
    assert list(timesteps.ddim_timesteps(1000, 7, "leading")) == [852, 710, 568, 426, 284, 142, 0]
    assert list(timesteps.ddim_timesteps(1000, 7, "trailing")) == [999, 856, 713, 570, 428, 285, 142]
    assert list(timesteps.ddim_timesteps(1000, 3, "linspace")) == [999, 500, 0]


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddim_grid_invariants(spacing):
    """Any grid: exactly num_steps timesteps, strictly descending, all in [0, T-1].

    diffusers' trailing formula uses a float ``np.arange`` whose length can come out one
    too long (e.g. T=999, n=13 gives 14 points ending in -1); a -1 timestep would index
    alpha_bars[-1] (the noisiest step) in JAX. These (T, n) pairs are such cases.
    """
    for T, n in [(999, 13), (50, 29), (100, 97), (999, 30), (1000, 7), (1000, 250), (10, 10)]:
        g = timesteps.ddim_timesteps(T, n, spacing)
        assert g.shape == (n,), (T, n, g)
        assert np.all(np.diff(g) < 0), (T, n, g)
        assert g.min() >= 0 and g.max() <= T - 1, (T, n, g)
        if spacing != "leading":
            assert g[0] == T - 1


# ----------------------------------------------------------------------------- time samplers


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (0.5, 0.7), (-1.0, 1.5)])
def test_logit_normal_pdf(mean, std):
    # closed form: N(logit t; m, s) / (t (1 - t))
    t = np.linspace(1e-4, 1 - 1e-4, 999)
    want = stats.norm.pdf(np.log(t / (1 - t)), mean, std) / (t * (1 - t))
    got = f64(timesteps.logit_normal_pdf(t, mean, std))
    # float32 evaluation of log(t) - log1p(-t) and of the exponent: ~1e-6 relative in
    # the logit, amplified by |logit/s^2| <= ~10 in the density.
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    # integrates to 1: substitute t = sigmoid(u) so the tails are resolved on a uniform u grid
    u = np.linspace(mean - 12 * std, mean + 12 * std, 200001)
    tt = 1 / (1 + np.exp(-u))
    dens = f64(timesteps.logit_normal_pdf(tt, mean, std)) * tt * (1 - tt)  # dt/du = t(1-t)
    assert np.trapezoid(dens, u) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (0.5, 0.7)])
def test_logit_normal_times_histogram(mean, std):
    n = 200_000
    t = np.asarray(timesteps.logit_normal_times(jax.random.key(3), n, mean, std))
    assert t.shape == (n,) and np.all((t > 0) & (t < 1))
    edges = np.linspace(0, 1, 41)
    counts, _ = np.histogram(t, edges)
    # expected counts: integrate the library pdf over each bin on a fine trapezoid grid
    expected = []
    for lo, hi in itertools.pairwise(edges):
        g = np.linspace(max(lo, 1e-7), min(hi, 1 - 1e-7), 401)
        expected.append(n * np.trapezoid(f64(timesteps.logit_normal_pdf(g, mean, std)), g))
    expected = np.asarray(expected)
    assert expected.sum() == pytest.approx(n, rel=1e-3)
    # each bin count is binomial: 5 standard deviations (+ 0.2% of expected for the quadrature)
    sd = np.sqrt(expected * (1 - expected / n))
    assert np.all(np.abs(counts - expected) <= 5 * sd + 2e-3 * expected + 3)


def test_shift_times():
    t = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(timesteps.shift_times(t, 1.0), t, rtol=0, atol=1e-7)
    for shift in [0.3, 1.0, 3.0, 7.5]:
        u = f64(timesteps.shift_times(t, shift))
        assert u[0] == 0.0 and u[-1] == pytest.approx(1.0, abs=1e-7)
        assert np.all(np.diff(u) > 0)  # strictly monotone
        want = shift * f64(t) / (1 + (shift - 1) * f64(t))  # SD3's shift
        np.testing.assert_allclose(u, want, rtol=1e-6, atol=1e-7)
        inner = slice(1, -1)
        if shift > 1:
            assert np.all(u[inner] > f64(t)[inner])
        elif shift < 1:
            assert np.all(u[inner] < f64(t)[inner])


def test_uniform_samplers_range():
    t = np.asarray(timesteps.uniform_timesteps(jax.random.key(0), 50_000, 10))
    assert t.dtype == np.int32 and t.min() == 0 and t.max() == 9
    # each of 10 values has p = 0.1: 5 binomial sd = 5 * sqrt(50000 * .1 * .9) = 335
    assert np.all(np.abs(np.bincount(t, minlength=10) - 5000) < 335)
    u = np.asarray(timesteps.uniform_times(jax.random.key(1), 50_000))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / 50_000)
