"""DPM-Solver++ (Lu et al. 2022): multistep solvers of the probability-flow ODE in log-SNR.

On the path x_t = a x0 + s eps, with lambda = log(a / s) (half the log-SNR), the ODE
solved with the data prediction x0_hat has the exact solution (Lu et al. 2022, eq. 9)

    x_next = (s_next / s) x_t + a_next * integral of e^{-lambda} x0_hat d lambda.

DPM-Solver++(2M) approximates x0_hat over a step by a line through the current and the
previous estimate; with h = lambda_next - lambda and r = h_prev / h:

    D = x0_i + (x0_i - x0_{i-1}) / (2 r)
    x_next = (s_next / s) x_i - a_next (e^{-h} - 1) D

The first step, and the last (landing on the data, diffusers' ``final_sigmas_type=
"zero"``), are first order (D = x0_i), which is exactly deterministic DDIM.
e^{-h} = (s_next a) / (a_next s) is computed as that ratio, so the endpoints
(a = 0 at zero terminal SNR, s_next = 0 at the data) need no infinite logs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from diffusion_jax.denoisers import Denoiser
from diffusion_jax.grids import Grid
from diffusion_jax.samplers import Trajectory

__all__ = ["sample_dpmpp_2m", "karras_grid"]


def _lambda(a, s):
    return jnp.log(a) - jnp.log(s)  # -inf at a = 0, +inf at s = 0


@functools.partial(jax.jit, static_argnames=("return_trajectory",))
def _dpmpp_2m(key, denoiser_, x, grid, cond, row_offset, return_trajectory):
    del key, row_offset  # deterministic
    S = grid.num_steps
    h_all = _lambda(grid.a_next, grid.s_next) - _lambda(grid.a, grid.s)  # (S,)
    h_prev = jnp.concatenate([jnp.full((1,), jnp.nan, h_all.dtype), h_all[:-1]])

    def step(carry, inputs):
        x, x0_prev = carry
        i, g, h, hp = inputs
        x0, _ = denoiser_(x, jnp.full((x.shape[0],), g.t, g.t.dtype), g.a, g.s, cond)
        exp_neg_h = (g.s_next * g.a) / (g.a_next * g.s)  # e^{-h}
        r = hp / h
        second = (i > 0) & (i < S - 1) & jnp.isfinite(r) & (r > 0)
        D = jnp.where(second, x0 + (x0 - x0_prev) / (2.0 * jnp.where(second, r, 1.0)), x0)
        x_new = (g.s_next / g.s) * x - g.a_next * (exp_neg_h - 1.0) * D
        return (x_new, x0), (x_new, x0) if return_trajectory else None

    (x_last, _), ys = jax.lax.scan(step, (x, jnp.zeros_like(x)), (jnp.arange(S), grid, h_all, h_prev))
    if not return_trajectory:
        return x_last
    return x_last, Trajectory(jnp.concatenate([x[None], ys[0]], axis=0), ys[1], grid.t)


def sample_dpmpp_2m(key, denoiser_: Denoiser, x, grid: Grid, cond=None, *, row_offset=0,
                    return_trajectory=False):
    """DPM-Solver++(2M) on ``grid``: one evaluation per step, deterministic (``key`` unused)."""
    return _dpmpp_2m(key, denoiser_, jnp.asarray(x), grid, cond, jnp.asarray(row_offset, jnp.int32),
                     return_trajectory)


def karras_grid(schedule, num_steps: int, rho: float = 7.0) -> Grid:
    """Karras et al. (2022) sigma spacing on ``schedule`` (to be completed: see the issue)."""
    raise NotImplementedError("karras_grid: pending")
