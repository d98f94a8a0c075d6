"""Identities the math must satisfy whatever the implementation: round trips, limits,
equivalences between samplers, CFG algebra, key handling and compilation behaviour.

Nothing here compares with numbers produced by a previous run of this library; every
expected value is a closed form, an invariant, or another code path that must agree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion_jax import (
    flow,
    forward,
    guidance,
    losses,
    parameterization,
    samplers,
    schedules,
    toy,
)

PREDS = ["eps", "x0", "v"]
F32_EPS = 2.0**-24


@pytest.fixture(scope="module")
def mix():
    return toy.default_mixture()


@pytest.fixture(scope="module")
def sched():
    return schedules.linear()


@pytest.fixture(scope="module")
def small_sched():
    # T = 100 keeps the 1-step-per-timestep samplers cheap; the cosine schedule still
    # ends at (almost) pure noise.
    return schedules.cosine(100)


def f64(x):
    return np.asarray(x, np.float64)


def np_mixture_sample(mix, n, seed):
    """Draws from the mixture with NumPy (independent of toy.sample, and no compile)."""
    rng = np.random.default_rng(seed)
    k = rng.choice(mix.num_components, size=n, p=np.asarray(mix.weights, np.float64) / float(np.sum(mix.weights)))
    x = np.asarray(mix.means)[k] + np.asarray(mix.stds)[k, None] * rng.standard_normal((n, mix.means.shape[1]))
    return jnp.asarray(x, jnp.float32)


@jax.jit
def jcall(fn, x, t, cond):
    """Call a pytree denoiser under jit: one compile instead of op-by-op eager dispatch."""
    return fn(x, t, cond)


# ----------------------------------------------------------------------------- DDIM <-> DDPM


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("zero", [False, True])
def test_ddim_eta1_sigma_is_ddpm_posterior_variance(name, zero):
    s = schedules.make_schedule(name, 1000, zero_terminal_snr=zero)
    ab = s.alpha_bars
    sig = samplers.ddim_sigma(ab[1:], ab[:-1], 1.0)  # adjacent steps t -> t-1, t = 1..T-1
    var = forward.posterior_variance(s)
    # sigma^2 uses 1 - ab_t/ab_{t-1} where beta_tilde uses the stored beta_t; the two agree
    # exactly in real arithmetic but the float32 ratio of two numbers near 1 is only good
    # to ~2 ulps absolute, i.e. ~4 * 2^-24 / beta_t relative (1e-3 at t = 1 where
    # beta ~ 1e-4). The tolerance carries that factor; it is ~2e-5 for typical t.
    rtol = 1e-5 + 4 * F32_EPS / f64(s.betas[1:])
    assert np.all(np.abs(f64(sig) ** 2 - f64(var[1:])) <= rtol * f64(var[1:]) + 1e-12)
    # the last DDIM step goes to alpha_bar = 1, where the variance is 0 like beta_tilde_0
    assert float(samplers.ddim_sigma(ab[0], 1.0, 1.0)) == 0.0 == float(var[0])


@pytest.mark.slow
def test_ddim_eta1_on_the_full_grid_is_ddpm(mix, small_sched):
    """DDIM with eta = 1 visiting every timestep is DDPM ancestral sampling (Song et al.
    sec. 4.1); both samplers draw x_T and the step noise from the same key streams."""
    s = small_sched
    den = mix.denoiser(s, "eps")
    key = jax.random.key(11)
    x_ddpm = samplers.ddpm_sample(key, den, s, (64, 2))
    x_ddim = samplers.ddim_sample(key, den, s, (64, 2), num_steps=100, eta=1.0, spacing="leading")
    np.testing.assert_allclose(x_ddim, x_ddpm, rtol=1e-4, atol=1e-4)


def test_ddim_eta0_ignores_key_eta1_does_not(mix, sched):
    den = mix.denoiser(sched, "eps")
    x_T = samplers.initial_noise(jax.random.key(0), (16, 2))
    a = samplers.ddim_sample(jax.random.key(1), den, sched, (16, 2), num_steps=20, eta=0.0, x_T=x_T)
    b = samplers.ddim_sample(jax.random.key(2), den, sched, (16, 2), num_steps=20, eta=0.0, x_T=x_T)
    np.testing.assert_array_equal(a, b)
    c = samplers.ddim_sample(jax.random.key(1), den, sched, (16, 2), num_steps=20, eta=1.0, x_T=x_T)
    d = samplers.ddim_sample(jax.random.key(2), den, sched, (16, 2), num_steps=20, eta=1.0, x_T=x_T)
    assert np.max(np.abs(np.asarray(c) - np.asarray(d))) > 1e-3


# ----------------------------------------------------------------------------- parameterisation


@pytest.mark.parametrize("via", PREDS)
@pytest.mark.parametrize("start", PREDS)
def test_round_trips(start, via):
    rng = np.random.default_rng(0)
    B = 32
    # ab in [0.02, 0.98]: divisions by sqrt(ab) or sqrt(1 - ab) >= 0.14 amplify float32
    # rounding of O(1..4) values by < 10x: atol 1e-5.
    ab = jnp.asarray(rng.uniform(0.02, 0.98, B), jnp.float32)
    x_t = jnp.asarray(rng.standard_normal((B, 2, 3)), jnp.float32)
    pred = jnp.asarray(rng.standard_normal((B, 2, 3)), jnp.float32)
    mid = parameterization.convert(pred, x_t, ab, source=start, target=via)
    back = parameterization.convert(mid, x_t, ab, source=via, target=start)
    np.testing.assert_allclose(back, pred, rtol=1e-5, atol=1e-5)


def test_x0_eps_pair_reconstructs_x_t():
    rng = np.random.default_rng(1)
    ab = jnp.asarray(rng.uniform(0.02, 0.98, 16), jnp.float32)
    x_t = jnp.asarray(rng.standard_normal((16, 3)), jnp.float32)
    pred = jnp.asarray(rng.standard_normal((16, 3)), jnp.float32)
    for p in PREDS:
        for clip in [None, 0.5]:
            x0, eps = parameterization.x0_and_eps(pred, x_t, ab, p, clip)
            a, b = jnp.sqrt(ab)[:, None], jnp.sqrt(1 - ab)[:, None]
            np.testing.assert_allclose(a * x0 + b * eps, x_t, rtol=1e-5, atol=1e-5)
            if clip is not None:
                assert float(jnp.max(jnp.abs(x0))) <= clip


def test_loss_identities_across_parameterisations():
    """For one underlying prediction: eps-MSE = x0-MSE * SNR = v-MSE * SNR / (SNR + 1)."""
    rng = np.random.default_rng(2)
    B = 64
    ab = rng.uniform(0.02, 0.98, B)
    x0 = rng.uniform(-1, 1, (B, 4, 3))
    eps = rng.standard_normal((B, 4, 3))
    x_t = np.sqrt(ab)[:, None, None] * x0 + np.sqrt(1 - ab)[:, None, None] * eps
    eps_hat = eps + 0.3 * rng.standard_normal((B, 4, 3))  # an arbitrary, imperfect prediction
    ab32 = jnp.asarray(ab, jnp.float32)
    xt32 = jnp.asarray(x_t, jnp.float32)
    e32 = jnp.asarray(eps_hat, jnp.float32)
    x0_hat = parameterization.to_x0(e32, xt32, ab32, "eps")
    v_hat = parameterization.to_v(e32, xt32, ab32, "eps")
    v_true = parameterization.velocity(jnp.asarray(x0, jnp.float32), jnp.asarray(eps, jnp.float32), ab32)
    mse_eps = f64(losses.per_example_mse(e32, jnp.asarray(eps, jnp.float32)))
    mse_x0 = f64(losses.per_example_mse(x0_hat, jnp.asarray(x0, jnp.float32)))
    mse_v = f64(losses.per_example_mse(v_hat, v_true))
    snr = ab / (1 - ab)
    # squared errors of differences of O(1) float32 numbers: ~1e-6 relative; the
    # conversions divide by sqrt(ab) >= 0.14, so 1e-4 relative is a safe float32 bound.
    np.testing.assert_allclose(mse_eps, mse_x0 * snr, rtol=1e-4)
    np.testing.assert_allclose(mse_eps, mse_v * snr / (snr + 1), rtol=1e-4)


@pytest.mark.parametrize("zero", [False, True])
def test_min_snr_weights_equal_in_x0_space(zero):
    s = schedules.make_schedule("linear", 1000, zero_terminal_snr=zero)
    snr = s.snr
    gamma = 5.0
    w = {p: f64(losses.snr_weight(snr, p, "min_snr", gamma)) for p in PREDS}
    snr64 = f64(snr)
    eff_eps, eff_x0, eff_v = w["eps"] * snr64, w["x0"], w["v"] * (snr64 + 1)
    np.testing.assert_allclose(eff_x0, np.minimum(snr64, gamma), rtol=1e-6)
    np.testing.assert_allclose(eff_eps, eff_x0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(eff_v, eff_x0, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(w["eps"])) and np.all(np.isfinite(w["v"]))
    for p in PREDS:
        np.testing.assert_array_equal(losses.snr_weight(snr, p, None), np.ones(1000))


def test_min_snr_losses_agree_for_one_underlying_model(mix, sched):
    """diffusion_loss with min-SNR weighting gives the same per-example losses whichever
    parameterisation the same underlying model is expressed in."""
    def wrong(x_t, t, cond):  # an arbitrary, imperfect eps-model (cheap to run eagerly)
        return 0.5 * x_t + 0.1

    def as_kind(kind):
        def f(x_t, t, cond):
            return parameterization.convert(wrong(x_t, t, cond), x_t, sched.alpha_bars[t], source="eps", target=kind)

        return f

    x0 = np_mixture_sample(mix, 256, 0)
    key = jax.random.key(5)
    per = {}
    for p in PREDS:
        _, aux = losses.diffusion_loss(key, as_kind(p), sched, x0, prediction=p, weighting="min_snr")
        per[p] = f64(aux["per_example"])
    # the x0 conversion at t near T-1 divides by sqrt(ab) ~ 6e-3, amplifying float32
    # rounding ~160x: rtol 1e-3 with an absolute floor.
    np.testing.assert_allclose(per["eps"], per["x0"], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(per["v"], per["x0"], rtol=1e-3, atol=1e-6)


# ----------------------------------------------------------------------------- guidance


def test_cfg_combine_table():
    u = jnp.array([0.20, -0.10, 0.05])
    c = jnp.array([0.05, -0.35, 0.20])
    np.testing.assert_allclose(guidance.cfg_combine(u, c, 7.5), [-0.925, -1.975, 1.175], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(guidance.cfg_combine(u, c, 15.0), [-2.05, -3.85, 2.3], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(guidance.cfg_combine(u, c, 0.0), u)
    np.testing.assert_allclose(guidance.cfg_combine(u, c, 1.0), c, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("prediction", PREDS)
def test_guided_denoiser_limits(mix, sched, prediction):
    den = mix.denoiser(sched, prediction)
    rng = np.random.default_rng(3)
    B = 12
    x = jnp.asarray(rng.standard_normal((B, 2)), jnp.float32)
    t = jnp.asarray(rng.integers(0, 1000, B), jnp.int32)
    labels = jnp.asarray(rng.integers(0, 3, B), jnp.int32)
    null = jnp.full((B,), mix.null_label, jnp.int32)
    out_c = jcall(den, x, t, labels)
    out_u = jcall(den, x, t, null)
    assert float(jnp.max(jnp.abs(out_c - out_u))) > 1e-3  # the condition matters
    g0 = jcall(guidance.guided_denoiser(den, 0.0, mix.null_label), x, t, labels)
    g1 = jcall(guidance.guided_denoiser(den, 1.0, mix.null_label), x, t, labels)
    np.testing.assert_allclose(g0, out_u, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g1, out_c, rtol=1e-5, atol=1e-5)
    g = jcall(guidance.guided_denoiser(den, 4.0, mix.null_label), x, t, labels)
    np.testing.assert_allclose(g, out_u + 4.0 * (out_c - out_u), rtol=1e-5, atol=1e-5)
    # a scalar timestep is accepted too
    gs = jcall(guidance.guided_denoiser(den, 4.0, mix.null_label), x, jnp.int32(500), labels)
    t500 = jnp.full((B,), 500, jnp.int32)
    want = jcall(den, x, t500, null) + 4.0 * (jcall(den, x, t500, labels) - jcall(den, x, t500, null))
    np.testing.assert_allclose(gs, want, rtol=1e-5, atol=1e-5)


def test_guidance_rescale():
    rng = np.random.default_rng(4)
    guided = jnp.asarray(rng.standard_normal((6, 4, 4, 3)) * 2.5, jnp.float32)
    cond = jnp.asarray(rng.standard_normal((6, 4, 4, 3)) * 0.7 + 0.3, jnp.float32)
    np.testing.assert_array_equal(guidance.rescale_guidance(guided, cond, 0.0), guided)
    full = guidance.rescale_guidance(guided, cond, 1.0)
    std = lambda a: np.asarray(a, np.float64).reshape(6, -1).std(axis=1)
    np.testing.assert_allclose(std(full), std(cond), rtol=1e-5)
    # phi in between is the convex mix of the two (Lin et al. 2024, eq. 16)
    half = guidance.rescale_guidance(guided, cond, 0.5)
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * guided, rtol=1e-5, atol=1e-6)


def test_guidance_rescale_phi0_is_noop_even_for_constant_rows():
    """phi = 0 must return the guided prediction unchanged, also when a row of it has zero
    spread (1-D data, or a constant output): there std_cond / std_guided is 0/0 and
    0 * NaN poisons the result unless the rescale is guarded."""
    guided = jnp.asarray([[0.5], [-1.0]], jnp.float32)  # (B, 1): the per-row std is 0
    cond = jnp.asarray([[0.2], [0.1]], jnp.float32)
    np.testing.assert_array_equal(guidance.rescale_guidance(guided, cond, 0.0), guided)
    const = jnp.ones((2, 3), jnp.float32)
    assert np.all(np.isfinite(guidance.rescale_guidance(const, const * 0.5, 0.0)))


def test_guided_denoiser_rescale_matches_conditional_std(mix, sched):
    den = mix.denoiser(sched, "eps")
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((8, 2)), jnp.float32)
    t = jnp.full((8,), 300, jnp.int32)
    labels = jnp.asarray(rng.integers(0, 3, 8), jnp.int32)
    out = jcall(guidance.guided_denoiser(den, 7.5, mix.null_label, rescale=1.0), x, t, labels)
    cond_out = jcall(den, x, t, labels)
    np.testing.assert_allclose(np.std(np.asarray(out), axis=1), np.std(np.asarray(cond_out), axis=1), rtol=1e-4)


def test_guided_denoiser_single_batched_call():
    calls = []

    def counting(x_t, t, cond):  # any denoiser will do; this one is cheap to run eagerly
        calls.append((x_t.shape, jnp.shape(t), jnp.shape(cond)))
        return x_t * (1.0 + cond[:, None]) + t[:, None]

    B = 5
    g = guidance.guided_denoiser(counting, 3.0, 9)
    x = jnp.arange(2 * B, dtype=jnp.float32).reshape(B, 2)
    labels = jnp.arange(B, dtype=jnp.int32) % 3
    out = g(x, jnp.full((B,), 10, jnp.int32), labels)  # eager, not jitted
    assert calls == [((2 * B, 2), (2 * B,), (2 * B,))]
    want_c = x * (1.0 + labels[:, None]) + 10
    want_u = x * 10.0 + 10
    np.testing.assert_allclose(out, want_u + 3.0 * (want_c - want_u), rtol=1e-6)


def test_drop_labels():
    B, p, null = 40_000, 0.3, 10
    labels = jnp.arange(B, dtype=jnp.int32) % 10
    out = np.asarray(guidance.drop_labels(jax.random.key(0), labels, p, null))
    dropped = out != np.asarray(labels)
    # binomial: 5 standard deviations of the dropped fraction
    assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / B)
    assert np.all(out[dropped] == null)  # only ever writes the null label
    assert np.all(out[~dropped] == np.asarray(labels)[~dropped])
    np.testing.assert_array_equal(guidance.drop_labels(jax.random.key(1), labels, 0.0, null), labels)
    assert np.all(np.asarray(guidance.drop_labels(jax.random.key(1), labels, 1.0, null)) == null)
    # token conditions (B, L, D) with a null row (L, D): rows are kept or replaced whole
    tokens = jnp.asarray(np.random.default_rng(0).standard_normal((1000, 4, 3)), jnp.float32)
    null_row = jnp.full((4, 3), -7.0)
    t_out = np.asarray(guidance.drop_labels(jax.random.key(2), tokens, 0.5, null_row))
    is_null = np.all(t_out == -7.0, axis=(1, 2))
    kept = np.all(t_out == np.asarray(tokens), axis=(1, 2))
    assert np.all(is_null ^ kept)
    assert abs(is_null.mean() - 0.5) < 5 * np.sqrt(0.25 / 1000)


# ----------------------------------------------------------------------------- zero-terminal SNR


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_zero_terminal_snr(name):
    base = schedules.make_schedule(name, 1000)
    z = schedules.make_schedule(name, 1000, zero_terminal_snr=True)
    assert float(z.alpha_bars[-1]) == 0.0
    assert float(z.betas[-1]) == 1.0
    assert float(z.snr[-1]) == 0.0
    np.testing.assert_allclose(float(z.alpha_bars[0]), float(base.alpha_bars[0]), rtol=1e-6)
    assert np.all(np.diff(np.asarray(z.alpha_bars)) < 0)
    assert np.all((np.asarray(z.betas) > 0) & (np.asarray(z.betas) <= 1))
    # rescaling twice changes nothing (the terminal SNR is already 0)
    zz = schedules.rescale_zero_terminal_snr(z)
    np.testing.assert_allclose(zz.alpha_bars, z.alpha_bars, rtol=1e-5, atol=1e-7)


def test_zero_terminal_v_sampler_is_finite(mix):
    """With SNR(T-1) = 0 a v-model starts from pure noise without dividing by zero."""
    s = schedules.make_schedule("linear", 1000, zero_terminal_snr=True)
    x, tr = samplers.ddim_sample(
        jax.random.key(0), mix.denoiser(s, "v"), s, (1000, 2), num_steps=100, spacing="trailing",
        prediction="v", return_trajectory=True,
    )
    assert int(tr.t[0]) == 999  # trailing spacing starts at the pure-noise step
    assert np.all(np.isfinite(np.asarray(x))) and np.all(np.isfinite(np.asarray(tr.x0)))
    # At SNR = 0 the x0 estimate is E[x0] = sum_k pi_k mu_k whatever x_T is.
    np.testing.assert_allclose(tr.x0[0], np.broadcast_to(np.asarray(mix.weights) @ np.asarray(mix.means), (1000, 2)),
                               atol=1e-5)
    # and it lands on the data: P(|x0 - mu| > 5 s) is ~4e-6 for a 2-D Gaussian, so even
    # allowing for the 100-step discretisation, at most 1% may fall off the clusters.
    d = np.min(np.linalg.norm(np.asarray(x)[:, None] - np.asarray(mix.means)[None], axis=-1), axis=1)
    assert np.mean(d < 5 * 0.08) > 0.99


def test_trailing_sampler_with_awkward_step_count(mix, sched):
    """T = 1000, num_steps = 61, trailing: diffusers' float arange yields 62 points ending
    in -1; a sampler must still take 61 steps over valid timesteps and produce data-like
    samples (a -1 timestep wraps to alpha_bars[-1] and collapses every sample onto the
    mixture mean)."""
    x, tr = samplers.ddim_sample(
        jax.random.key(0), mix.denoiser(sched, "eps"), sched, (512, 2), num_steps=61, spacing="trailing",
        return_trajectory=True,
    )
    t = np.asarray(tr.t)
    assert t.shape == (61,) and t.min() >= 0 and t[0] == 999
    # the data's per-coordinate std is ~0.4-0.5; a collapsed sampler gives ~0
    assert np.all(np.asarray(x).std(axis=0) > 0.3)


# ----------------------------------------------------------------------------- sampler keys


def _samplers(mix, s):
    den = mix.denoiser(s, "eps")
    vel = mix.velocity_fn()
    return {
        "ddpm": lambda key, shape, **kw: samplers.ddpm_sample(key, den, s, shape, **kw),
        "ddim_eta1": lambda key, shape, **kw: samplers.ddim_sample(key, den, s, shape, num_steps=10, eta=1.0, **kw),
        "euler": lambda key, shape, **kw: flow.euler_sample(key, vel, shape, num_steps=10, **kw),
    }


@pytest.mark.parametrize("kind", ["ddpm", "ddim_eta1", "euler"])
def test_sampler_keys(mix, small_sched, kind):
    run = _samplers(mix, small_sched)[kind]
    a = run(jax.random.key(3), (5, 2))
    b = run(jax.random.key(3), (5, 2))
    c = run(jax.random.key(4), (5, 2))
    np.testing.assert_array_equal(a, b)  # deterministic per key
    assert np.max(np.abs(np.asarray(a) - np.asarray(c))) > 1e-3
    small = run(jax.random.key(3), (3, 2))
    # row i depends only on (key, i), not on the batch size; XLA may vectorise
    # differently for B = 3 and B = 5, so allow a few float32 ulps.
    np.testing.assert_allclose(small, np.asarray(a)[:3], rtol=1e-5, atol=1e-6)


def test_initial_noise_statistics():
    z = np.asarray(samplers.initial_noise(jax.random.key(0), (20_000, 3)))
    assert z.shape == (20_000, 3) and z.dtype == np.float32
    # N(0, I): mean and variance within 5 standard errors over 60,000 draws
    assert abs(z.mean()) < 5 / np.sqrt(60_000) and abs(z.var() - 1) < 5 * np.sqrt(2 / 60_000)


# ----------------------------------------------------------------------------- trajectories


@pytest.mark.slow
def test_return_trajectory_shapes(mix, small_sched):
    s = small_sched
    den = mix.denoiser(s, "eps")
    key = jax.random.key(0)
    B = 4
    cases = {
        "ddpm": (samplers.ddpm_sample(key, den, s, (B, 2), return_trajectory=True), s.num_timesteps),
        "ddim": (samplers.ddim_sample(key, den, s, (B, 2), num_steps=7, eta=0.5, return_trajectory=True), 7),
        "euler": (flow.euler_sample(key, mix.velocity_fn(), (B, 2), num_steps=6, return_trajectory=True), 6),
        "heun": (flow.heun_sample(key, mix.velocity_fn(), (B, 2), num_steps=5, return_trajectory=True), 5),
    }
    x_T = samplers.initial_noise(key, (B, 2))
    for name, ((x, tr), S) in cases.items():
        # every sampler starts from the same x_T for a given key
        np.testing.assert_array_equal(tr.x[0], x_T, err_msg=name)
        assert tr.x.shape == (S + 1, B, 2), name
        assert tr.x0.shape == (S, B, 2), name
        assert tr.t.shape == (S,), name
        np.testing.assert_array_equal(tr.x[-1], x, err_msg=name)
    # the discrete trajectories record the timesteps they visited, noisiest first
    (_, tr), _ = cases["ddpm"]
    np.testing.assert_array_equal(tr.t, np.arange(99, -1, -1))
    (_, tr), _ = cases["ddim"]
    np.testing.assert_array_equal(tr.t, [84, 70, 56, 42, 28, 14, 0])  # leading, k = 100 // 7
    # the flow trajectory's times run from 1 (noise) towards 0
    (_, tr), _ = cases["euler"]
    np.testing.assert_allclose(tr.t, np.linspace(1, 0, 7)[:-1], atol=1e-6)
    # and without return_trajectory the same sample comes back
    np.testing.assert_array_equal(
        samplers.ddim_sample(key, den, s, (B, 2), num_steps=7, eta=0.5), cases["ddim"][0][0]
    )


def test_heun_evaluation_count():
    """heun_sample documents 2 * num_steps - 1 velocity evaluations (last step is Euler)."""
    calls = []

    def counting(x, t, cond):  # a cheap stand-in field: only the call pattern matters
        calls.append(float(t[0]))
        return x

    with jax.disable_jit():  # run the scan as a Python loop so every call is seen
        flow.heun_sample(jax.random.key(0), counting, (3, 2), num_steps=4)
    assert len(calls) == 2 * 4 - 1
    assert min(calls) > 0.0  # never evaluated at t = 0 where (x_t - x0) / t divides by 0
    # dx/dt = x integrated from t = 1 to 0 multiplies x_T by e^{-1}; Heun with h = 1/4
    # (last step Euler) gives (1 - h + h^2/2)^3 (1 - h) exactly
    calls.clear()
    with jax.disable_jit():
        x = flow.heun_sample(jax.random.key(0), counting, (3, 2), num_steps=4)
    x_T = samplers.initial_noise(jax.random.key(0), (3, 2))
    np.testing.assert_allclose(x, x_T * (1 - 0.25 + 0.25**2 / 2) ** 3 * 0.75, rtol=1e-5)


# ----------------------------------------------------------------------------- compilation


@pytest.mark.slow
def test_samplers_do_not_recompile(mix, sched):
    base = mix.denoiser(sched, "eps")
    traces = {"n": 0}

    def counting(x_t, t, cond):
        traces["n"] += 1  # runs only while JAX traces the function
        return base(x_t, t, cond)

    shape = (6, 2)
    a = samplers.ddim_sample(jax.random.key(0), counting, sched, shape, num_steps=5)
    first = traces["n"]
    assert first >= 1
    b = samplers.ddim_sample(jax.random.key(1), counting, sched, shape, num_steps=5)
    assert traces["n"] == first, "a new key recompiled the sampler"
    assert np.max(np.abs(np.asarray(a) - np.asarray(b))) > 1e-3
    samplers.ddim_sample(jax.random.key(1), counting, sched, shape, num_steps=5, eta=0.7)
    assert traces["n"] == first, "a new eta recompiled the sampler"

    # guidance scale is a traced leaf of the guided denoiser
    labels = jnp.zeros((6,), jnp.int32)
    g2 = guidance.guided_denoiser(counting, 2.0, mix.null_label)
    g5 = guidance.guided_denoiser(counting, 5.0, mix.null_label)
    out2 = samplers.ddim_sample(jax.random.key(0), g2, sched, shape, labels, num_steps=5)
    after_first_guided = traces["n"]
    assert after_first_guided > first
    out5 = samplers.ddim_sample(jax.random.key(0), g5, sched, shape, labels, num_steps=5)
    assert traces["n"] == after_first_guided, "a new guidance scale recompiled the sampler"
    assert np.max(np.abs(np.asarray(out2) - np.asarray(out5))) > 1e-4

    # the flow samplers as well
    vtr = {"n": 0}
    vel = mix.velocity_fn()

    def vcount(x, t, cond):
        vtr["n"] += 1
        return vel(x, t, cond)

    flow.euler_sample(jax.random.key(0), vcount, shape, num_steps=4)
    n0 = vtr["n"]
    flow.euler_sample(jax.random.key(1), vcount, shape, num_steps=4)
    assert vtr["n"] == n0


# ----------------------------------------------------------------------------- flow matching


def test_flow_interpolant_and_velocity():
    rng = np.random.default_rng(6)
    B = 16
    x0 = jnp.asarray(rng.uniform(-1, 1, (B, 3, 2)), jnp.float32)
    eps = jnp.asarray(rng.standard_normal((B, 3, 2)), jnp.float32)
    np.testing.assert_array_equal(flow.interpolate(x0, eps, 0.0), x0)
    np.testing.assert_array_equal(flow.interpolate(x0, eps, 1.0), eps)
    np.testing.assert_array_equal(flow.interpolate(x0, eps, jnp.zeros(B)), x0)
    t = jnp.asarray(rng.uniform(0.1, 0.9, B), jnp.float32)
    h = 0.05  # the path is linear in t, so a central difference is exact up to rounding
    fd = (flow.interpolate(x0, eps, t + h) - flow.interpolate(x0, eps, t - h)) / (2 * h)
    np.testing.assert_allclose(fd, flow.velocity_target(x0, eps), rtol=1e-4, atol=1e-4)
    x_t = flow.interpolate(x0, eps, t)
    v = flow.velocity_target(x0, eps)
    np.testing.assert_allclose(flow.x0_from_velocity(v, x_t, t), x0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flow.eps_from_velocity(v, x_t, t), eps, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flow.velocity_from_eps(eps, x_t, t), v, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(flow.velocity_from_x0(x0, x_t, t), v, rtol=1e-4, atol=1e-4)
    # the model wrappers: the exact eps as a model gives the exact velocity
    vf = flow.eps_model_to_velocity(lambda xt, tt, c: eps)
    np.testing.assert_allclose(vf(x_t, t, None), v, rtol=1e-4, atol=1e-4)


def test_eps_model_to_velocity_on_the_toy(mix):
    """The exact posterior eps of the mixture on the straight path, turned into a velocity,
    is the mixture's exact velocity field."""

    def eps_fn(x_t, t, cond):
        x0_hat = mix.posterior_x0(x_t, 1.0 - t, t, cond)
        return (x_t - (1.0 - t)[:, None] * x0_hat) / t[:, None]

    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((32, 2)), jnp.float32)
    t = jnp.asarray(rng.uniform(0.05, 0.95, 32), jnp.float32)
    v_ref = jcall(mix.velocity_fn(), x, t, None)
    v = jcall(flow.eps_model_to_velocity(eps_fn), x, t, None)
    # velocity_from_eps divides by 1 - t >= 0.05: rounding amplified <= 20x
    np.testing.assert_allclose(v, v_ref, rtol=1e-4, atol=2e-5)


