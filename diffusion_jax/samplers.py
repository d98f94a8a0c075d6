"""Reverse-process samplers: DDPM ancestral, DDIM (any eta, any spacing) and DDIM inversion.

Every sampler is a pure function ``(key, denoise, schedule, shape, cond, ...) -> x0``
compiled whole by ``jax.jit``: the step loop is a ``jax.lax.scan``, so the sampler is
one XLA program, not a Python loop of dispatches. ``denoise(x_t, t, cond)`` receives
``x_t`` ``(B, ...)`` and integer timesteps ``t`` ``(B,)`` and returns a prediction of the
kind named by ``prediction`` (``"eps"``, ``"x0"`` or ``"v"``).

A ``denoise`` that is a :class:`jax.tree_util.Partial` carries its parameters as pytree
leaves, so new weights or a new guidance scale reuse the compiled program; a plain
function is compiled once per function object.

Randomness: row ``i`` of the batch uses keys folded from ``fold_in(key, i)``, so a
sample is the same whatever the batch size. The initial noise x_T uses stream 0 and the
per-step noise stream 1, so DDPM and DDIM called with the same key start from the same
x_T (see :func:`initial_noise`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax._checks import as_partial, check_choice, check_shape, expand_to, is_concrete
from diffusion_jax.forward import posterior_coefficients, posterior_variance
from diffusion_jax.parameterization import PREDICTIONS, to_eps, x0_and_eps
from diffusion_jax.schedules import Schedule
from diffusion_jax.timesteps import ddim_timesteps


class Trajectory(NamedTuple):
    """What a sampler visited: ``x`` is ``(S + 1, B, ...)`` from x_T to the result, ``x0``
    the ``(S, B, ...)`` clean-data estimates at each step, ``t`` the ``(S,)`` timesteps."""

    x: jax.Array
    x0: jax.Array
    t: jax.Array


def row_keys(key, batch: int):
    """One key per batch row, ``fold_in(key, i)``, shape ``(B, ...)`` of keys."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch))


def row_normal(keys, stream: int, step, row_shape, dtype=jnp.float32):
    """Per-row standard normals ``(B, *row_shape)`` from ``fold_in(fold_in(k_i, stream), step)``."""

    def one(k):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(k, stream), step), row_shape, dtype)

    return jax.vmap(one)(keys)


def initial_noise(key, shape):
    """The x_T ~ N(0, I) every sampler in this library starts from for ``key``."""
    shape = check_shape(shape)
    return row_normal(row_keys(key, shape[0]), 0, 0, shape[1:])


def _start(key, shape, x_T):
    shape = check_shape(shape)
    if x_T is None:
        return initial_noise(key, shape)
    x_T = jnp.asarray(x_T)
    if x_T.shape != shape:
        raise ValueError(f"x_T must have the sampling shape {shape}, got {x_T.shape}")
    return x_T


def _finish(x_last, xs, x0s, ts, x_T, return_trajectory):
    if not return_trajectory:
        return x_last
    xs = jnp.concatenate([x_T[None], xs], axis=0)  # (S + 1, B, ...)
    return x_last, Trajectory(xs, x0s, ts)


@functools.partial(jax.jit, static_argnames=("prediction", "clip_x0", "return_trajectory"))
def _ddpm(key, denoise, schedule, x_T, cond, prediction, clip_x0, return_trajectory):
    B = x_T.shape[0]
    keys = row_keys(key, B)
    coef_x0, coef_xt = posterior_coefficients(schedule)
    std = jnp.sqrt(posterior_variance(schedule))  # std[0] = 0: the last step adds no noise
    ts = jnp.arange(schedule.num_timesteps - 1, -1, -1, dtype=jnp.int32)

    def step(x, inputs):
        i, t = inputs
        pred = denoise(x, jnp.full((B,), t, jnp.int32), cond)
        x0, _ = x0_and_eps(pred, x, schedule.alpha_bars[t], prediction, clip_x0)
        mean = coef_x0[t] * x0 + coef_xt[t] * x  # DDPM eq. 7 with x0 estimated
        x = mean + std[t] * row_normal(keys, 1, i, x.shape[1:], x.dtype)
        return x, (x, x0) if return_trajectory else None

    x, ys = jax.lax.scan(step, x_T, (jnp.arange(ts.shape[0]), ts))
    xs, x0s = ys if return_trajectory else (None, None)
    return _finish(x, xs, x0s, ts, x_T, return_trajectory)


def ddpm_sample(
    key,
    denoise,
    schedule: Schedule,
    shape,
    cond=None,
    *,
    prediction: str = "eps",
    clip_x0: float | None = None,
    x_T=None,
    return_trajectory: bool = False,
):
    """Ancestral DDPM sampling through all T steps (Ho et al. 2020, Algorithm 2).

    Each step estimates x0 from the prediction (optionally clipped to ``±clip_x0``) and
    draws x_{t-1} ~ q(x_{t-1} | x_t, x0_hat) with the posterior variance beta_tilde_t
    (diffusers' ``variance_type="fixed_small"``). Returns ``(B, ...)`` samples, or
    ``(samples, Trajectory)`` when ``return_trajectory``.
    """
    check_choice(prediction, PREDICTIONS, name="prediction")
    x_T = _start(key, shape, x_T)
    return _ddpm(key, as_partial(denoise), schedule, x_T, cond, prediction, clip_x0, return_trajectory)


