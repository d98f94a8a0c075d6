"""DPM-Solver++, Karras sigmas and EDM's Heun sampler on exact toys.

Referees: float64 NumPy (the mixture's posterior mean written out again, RK4 on the
probability-flow ODE, EDM Algorithm 1 line by line), closed forms of the grids, and
identities between samplers. Agreement with diffusers is in test_diffusers_parity.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion_jax import dpm_solver, grids, samplers, sampling, schedules, timesteps, toy
from diffusion_jax.denoisers import denoiser

MIX = toy.default_mixture()
W, MU, SD = (np.asarray(v, np.float64) for v in (MIX.weights, MIX.means, MIX.stds))


# ----------------------------------------------------------------------------------------
# float64 referees


def posterior_x0(x, a, b):
    """E[x0 | a x0 + b eps = x] for the mixture, float64 NumPy ``(B, D)``."""
    var = a**2 * SD**2 + b**2  # (K,)
    sq = np.sum((x[:, None, :] - a * MU[None]) ** 2, axis=-1)  # (B, K)
    logp = np.log(W) - 0.5 * x.shape[1] * np.log(var) - 0.5 * sq / var
    r = np.exp(logp - logp.max(axis=1, keepdims=True))
    r /= r.sum(axis=1, keepdims=True)
    m = MU[None] + (a * SD**2 / var)[None, :, None] * (x[:, None, :] - a * MU[None])  # (B, K, D)
    return np.sum(r[..., None] * m, axis=1)


def rk4_log(f, y, u_from, u_to, n=1500):
    """RK4 for dy/du = f(y, u) on n uniform steps (u is a log noise level); at n = 1500 it agrees
    with n = 4000 to 1e-9 here, far below the sampler errors measured against it."""
    us = np.linspace(u_from, u_to, n + 1)
    for u0, u1 in zip(us[:-1], us[1:]):
        h = u1 - u0
        k1 = f(y, u0)
        k2 = f(y + h / 2 * k1, u0 + h / 2)
        k3 = f(y + h / 2 * k2, u0 + h / 2)
        k4 = f(y + h * k3, u1)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def ve_flow(y, sigma_from, sigma_to):
    """The probability-flow ODE in Karras et al.'s variables, dy/dsigma = (y - D(y; sigma)) / sigma
    with y = x / a, solved in u = log sigma: dy/du = y - D."""
    return rk4_log(lambda y, u: y - posterior_x0(y, 1.0, np.exp(u)), y, np.log(sigma_from), np.log(sigma_to))


def straight_flow(x, t_to):
    """The rectified-flow ODE dx/dt = (x - x0_hat) / t from t = 1, solved in u = log t."""
    return rk4_log(lambda x, u: x - posterior_x0(x, 1.0 - np.exp(u), np.exp(u)), x, 0.0, np.log(t_to))


def _sigma_time_x0(mixture, x, t, cond):
    """An exact x0-denoiser told the VE noise level sigma itself as its time ``t`` ``(B,)``."""
    a = 1.0 / jnp.sqrt(1.0 + t**2)
    return mixture.posterior_x0(x, a, t * a)


SIGMA_DEN = denoiser(jax.tree_util.Partial(_sigma_time_x0, MIX), "x0")


def sigma_levels_grid(sigmas):
    """A grid through ``sigmas`` whose network time is sigma (for SIGMA_DEN)."""
    return grids.sigma_grid(np.asarray(sigmas[:-1], np.float32), sigmas)


def x_start(n=256, seed=0):
    return np.asarray(jax.random.normal(jax.random.key(seed), (n, 2)), np.float32)


def median_error(out, ref):
    # The median sample: one that starts near the boundary between two clusters can end in
    # either under any finite step size, and would dominate a mean or a max.
    return float(np.median(np.linalg.norm(np.asarray(out, np.float64) - ref, axis=1)))


# ----------------------------------------------------------------------------------------
# grids


def test_karras_sigmas_closed_form():
    sig = timesteps.karras_sigmas(0.002, 80.0, 18)
    np.testing.assert_allclose(sig[[0, -1]], [80.0, 0.002], rtol=1e-12)
    root = sig ** (1 / 7)
    np.testing.assert_allclose(np.diff(root), np.full(17, (0.002 ** (1 / 7) - 80 ** (1 / 7)) / 17), rtol=1e-10)
    np.testing.assert_allclose(timesteps.karras_sigmas(0.1, 10.0, 1), [10.0], rtol=1e-12)


def test_sigma_to_t_interpolates_log_sigma():
    ab = np.asarray(schedules.linear().alpha_bars, np.float64)
    sig = timesteps.schedule_sigmas(ab)
    t = np.array([0, 1, 17, 500, 998, 999])
    np.testing.assert_allclose(timesteps.sigma_to_t(sig[t], ab), t, atol=1e-9)
    mid = np.sqrt(sig[100] * sig[101])  # halfway in log sigma
    np.testing.assert_allclose(timesteps.sigma_to_t(mid, ab), 100.5, atol=1e-9)
    np.testing.assert_array_equal(timesteps.sigma_to_t([sig[0] / 2, sig[-1] * 2], ab), [0.0, 999.0])


@pytest.mark.parametrize("final", ["zero", "sigma_min"])
def test_karras_grid_endpoints(final):
    s = schedules.linear()
    g = grids.karras_grid(s, 10, final=final)
    np.testing.assert_array_equal(np.asarray(g.t)[[0, -1]], [999, 0])
    np.testing.assert_allclose(np.asarray(g.a**2 + g.s**2), 1.0, rtol=1e-6)
    sig = np.asarray(g.s / g.a)
    np.testing.assert_allclose(sig[[0, -1]], np.asarray(timesteps.schedule_sigmas(s.alpha_bars))[[-1, 0]], rtol=1e-5)
    if final == "zero":
        assert float(g.a_next[-1]) == 1.0 and float(g.s_next[-1]) == 0.0
    else:  # stays at sigma_min: a step that does not move (diffusers' "sigma_min" on Karras sigmas)
        assert float(g.a_next[-1]) == float(g.a[-1]) and float(g.c_xt[-1]) == 1.0 and float(g.c_x0[-1]) == 0.0


def test_dpm_grid_is_diffusers_linspace_and_ddim_grid_unchanged():
    s = schedules.linear()
    np.testing.assert_array_equal(np.asarray(sampling.make_grid("dpmpp_2m", 10, schedule=s).t),
                                  np.round(np.linspace(0, 999, 11))[::-1][:-1])
    np.testing.assert_array_equal(np.asarray(sampling.make_grid("ddim", 10, schedule=s).t),
                                  timesteps.ddim_timesteps(1000, 10, "leading"))
    g = sampling.make_grid("dpmpp_3m", 10, schedule=s, final="sigma_min")
    np.testing.assert_allclose(float(g.a_next[-1]) ** 2, float(s.alpha_bars[0]), rtol=1e-6)


def test_grid_option_errors():
    s = schedules.linear()
    with pytest.raises(ValueError, match="zero terminal SNR"):
        grids.karras_grid(schedules.rescale_zero_terminal_snr(s), 10)
    with pytest.raises(ValueError, match="spacing does not apply"):
        sampling.make_grid("dpmpp_2m", 10, schedule=s, karras=True, spacing="trailing")
    with pytest.raises(ValueError, match="final"):
        sampling.make_grid("dpmpp_2m", 10, final="sigma_min")  # flow times
    with pytest.raises(ValueError, match="unknown final"):
        sampling.make_grid("dpmpp_2m", 10, schedule=s, final="last")
    with pytest.raises(ValueError, match="takes no final option"):
        sampling.make_grid("heun", 10, schedule=s, final="sigma_min")
    with pytest.raises(ValueError, match="n <= 999"):
        timesteps.dpm_timesteps(1000, 1000, "linspace")
    with pytest.raises(ValueError, match="decrease strictly"):
        grids.sigma_grid([0, 1], [1.0, 2.0, 0.0])


# ----------------------------------------------------------------------------------------
# the solver


def test_step_orders_follow_diffusers_rules():
    assert dpm_solver.step_orders(10, 2).tolist() == [1] + [2] * 8 + [1]  # lower_order_final (n < 15)
    assert dpm_solver.step_orders(20, 2).tolist() == [1] + [2] * 19
    assert dpm_solver.step_orders(10, 3).tolist() == [1, 2] + [3] * 6 + [2, 1]
    assert dpm_solver.step_orders(20, 3, euler_at_final=True).tolist() == [1, 2] + [3] * 17 + [1]
    assert dpm_solver.step_orders(10, 3, lower_order_final=False).tolist() == [1, 2] + [3] * 8
    assert dpm_solver.step_orders(2, 3).tolist() == [1, 1]


@pytest.mark.parametrize("kind", ["dpm", "karras", "flow"])
def test_order_one_is_ddim(kind):
    """First-order DPM-Solver++ is deterministic DDIM: the same update written in lambda."""
    s = schedules.linear()
    if kind == "flow":
        den, grid = denoiser(MIX.velocity_fn(), "velocity"), sampling.make_grid("dpmpp_2m", 12)
    else:
        den = denoiser(MIX.denoiser(s, "v"), "v")
        grid = sampling.make_grid("dpmpp_2m", 12, schedule=s, karras=kind == "karras")
    x = x_start(64)
    ours = dpm_solver.multistep_sample(den, x, grid, order=1)
    np.testing.assert_allclose(ours, samplers.sample_ddim(jax.random.key(0), den, x, grid), rtol=1e-5, atol=1e-5)


def test_dpm_solver_converges_at_second_and_third_order():
    """On Karras sigmas from 20 to 0.02 against RK4 in float64: DDIM's error halves when
    the steps double (first order), DPM-Solver++(2M)'s quarters (Lu et al. 2022b), and
    3M is more accurate still."""
    x = x_start()
    s_max, s_min = 20.0, 0.02
    a_max, a_min = (1.0 + s_max**2) ** -0.5, (1.0 + s_min**2) ** -0.5
    ref = ve_flow(x.astype(np.float64) / a_max, s_max, s_min) * a_min  # back on the VP path
    runs = {"ddim": lambda g: samplers.sample_ddim(jax.random.key(0), SIGMA_DEN, x, g),
            "2m": lambda g: dpm_solver.sample_dpmpp_2m(None, SIGMA_DEN, x, g),
            "3m": lambda g: dpm_solver.sample_dpmpp_3m(None, SIGMA_DEN, x, g)}
    steps = (32, 64, 128)  # the grid ends at sigma_min: n + 1 levels, n steps
    err = {k: np.array([median_error(run(sigma_levels_grid(timesteps.karras_sigmas(s_min, s_max, n + 1))), ref)
                        for n in steps]) for k, run in runs.items()}
    ratio = {k: e[:-1] / e[1:] for k, e in err.items()}
    assert np.all((1.7 < ratio["ddim"]) & (ratio["ddim"] < 2.4)), ratio
    assert np.all((3.3 < ratio["2m"]) & (ratio["2m"] < 5.5)), ratio
    assert np.all(err["3m"] < err["2m"]), err
    assert err["2m"][0] < err["ddim"][-1]  # 32 DPM-Solver++ steps beat 128 DDIM steps


def test_dpm_solver_on_the_flow_path_is_second_order():
    """The same solver on the straight path (a = 1 - t, s = t), starting at t = 1 where
    a = 0 (lambda = -inf), on uniform times down to 0.05."""
    x = x_start()
    den = denoiser(MIX.velocity_fn(), "velocity")
    ref = straight_flow(x.astype(np.float64), 0.05)
    steps = (32, 64, 128)
    err = {k: np.array([median_error(f(grids.flow_grid(np.linspace(1.0, 0.05, n + 1))), ref) for n in steps])
           for k, f in {"euler": lambda g: samplers.sample_ddim(jax.random.key(0), den, x, g),
                        "2m": lambda g: dpm_solver.sample_dpmpp_2m(None, den, x, g)}.items()}
    ratio = {k: e[:-1] / e[1:] for k, e in err.items()}
    assert np.all((1.8 < ratio["euler"]) & (ratio["euler"] < 2.3)), ratio
    assert np.all((3.3 < ratio["2m"]) & (ratio["2m"] < 6.5)), ratio


def test_endpoints_zero_snr_start_and_landing_on_data():
    """a = 0 at zero terminal SNR: the first step is x1 = s1 x + a1 x0_hat (DDIM from pure
    noise); landing on the data (s_next = 0) returns the last x0 estimate itself."""
    s = schedules.rescale_zero_terminal_snr(schedules.linear())
    den = denoiser(MIX.denoiser(s, "v"), "v")
    grid = sampling.make_grid("dpmpp_3m", 8, schedule=s, spacing="trailing")
    assert float(grid.a[0]) == 0.0 and float(grid.s_next[-1]) == 0.0
    x = x_start(32)
    out, tr = dpm_solver.sample_dpmpp_3m(None, den, x, grid, return_trajectory=True)
    assert np.all(np.isfinite(np.asarray(tr.x)))
    np.testing.assert_allclose(tr.x[1], grid.s_next[0] * x + grid.a_next[0] * tr.x0[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(tr.x0[-1]))
    with pytest.raises(ValueError, match="zero SNR"):
        dpm_solver.sample_dpmpp_2m(None, denoiser(MIX.denoiser(s, "eps"), "eps"), x, grid)


# ----------------------------------------------------------------------------------------
# EDM's Heun sampler


def edm_algorithm_1(y, sigmas):
    """Karras et al. 2022, Algorithm 1 (deterministic), float64, on the VE variable y = x / a."""
    for s_cur, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = (y - posterior_x0(y, 1.0, s_cur)) / s_cur
        y_next = y + (s_next - s_cur) * d
        if s_next != 0:
            d_next = (y_next - posterior_x0(y_next, 1.0, s_next)) / s_next
            y_next = y + (s_next - s_cur) * 0.5 * (d + d_next)
        y = y_next
    return y


def test_heun_on_karras_sigmas_is_edm_algorithm_1():
    """EDM's setting: 18 Karras levels from 80 to 0.002 (rho = 7) and sigma_N = 0."""
    sigmas = np.append(timesteps.karras_sigmas(0.002, 80.0, 18), 0.0)
    x = x_start(64)
    ref = edm_algorithm_1(x.astype(np.float64) * np.sqrt(1 + 80.0**2), sigmas)  # x_T = a_0 y_0
    out = samplers.sample_heun(jax.random.key(0), SIGMA_DEN, x, sigma_levels_grid(sigmas))
    np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=0, atol=2e-5)


