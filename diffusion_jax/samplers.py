"""Samplers: one signature, one compiled ``lax.scan`` each.

Every sampler is ``sample_*(key, denoiser, x, grid, cond=None, *, row_offset=0,
return_trajectory=False)`` in the style of k-diffusion's ``sample_*(model, x, sigmas)``:

* ``denoiser``: a :class:`~diffusion_jax.denoisers.Denoiser`, which knows its
  parameterisation and returns ``(x0, eps)`` estimates;
* ``x``: the starting noise x_T ``(B, ...)`` (:func:`initial_noise`);
* ``grid``: a :class:`~diffusion_jax.grids.Grid`, where to evaluate and where each step lands.

The samplers are :func:`sample_ddim` (every first-order step: DDPM, DDIM with any eta,
the DDIM paper's sigma-hat, rectified-flow Euler; the grid says which) and
:func:`sample_heun` (second order); :mod:`diffusion_jax.sampling` names them in one table.

Randomness: row ``i`` of a batch uses ``fold_in(key, row_offset + i)``, so an image depends
only on (key, row), never on the batch or chunk size. Its x_T is stream 0 and its per-step
noise stream 1, so every sampler given the same key starts from the same x_T.

The older entry points stay: :func:`ddpm_sample`, :func:`ddim_sample` (a plain callable
plus ``prediction=``), :func:`ddim_step` (one update, for lessons and parity tests) and
:func:`ddim_invert`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax._checks import as_partial, check_choice, check_shape, expand_to, is_concrete
from diffusion_jax.denoisers import Denoiser, denoiser
from diffusion_jax.grids import Grid, ddim_grid, ddpm_grid
from diffusion_jax.parameterization import PREDICTIONS, to_eps, x0_and_eps
from diffusion_jax.schedules import Schedule
from diffusion_jax.timesteps import ddim_timesteps

__all__ = ["Trajectory", "row_keys", "row_normal", "initial_noise", "sample_ddim", "sample_heun",
           "as_denoiser", "ddpm_sample", "ddim_sample", "ddim_sigma", "ddim_step", "ddim_invert"]


class Trajectory(NamedTuple):
    """What a sampler visited: ``x`` is ``(S + 1, B, ...)`` from x_T to the result, ``x0``
    the ``(S, B, ...)`` clean-data estimates at each step, ``t`` the ``(S,)`` times."""

    x: jax.Array
    x0: jax.Array
    t: jax.Array


def row_keys(key, batch: int, offset=0):
    """One key per row, ``fold_in(key, offset + i)`` for i < ``batch``: ``(B,)`` keys."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(offset + jnp.arange(batch))


def row_normal(keys, stream: int, step, row_shape, dtype=jnp.float32):
    """Per-row standard normals ``(B, *row_shape)`` from ``fold_in(fold_in(k_i, stream), step)``."""

    def one(k):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(k, stream), step), row_shape, dtype)

    return jax.vmap(one)(keys)


def initial_noise(key, shape, offset: int = 0):
    """The x_T ~ N(0, I) every sampler starts from for ``key``; rows ``offset .. offset + B - 1``."""
    shape = check_shape(shape)
    return row_normal(row_keys(key, shape[0], offset), 0, 0, shape[1:])


def _check_inputs(denoiser_, x, grid):
    if not isinstance(denoiser_, Denoiser):
        raise TypeError(f"denoiser must be a diffusion_jax.denoisers.Denoiser (wrap a function with "
                        f"denoisers.denoiser(fn, prediction)), got {type(denoiser_).__name__}")
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a diffusion_jax.grids.Grid, got {type(grid).__name__}")
    if jnp.ndim(x) < 1:
        raise ValueError(f"x must be a batch (B, ...) of starting noise, got shape {jnp.shape(x)}")


def _finish(x_last, ys, grid, x_T, return_trajectory):
    if not return_trajectory:
        return x_last
    xs, x0s = ys
    return x_last, Trajectory(jnp.concatenate([x_T[None], xs], axis=0), x0s, grid.t)  # (S + 1, B, ...)


def _t_rows(t, x):
    return jnp.full((x.shape[0],), t, t.dtype)  # (B,)


@functools.partial(jax.jit, static_argnames=("return_trajectory",))
def _first_order(key, denoiser_, x, grid, cond, row_offset, return_trajectory):
    keys = row_keys(key, x.shape[0], row_offset)

    def step(x, inputs):
        i, g = inputs
        x0, _ = denoiser_(x, _t_rows(g.t, x), g.a, g.s, cond)
        z = row_normal(keys, 1, i, x.shape[1:], x.dtype)
        x = g.c_x0 * x0 + g.c_xt * x + g.sigma * z  # DDPM eq. 7 / DDIM eq. 12
        return x, (x, x0) if return_trajectory else None

    x_last, ys = jax.lax.scan(step, x, (jnp.arange(grid.num_steps), grid))
    return _finish(x_last, ys, grid, x, return_trajectory)


