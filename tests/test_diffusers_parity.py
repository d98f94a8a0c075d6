"""Agreement with diffusers (PyTorch), the reference implementation most users know.

diffusers is never a dependency of this package: ``make peer`` builds a separate
environment (``.venv-peer``) with PyTorch and diffusers, and this test runs
``tests/peer/diffusers_reference.py`` there in a subprocess, then compares its numbers
with ours. Without that environment the test is skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion_jax import flow, forward, grids, parameterization, samplers, sampling, schedules, timesteps
from diffusion_jax.denoisers import denoiser

ROOT = pathlib.Path(__file__).resolve().parents[1]
PEER = pathlib.Path(os.environ.get("DIFFUSION_JAX_PEER_PYTHON", ROOT / ".venv-peer" / "bin" / "python"))
RTOL, ATOL = 2e-5, 2e-6  # float32: a few ulps after a 1000-term product
ULP = float(np.finfo(np.float32).eps)


def cancellation_tol(alpha_bar):
    """Per-row tolerance for quantities divided by 1 - alpha_bar.

    Both libraries hold alpha_bar in float32, so 1 - alpha_bar carries an absolute error
    of about one ulp of alpha_bar; relative to 1 - alpha_bar that is ULP / (1 - alpha_bar),
    0.1% at t = 0. That, not an algorithmic difference, bounds the agreement.
    """
    ab = np.asarray(alpha_bar, np.float64)
    return (1e-5 + 8 * ULP / (1 - ab)).reshape(-1, 1, 1, 1)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    if not PEER.exists():
        pytest.skip(f"no peer environment at {PEER} (run `make peer` to build it)")
    out = tmp_path_factory.mktemp("peer") / "ref.npz"
    subprocess.run([str(PEER), str(ROOT / "tests" / "peer" / "diffusers_reference.py"), str(out)], check=True)
    return dict(np.load(out))


PTYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("zero", [False, True])
def test_schedules_match(ref, name, zero):
    s = schedules.make_schedule(name, 1000, zero_terminal_snr=zero)
    tag = f"{name}{'_zero' if zero else ''}"
    np.testing.assert_allclose(s.betas, ref[f"betas/{tag}"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(s.alpha_bars, ref[f"alpha_bars/{tag}"], rtol=RTOL, atol=ATOL)


def test_add_noise_and_velocity_match(ref):
    s = schedules.linear()
    t = jnp.asarray(ref["t"], jnp.int32)
    ab = s.alpha_bars[t]
    # sqrt(1 - alpha_bar) inherits the cancellation error described in cancellation_tol.
    tol = cancellation_tol(ab) * (np.abs(ref["x0"]) + np.abs(ref["eps"]))
    assert np.all(np.abs(forward.q_sample(s, ref["x0"], t, ref["eps"]) - ref["add_noise"]) <= tol)
    assert np.all(np.abs(parameterization.velocity(ref["x0"], ref["eps"], ab) - ref["velocity"]) <= tol)


@pytest.mark.parametrize("ptype", list(PTYPES))
def test_ddpm_step_matches(ref, ptype):
    s = schedules.linear()
    t = jnp.asarray(ref["t"], jnp.int32)
    x_t = ref["eps"]  # the reference used eps as the current sample
    x0 = parameterization.to_x0(ref["pred"], x_t, s.alpha_bars[t], PTYPES[ptype])
    mean, var, _ = forward.q_posterior(s, x0, x_t, t)
    scale = np.abs(x0) + np.abs(x_t) + np.abs(ref["pred"])
    assert np.all(np.abs(mean - ref[f"ddpm_mean/{ptype}"]) <= cancellation_tol(s.alpha_bars[t]) * scale)
    # diffusers clamps the variance at 1e-20 and skips noise at t = 0; ours is exactly 0 there.
    # Both (1 - alpha_bar_{t-1}) and (1 - alpha_bar_t) carry the cancellation error.
    var_tol = 2 * cancellation_tol(s.alpha_bars[t]).reshape(-1) * ref[f"ddpm_var/{ptype}"] + 1e-12
    assert np.all(np.abs(np.asarray(var).reshape(-1) - ref[f"ddpm_var/{ptype}"]) <= var_tol)


@pytest.mark.parametrize("ptype", list(PTYPES))
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_step_matches(ref, ptype, eta):
    s = schedules.linear()
    ab = s.alpha_bars
    out = []
    for i, t in enumerate([980, 500, 20, 0]):
        ab_prev = ab[t - 20] if t >= 20 else 1.0
        x, _ = samplers.ddim_step(
            ref["pred"][i : i + 1], ref["eps"][i : i + 1], ab[t], ab_prev, eta, ref["noise"][i : i + 1],
            prediction=PTYPES[ptype],
        )
        out.append(x[0])
    np.testing.assert_allclose(np.stack(out), ref[f"ddim/{ptype}/{eta}"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spacing", timesteps.SPACINGS)
@pytest.mark.parametrize("n", [1, 3, 7, 10, 50, 999, 1000])
def test_ddim_grids_match(ref, spacing, n):
    np.testing.assert_array_equal(timesteps.ddim_timesteps(1000, n, spacing), ref[f"grid/{spacing}/{n}"])


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("n", [4, 28])
def test_flow_sigmas_match(ref, shift, n):
    np.testing.assert_allclose(flow.diffusers_time_grid(n, shift), ref[f"flow_sigmas/{shift}/{n}"], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------
# DPM-Solver++ against DPMSolverMultistepScheduler


def _sigmas(grid):
    """The grid's VE noise levels sigma = s / a, ``(S + 1,)`` with where the last step lands."""
    return np.append(np.asarray(grid.s / grid.a), np.asarray(grid.s_next[-1] / grid.a_next[-1]))