# ----------------------------------------------------------------------------------------
# the registry


def test_registry_lists_dpm_solvers_with_their_options():
    for name in ("dpmpp_2m", "dpmpp_3m"):
        spec = sampling.SAMPLERS[name]
        assert spec.stages == 1 and set(spec.paths) == {"vp", "flow"}
        assert {"spacing", "karras", "final", "shift"} <= sampling._OPTIONS[name]
        assert sampling.denoiser_evaluations(name, 12) == 12
    assert set(sampling._OPTIONS) == set(sampling.SAMPLERS)
    assert sampling.SAMPLERS["dpmpp_3m"].fn is dpm_solver.sample_dpmpp_3m


def _cases():
    for name, spec in sampling.SAMPLERS.items():
        for path in spec.paths:
            yield name, path


@pytest.mark.parametrize("name, path", list(_cases()))
def test_chunked_sampling_equals_one_call(name, path):
    """Row i depends on (key, i) only: chunks of 3 give the rows of one call of 7."""
    s = schedules.linear()
    if path == "vp":
        den, opts = denoiser(MIX.denoiser(s, "eps"), "eps"), {"schedule": s, "num_steps": 6}
    else:
        den, opts = denoiser(MIX.velocity_fn(), "velocity"), {"num_steps": 6}
    key = jax.random.key(3)
    whole = sampling.sample(name, key, den, (7, 2), **opts)
    chunked = sampling.sample(name, key, den, (7, 2), chunk_size=3, **opts)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), rtol=1e-6, atol=1e-6)
    again = sampling.sample(name, key, den, (7, 2), **opts)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(whole))  # same key, same samples
    other = sampling.sample(name, jax.random.key(4), den, (7, 2), **opts)
    assert not np.allclose(np.asarray(other), np.asarray(whole))


def test_one_2m_update_is_the_samplers_second_step():
    # The public one-step formula (lesson 12's exercise reference) against the sampler itself.
    sched = schedules.linear(1000)
    mix = toy.default_mixture()
    d = denoiser(mix.denoiser(sched, "v"), "v")
    grid = grids.timestep_grid(sched, np.array([900, 600, 300, 100]))
    x = jax.random.normal(jax.random.key(0), (64, 2))
    _, traj = dpm_solver.multistep_sample(d, x, grid, order=2, lower_order_final=False, return_trajectory=True)
    assert list(dpm_solver.step_orders(4, 2, lower_order_final=False)[:3]) == [1, 2, 2]
    lam = lambda i: dpm_solver.log_snr_half(grid.a[i], grid.s[i])
    for i in (1, 2):
        h_prev = lam(i) - lam(i - 1)
        got = dpm_solver.dpmpp_2m_update(traj.x[i], traj.x0[i], traj.x0[i - 1], grid.a[i], grid.s[i],
                                         grid.a_next[i], grid.s_next[i], h_prev)
        np.testing.assert_allclose(np.asarray(got), np.asarray(traj.x[i + 1]), atol=2e-5)