def test_flow_velocity_is_the_regression_optimum(mix):
    """E[eps - x0 | x_t] = (x_t - E[x0 | x_t]) / t: Monte-Carlo over the joint of the toy."""
    n = 50_000
    x0 = np_mixture_sample(mix, n, 8)
    eps = jax.random.normal(jax.random.key(9), x0.shape)
    t = 0.5
    x_t = flow.interpolate(x0, eps, t)
    v = flow.velocity_target(x0, eps)
    v_hat = jcall(mix.velocity_fn(), x_t, jnp.full((n,), t), None)
    # the residual of the optimal predictor is orthogonal to any function of x_t,
    # in particular to x_t itself and to constants
    r = np.asarray(v - v_hat, np.float64)
    xt = np.asarray(x_t, np.float64)
    se = r.std() / np.sqrt(n)
    assert np.all(np.abs(r.mean(0)) < 5 * se)
    assert np.all(np.abs((r * xt).mean(0)) < 5 * np.abs(r * xt).std() / np.sqrt(n))


# ----------------------------------------------------------------------------- DDIM inversion


@pytest.mark.slow
@pytest.mark.parametrize("prediction", ["eps"])
def test_ddim_inversion_round_trip(mix, sched, prediction):
    den = mix.denoiser(sched, prediction)
    x0 = np_mixture_sample(mix, 256, 0)
    errs = {}
    for n in [10, 50, 200]:
        x_T = samplers.ddim_invert(den, sched, x0, num_steps=n, prediction=prediction)
        rec = samplers.ddim_sample(
            jax.random.key(1), den, sched, x0.shape, num_steps=n, eta=0.0, x_T=x_T, prediction=prediction
        )
        e = np.linalg.norm(np.asarray(rec, np.float64) - np.asarray(x0, np.float64), axis=1)
        # The median and 90th percentile, not the max: a sample lying between two
        # clusters (a 3-4 sigma outlier of one component) sits where the ODE flow is
        # strongly divergent and amplifies any step error, so its error converges last.
        errs[n] = (np.median(e), np.percentile(e, 90))
        last_x_T = np.asarray(x_T)
    assert errs[10][0] > errs[50][0] > errs[200][0]
    assert errs[10][1] > errs[50][1] > errs[200][1]
    # first-order method: 4x the steps should cut the typical error by well over 2x
    assert errs[200][0] < errs[50][0] / 2
    # small at 200 steps relative to the component std 0.08 and the cluster spacing ~1
    assert errs[200][0] < 0.02 and errs[200][1] < 0.04
    # the inversion ends near a standard normal (the leading grid stops at t = 995)
    assert abs(last_x_T.std() - 1) < 0.1