@pytest.mark.parametrize("spacing", timesteps.SPACINGS)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 20, 50, 100, 999])
def test_dpm_grids_match(ref, spacing, n):
    np.testing.assert_array_equal(timesteps.dpm_timesteps(1000, n, spacing), ref[f"dpm_grid/{spacing}/{n}"])
    s = schedules.linear()
    grid = sampling.make_grid("dpmpp_2m", n, schedule=s, spacing=spacing)
    np.testing.assert_array_equal(np.asarray(grid.t), ref[f"dpm_grid/{spacing}/{n}"])
    want = ref[f"dpm_sigmas/{spacing}/{n}"]  # ends in 0: final_sigmas_type="zero"
    tol = np.append(cancellation_tol(s.alpha_bars[grid.t]).reshape(-1), 0.0)  # sigma^2 = (1 - ab) / ab
    assert np.all(np.abs(_sigmas(grid) - want) <= tol * want)


@pytest.mark.parametrize("n", [1, 10, 50])
def test_dpm_default_grid_is_diffusers_default(ref, n):
    """make_grid("dpmpp_2m", n) is DPMSolverMultistepScheduler's default (linspace, final zero)."""
    grid = sampling.make_grid("dpmpp_2m", n, schedule=schedules.linear())
    np.testing.assert_array_equal(np.asarray(grid.t), ref[f"dpm_grid/linspace/{n}"])
    assert float(grid.a_next[-1]) == 1.0 and float(grid.s_next[-1]) == 0.0