def sample_ddim(key, denoiser_: Denoiser, x, grid: Grid, cond=None, *, row_offset=0, return_trajectory=False):
    """First-order steps ``x_next = c_x0 x0_hat + c_xt x_t + sigma z`` on ``grid``.

    One function for DDPM (:func:`~diffusion_jax.grids.ddpm_grid`), DDIM with any eta
    or noise vector (:func:`~diffusion_jax.grids.timestep_grid`) and rectified-flow
    Euler (:func:`~diffusion_jax.grids.flow_grid`): deterministic DDIM *is* Euler on the
    probability-flow ODE written in x / a against s / a (and in t for the straight path).
    """
    _check_inputs(denoiser_, x, grid)
    return _first_order(key, denoiser_, jnp.asarray(x), grid, cond, jnp.asarray(row_offset, jnp.int32),
                        return_trajectory)


@functools.partial(jax.jit, static_argnames=("return_trajectory",))
def _heun(key, denoiser_, x, grid, cond, row_offset, return_trajectory):
    del key, row_offset  # deterministic
    flow = grid.path == "flow"
    S = grid.num_steps
    t_land = jnp.concatenate([grid.t[1:], grid.t[-1:]])  # network time where step i lands

    def slope(x0, eps):
        # dx/dt = eps - x0 on the straight path; d(x/a)/d(s/a) = eps on a diffusion path.
        return eps - x0 if flow else eps

    def step(x, inputs):
        i, g, t_next = inputs
        x0, eps = denoiser_(x, _t_rows(g.t, x), g.a, g.s, cond)
        # The ODE variable tau and the state y that is linear in it along the ODE.
        tau, tau_next = (g.s, g.s_next) if flow else (g.s / g.a, g.s_next / g.a_next)
        y = x if flow else x / g.a
        d = slope(x0, eps)
        y_euler = y + (tau_next - tau) * d
        x_euler = y_euler if flow else y_euler * g.a_next

        def corrected(_):
            x0_2, eps_2 = denoiser_(x_euler, _t_rows(t_next, x), g.a_next, g.s_next, cond)
            y_new = y + (tau_next - tau) * 0.5 * (d + slope(x0_2, eps_2))
            return y_new if flow else y_new * g.a_next

        # Landing on the data (s_next = 0): the corrector would evaluate there; like EDM,
        # the last step is plain Euler.
        x_new = jax.lax.cond(i < S - 1, corrected, lambda _: x_euler, None)
        return x_new, (x_new, x0) if return_trajectory else None

    x_last, ys = jax.lax.scan(step, x, (jnp.arange(S), grid, t_land))
    return _finish(x_last, ys, grid, x, return_trajectory)


def sample_heun(key, denoiser_: Denoiser, x, grid: Grid, cond=None, *, row_offset=0, return_trajectory=False):
    """Heun's second-order method on the probability-flow ODE: ``2 S - 1`` evaluations.

    The ODE variable is the path's natural one: t on the straight (flow) path, where
    dx/dt = eps - x0; sigma = s / a on a diffusion path (Karras et al. 2022, Alg. 1),
    where d(x/a)/d(sigma) = eps. The last step lands on the data and is plain Euler.
    Diffusion grids need a > 0 everywhere (no zero-terminal-SNR start).
    """
    _check_inputs(denoiser_, x, grid)
    if grid.path == "vp" and is_concrete(grid.a) and bool(jnp.any(grid.a <= 0)):
        raise ValueError("sample_heun on a diffusion grid needs alpha_bar > 0 at every step "
                         "(sigma = s / a is infinite at zero terminal SNR); use sample_ddim there")
    return _heun(key, denoiser_, jnp.asarray(x), grid, cond, jnp.asarray(row_offset, jnp.int32), return_trajectory)


# ----------------------------------------------------------------------------------------
# the textbook entry points: a plain callable plus prediction=


def as_denoiser(denoise, prediction: str = "eps", clip_x0: float | None = None) -> Denoiser:
    """``denoise`` itself if it is a :class:`Denoiser`, else wrapped with ``prediction``."""
    if isinstance(denoise, Denoiser):
        return denoise
    check_choice(prediction, PREDICTIONS, name="prediction")
    return denoiser(as_partial(denoise), prediction, clip_x0=clip_x0)


def _start(key, shape, x_T):
    shape = check_shape(shape)
    if x_T is None:
        return initial_noise(key, shape)
    x_T = jnp.asarray(x_T)
    if x_T.shape != shape:
        raise ValueError(f"x_T must have the sampling shape {shape}, got {x_T.shape}")
    return x_T


def ddpm_sample(key, denoise, schedule: Schedule, shape, cond=None, *, prediction: str = "eps",
                clip_x0: float | None = None, x_T=None, return_trajectory: bool = False):
    """Ancestral DDPM through all T steps (Ho et al. 2020, Algorithm 2).

    Each step estimates x0 (clipped to ``±clip_x0`` if set) and draws
    x_{t-1} ~ q(x_{t-1} | x_t, x0_hat) with the posterior variance beta_tilde_t
    (diffusers' ``variance_type="fixed_small"``). Returns ``(B, ...)`` samples, or
    ``(samples, Trajectory)`` when ``return_trajectory``.
    """
    d = as_denoiser(denoise, prediction, clip_x0)
    return sample_ddim(key, d, _start(key, shape, x_T), ddpm_grid(schedule), cond,
                       return_trajectory=return_trajectory)


