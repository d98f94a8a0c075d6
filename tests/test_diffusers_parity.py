"""Agreement with diffusers (PyTorch), the reference implementation most users know.

diffusers is never a dependency of this package: ``make peer`` builds a separate
environment (``.venv-peer``) with PyTorch and diffusers, and this test runs
``tests/peer/diffusers_reference.py`` there in a subprocess, then compares its numbers
with ours. Without that environment the test is skipped with the reason.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import jax.numpy as jnp
import numpy as np
import pytest

from diffusion_jax import flow, forward, parameterization, samplers, schedules, timesteps

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