@pytest.mark.parametrize("sched", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("n", [1, 2, 5, 10, 25, 50])
def test_karras_grid_matches(ref, sched, n):
    s = schedules.make_schedule(sched, 1000)
    grid = grids.karras_grid(s, n)
    want = ref[f"karras_sigmas/{sched}/{n}"]  # Karras et al. eq. 5, then 0
    np.testing.assert_allclose(_sigmas(grid), want, rtol=2e-5)
    # The sigma -> t map itself (log-sigma interpolation), before any rounding.
    np.testing.assert_allclose(timesteps.sigma_to_t(ref[f"karras_sigmas64/{sched}/{n}"], s.alpha_bars),
                               ref[f"karras_t/{sched}/{n}"], rtol=0, atol=2e-3)
    ours = np.asarray(grid.t)
    if sched == "squaredcos_cap_v2":
        # diffusers skips the rounding for this schedule and its int64 cast truncates.
        np.testing.assert_array_equal(ref[f"karras_grid/{sched}/{n}"], np.floor(ref[f"karras_t/{sched}/{n}"]))
        np.testing.assert_array_equal(ours, np.round(ref[f"karras_t/{sched}/{n}"]))
    else:
        np.testing.assert_array_equal(ours, ref[f"karras_grid/{sched}/{n}"])


DPM_RUNS = ["eps_2m", "v_2m", "x0_2m_leading", "eps_3m", "v_3m_trailing", "eps_2m_karras", "v_3m_karras",
            "eps_1_karras", "eps_2m_sigma_min", "eps_2m_sigma_min_long", "eps_3m_euler_at_final",
            "v_2m_no_lower_final", "v_3m_zero_snr", "flow_2m"]
_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0", "flow_prediction": "velocity"}


def test_dpm_runs_are_all_tested(ref):
    assert {k.split("/")[1] for k in ref if k.startswith("dpm_run/")} == set(DPM_RUNS)


def _replay(outputs, grid_t, x, t, cond):
    """The network output diffusers was fed at the step whose time is ``t``."""
    return outputs[jnp.argmin(jnp.abs(grid_t - t[0].astype(jnp.float32)))]


def _dpm_run(ref, name):
    """Our grid and trajectory for the diffusers run ``name``, built from its saved configuration."""
    cfg = json.loads(str(ref[f"dpm_run/{name}/config"]))
    outputs = jnp.asarray(ref[f"dpm_run/{name}/outputs"])  # (S, B, H, W, C)
    sampler = {1: "ddim", 2: "dpmpp_2m", 3: "dpmpp_3m"}[cfg["solver_order"]]
    if cfg.get("use_flow_sigmas"):
        grid = sampling.make_grid(sampler, times=ref[f"dpm_run/{name}/sigmas"])
    else:
        schedule = schedules.make_schedule("linear", 1000, zero_terminal_snr=cfg.get("rescale_betas_zero_snr", False))
        grid = sampling.make_grid(sampler, outputs.shape[0], schedule=schedule, spacing=cfg.get("timestep_spacing"),
                                  karras=cfg.get("use_karras_sigmas", False), final=cfg.get("final_sigmas_type"))
        np.testing.assert_array_equal(np.asarray(grid.t), ref[f"dpm_run/{name}/timesteps"])
    grid_t = jnp.asarray(grid.t, jnp.float32)
    assert np.unique(np.asarray(grid_t)).size == grid.num_steps  # the replay finds each step by its time
    den = denoiser(jax.tree_util.Partial(_replay, outputs, grid_t), _PREDICTIONS[cfg["prediction_type"]])
    options = {k: cfg[k] for k in ("lower_order_final", "euler_at_final") if k in cfg}
    return grid, lambda g: sampling.SAMPLERS[sampler].fn(jax.random.key(0), den, ref[f"dpm_run/{name}/x_T"], g,
                                                         return_trajectory=True, **options)[1]


def _step_errors(tr, want):
    """Per-step max |ours - diffusers| relative to that step's largest entry, ``(S,)``."""
    err = np.abs(np.asarray(tr.x[1:]) - want).reshape(want.shape[0], -1).max(axis=1)
    return err / np.abs(want).reshape(want.shape[0], -1).max(axis=1)


@pytest.mark.parametrize("name", [n for n in DPM_RUNS if n != "v_3m_zero_snr"])
def test_dpm_solver_run_matches(ref, name):
    """Every step of whole runs (orders 1-3, eps/v/x0/flow, spacings, Karras, final options)
    on the same replayed model outputs. Both sides are float32; here a and s come from
    alpha_bar, there from sigma, so agreement is to a few ulps of the largest entry."""
    grid, run = _dpm_run(ref, name)
    want = ref[f"dpm_run/{name}/sigmas"]
    ours = np.asarray(grid.s.tolist() + [grid.s_next[-1]]) if grid.path == "flow" else _sigmas(grid)
    np.testing.assert_allclose(ours, want, rtol=2e-5, atol=1e-7)
    assert np.all(_step_errors(run(grid), ref[f"dpm_run/{name}/xs"]) < 1e-5)


def test_dpm_solver_zero_snr_differs_only_by_diffusers_clamp(ref):
    """At zero terminal SNR our first step starts at a = 0 exactly; diffusers clamps
    alpha_bar_{T-1} to 2^-24 (a = 2^-12). Putting that clamp into our grid reproduces
    its run; without it the runs differ by about that much."""
    grid, run = _dpm_run(ref, "v_3m_zero_snr")
    want = ref["dpm_run/v_3m_zero_snr/xs"]
    assert float(grid.a[0]) == 0.0
    ab = 2.0**-24
    clamped = dataclasses.replace(grid, a=grid.a.at[0].set(ab**0.5), s=grid.s.at[0].set((1 - ab) ** 0.5))
    assert np.all(_step_errors(run(clamped), want) < 1e-5)
    assert np.all(_step_errors(run(grid), want) < 2e-2)


@pytest.mark.parametrize("tag, final", [("alpha_one", "zero"), ("sigma_min", "sigma_min")])
def test_ddim_run_matches_with_final(ref, tag, final):
    """Deterministic DDIM over a whole grid: final="zero" is DDIMScheduler's
    set_alpha_to_one=True (land on the data), "sigma_min" its set_alpha_to_one=False."""
    grid = sampling.make_grid("ddim", 6, schedule=schedules.linear(), final=None if final == "zero" else final)
    outputs, grid_t = jnp.asarray(ref[f"ddim_run/{tag}/outputs"]), jnp.asarray(grid.t, jnp.float32)
    den = denoiser(jax.tree_util.Partial(_replay, outputs, grid_t), "eps")
    _, tr = samplers.sample_ddim(jax.random.key(0), den, ref[f"ddim_run/{tag}/x_T"], grid, return_trajectory=True)
    assert np.all(_step_errors(tr, ref[f"ddim_run/{tag}/xs"]) < 1e-5)