def ddim_sigma(alpha_bar, alpha_bar_prev, eta):
    """sigma_t(eta) of DDIM eq. 16; eta = 1 gives the DDPM posterior std for adjacent steps."""
    return eta * jnp.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))


def ddim_step(pred, x_t, alpha_bar, alpha_bar_prev, eta, noise, *, prediction="eps", clip_x0=None):
    """One DDIM update x_t -> x_prev (Song et al. 2021, eq. 12).

    x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma z.
    Returns ``(x_prev, x0_hat)``.
    """
    x0, eps = x0_and_eps(pred, x_t, alpha_bar, prediction, clip_x0)
    sigma = expand_to(ddim_sigma(jnp.asarray(alpha_bar), jnp.asarray(alpha_bar_prev), eta), x_t)
    ab_prev = expand_to(alpha_bar_prev, x_t)  # scalars or (B,) per-row values
    direction = jnp.sqrt(jnp.maximum(1 - ab_prev - sigma**2, 0.0)) * eps
    return jnp.sqrt(ab_prev) * x0 + direction + sigma * noise, x0


def _prev_alpha_bars(schedule, grid):
    """alpha_bar at the next grid point; after the last point the data itself (alpha_bar = 1)."""
    nxt = jnp.concatenate([grid[1:], jnp.array([-1], grid.dtype)])
    return jnp.where(nxt >= 0, schedule.alpha_bars[jnp.maximum(nxt, 0)], 1.0)


@functools.partial(jax.jit, static_argnames=("prediction", "clip_x0", "return_trajectory"))
def _ddim(key, denoise, schedule, x_T, cond, grid, eta, prediction, clip_x0, return_trajectory):
    B = x_T.shape[0]
    keys = row_keys(key, B)
    ab_prev = _prev_alpha_bars(schedule, grid)

    def step(x, inputs):
        i, t, abp = inputs
        pred = denoise(x, jnp.full((B,), t, jnp.int32), cond)
        z = row_normal(keys, 1, i, x.shape[1:], x.dtype)
        x, x0 = ddim_step(pred, x, schedule.alpha_bars[t], abp, eta, z, prediction=prediction, clip_x0=clip_x0)
        return x, (x, x0) if return_trajectory else None

    x, ys = jax.lax.scan(step, x_T, (jnp.arange(grid.shape[0]), grid, ab_prev))
    xs, x0s = ys if return_trajectory else (None, None)
    return _finish(x, xs, x0s, grid, x_T, return_trajectory)


def _check_eta(eta):
    if is_concrete(eta) and not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    return jnp.asarray(eta, jnp.float32)


def ddim_sample(
    key,
    denoise,
    schedule: Schedule,
    shape,
    cond=None,
    *,
    num_steps: int = 50,
    eta: float = 0.0,
    spacing: str = "leading",
    prediction: str = "eps",
    clip_x0: float | None = None,
    x_T=None,
    return_trajectory: bool = False,
):
    """DDIM sampling on a ``num_steps`` sub-grid of the schedule (Song et al. 2021).

    The grid comes from :func:`~diffusion_jax.timesteps.ddim_timesteps` (same grids as
    diffusers' ``DDIMScheduler`` with ``steps_offset=0``); each update goes from one grid
    point to the next and the last one to alpha_bar = 1 (``set_alpha_to_one=True``).
    diffusers steps to ``t - T // num_steps`` instead, which is the same point for
    ``leading`` spacing and whenever ``num_steps`` divides T. ``eta = 0`` is
    deterministic (the key only sets x_T); ``eta = 1`` adds DDPM-sized noise.
    """
    check_choice(prediction, PREDICTIONS, name="prediction")
    eta = _check_eta(eta)
    grid = jnp.asarray(ddim_timesteps(schedule.num_timesteps, num_steps, spacing), jnp.int32)
    x_T = _start(key, shape, x_T)
    return _ddim(key, as_partial(denoise), schedule, x_T, cond, grid, eta, prediction, clip_x0, return_trajectory)


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
    xs, x0s = ys if return_trajectory else (None, None)
    return _finish(x, xs, x0s, grid, x0, return_trajectory)


def ddim_invert(
    denoise,
    schedule: Schedule,
    x0,
    cond=None,
    *,
    num_steps: int = 50,
    spacing: str = "leading",
    prediction: str = "eps",
    return_trajectory: bool = False,
):
    """Deterministic DDIM inversion: run the eta = 0 ODE forwards from data to noise.

    Walks the same grid as :func:`ddim_sample` in ascending order, so
    ``ddim_sample(..., x_T=ddim_invert(...), eta=0)`` reconstructs ``x0`` up to the
    discretisation error, which vanishes as ``num_steps`` grows. No key: nothing is random.
    """
    check_choice(prediction, PREDICTIONS, name="prediction")
    x0 = jnp.asarray(x0)
    if x0.ndim < 1:
        raise ValueError(f"x0 must have a leading batch axis (B, ...), got shape {x0.shape}")
    grid = np.ascontiguousarray(ddim_timesteps(schedule.num_timesteps, num_steps, spacing)[::-1])
    return _invert(as_partial(denoise), schedule, x0, cond, jnp.asarray(grid, jnp.int32), prediction, return_trajectory)