def ddim_sample(key, denoise, schedule: Schedule, shape, cond=None, *, num_steps: int = 50, eta: float = 0.0,
                spacing: str = "leading", prediction: str = "eps", clip_x0: float | None = None, x_T=None,
                return_trajectory: bool = False):
    """DDIM on a ``num_steps`` sub-grid of the schedule (Song et al. 2021).

    The grid is diffusers' ``DDIMScheduler``'s (``steps_offset=0``,
    :func:`~diffusion_jax.timesteps.ddim_timesteps`); the last update lands on
    alpha_bar = 1 (``set_alpha_to_one=True``). ``eta = 0`` is deterministic (the key only
    sets x_T); ``eta = 1`` adds DDPM-sized noise.
    """
    d = as_denoiser(denoise, prediction, clip_x0)
    grid = ddim_grid(schedule, num_steps, eta=eta, spacing=spacing)
    return sample_ddim(key, d, _start(key, shape, x_T), grid, cond, return_trajectory=return_trajectory)


def ddim_sigma(alpha_bar, alpha_bar_prev, eta):
    """sigma_t(eta) of DDIM eq. 16; eta = 1 gives the DDPM posterior std for adjacent steps."""
    return eta * jnp.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))


def ddim_step(pred, x_t, alpha_bar, alpha_bar_prev, eta, noise, *, prediction="eps", clip_x0=None):
    """One DDIM update x_t -> x_prev (Song et al. 2021, eq. 12), from a raw prediction.

    x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma z.
    Returns ``(x_prev, x0_hat)``.
    """
    x0, eps = x0_and_eps(pred, x_t, alpha_bar, prediction, clip_x0)
    sigma = expand_to(ddim_sigma(jnp.asarray(alpha_bar), jnp.asarray(alpha_bar_prev), eta), x_t)
    ab_prev = expand_to(alpha_bar_prev, x_t)  # scalars or (B,) per-row values
    direction = jnp.sqrt(jnp.maximum(1 - ab_prev - sigma**2, 0.0)) * eps
    return jnp.sqrt(ab_prev) * x0 + direction + sigma * noise, x0


def _network_output(d: Denoiser, x_t, t, cond):
    return d.output(x_t, t, cond)


@functools.partial(jax.jit, static_argnames=("prediction", "return_trajectory"))
def _invert(denoise, schedule, x0, cond, grid, prediction, return_trajectory):
    B = x0.shape[0]
    ab = schedule.alpha_bars
    ab_from = jnp.concatenate([jnp.ones((1,), ab.dtype), ab[grid[:-1]]])  # level x starts at

    def step(x, inputs):
        t, ab_cur = inputs
        ab_t = ab[t]
        # eps(x_{t_prev}, t) stands in for the unknown eps(x_t, t): the approximation that
        # makes inversion exact only as the step size goes to zero.
        eps = to_eps(denoise(x, jnp.full((B,), t, jnp.int32), cond), x, ab_t, prediction)
        x0_hat = (x - jnp.sqrt(1 - ab_cur) * eps) / jnp.sqrt(ab_cur)
        x = jnp.sqrt(ab_t) * x0_hat + jnp.sqrt(1 - ab_t) * eps
        return x, (x, x0_hat) if return_trajectory else None

    x, ys = jax.lax.scan(step, x0, (grid, ab_from))
    if not return_trajectory:
        return x
    return x, Trajectory(jnp.concatenate([x0[None], ys[0]], axis=0), ys[1], grid)


def ddim_invert(denoise, schedule: Schedule, x0, cond=None, *, num_steps: int = 50, spacing: str = "leading",
                prediction: str = "eps", return_trajectory: bool = False):
    """Deterministic DDIM inversion: run the eta = 0 ODE forwards from data to noise.

    Walks the same grid as :func:`ddim_sample` in ascending order, so
    ``ddim_sample(..., x_T=ddim_invert(...), eta=0)`` reconstructs ``x0`` up to the
    discretisation error, which vanishes as ``num_steps`` grows. No key: nothing is random.
    ``denoise`` may be a :class:`Denoiser` (its prediction is used) or a plain callable.
    """
    if isinstance(denoise, Denoiser):
        prediction, denoise = denoise.prediction, jax.tree_util.Partial(_network_output, denoise)
    check_choice(prediction, PREDICTIONS, name="prediction")
    x0 = jnp.asarray(x0)
    if x0.ndim < 1:
        raise ValueError(f"x0 must have a leading batch axis (B, ...), got shape {x0.shape}")
    grid = np.ascontiguousarray(ddim_timesteps(schedule.num_timesteps, num_steps, spacing)[::-1])
    return _invert(as_partial(denoise), schedule, x0, cond, jnp.asarray(grid, jnp.int32), prediction,
                   return_trajectory)
