"""Flow matching with the rectified-flow (straight-line) path.

Time convention, used everywhere in this module and nowhere contradicted:
**t = 0 is data, t = 1 is noise**.

    interpolant   x_t = (1 - t) x0 + t eps                (Liu et al. 2022, eq. 1)
    velocity      v   = d x_t / d t = eps - x0            (the regression target)
    sampling      integrate dx/dt = v(x, t) from t = 1 down to t = 0

Given x_t and a velocity, x0 = x_t - t v and eps = x_t + (1 - t) v; a model that
predicts eps (or x0) is a velocity field through :func:`velocity_from_eps`
(:func:`velocity_from_x0`). Velocity functions are called as ``v(x_t, t, cond)`` with
float times ``t`` of shape ``(B,)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusion_jax._checks import as_partial, check_batched, check_choice, check_same_shape, expand_to, is_concrete
from diffusion_jax.losses import per_example_mse
from diffusion_jax.denoisers import Denoiser, denoiser
from diffusion_jax.grids import flow_grid
from diffusion_jax.samplers import _start, sample_ddim, sample_heun
from diffusion_jax.timesteps import logit_normal_pdf, logit_normal_times, shift_times, uniform_times

__all__ = ["TIME_SAMPLINGS", "interpolate", "velocity_target", "velocity_from_eps", "velocity_from_x0",
           "x0_from_velocity", "eps_from_velocity", "eps_model_to_velocity", "sample_times", "time_density",
           "flow_loss", "time_grid", "diffusers_time_grid", "velocity_denoiser", "euler_sample", "heun_sample"]

TIME_SAMPLINGS = ("uniform", "logit_normal")


def _check_times(t, name="t"):
    t = jnp.asarray(t, jnp.float32)
    if is_concrete(t) and t.size and (float(jnp.min(t)) < 0 or float(jnp.max(t)) > 1):
        raise ValueError(f"{name} must lie in [0, 1] (0 = data, 1 = noise), got [{float(jnp.min(t))}, {float(jnp.max(t))}]")
    return t


def interpolate(x0, eps, t):
    """x_t = (1 - t) x0 + t eps; ``t`` is a scalar or ``(B,)``."""
    check_same_shape(x0, eps, names=("x0", "eps"))
    t = expand_to(_check_times(t), x0)
    return (1.0 - t) * x0 + t * eps


def velocity_target(x0, eps):
    return eps - x0


def velocity_from_eps(eps, x_t, t):
    return (eps - x_t) / (1.0 - expand_to(t, x_t))


def velocity_from_x0(x0, x_t, t):
    return (x_t - x0) / expand_to(t, x_t)


def x0_from_velocity(v, x_t, t):
    return x_t - expand_to(t, x_t) * v


def eps_from_velocity(v, x_t, t):
    return x_t + (1.0 - expand_to(t, x_t)) * v


def _eps_as_velocity(eps_fn, x_t, t, cond):
    return velocity_from_eps(eps_fn(x_t, t, cond), x_t, t)


def eps_model_to_velocity(eps_fn):
    """Turn ``eps_fn(x_t, t, cond)`` (eps on the same straight path) into a velocity field.

    v = (eps - x_t) / (1 - t) is undefined at t = 1, where x_t is pure noise and an
    eps-model says nothing about x0 (the flow analogue of eps-prediction at zero
    terminal SNR). Sample it on a grid that starts below 1: ``times=time_grid(n, t_max=0.999)``.
    """
    return jax.tree_util.Partial(_eps_as_velocity, as_partial(eps_fn, name="eps_fn"))


def sample_times(key, batch: int, kind: str = "uniform", *, mean=0.0, std=1.0, shift=1.0):
    """Training times: ``uniform`` or ``logit_normal``, then SD3's ``shift``."""
    check_choice(kind, TIME_SAMPLINGS, name="kind")
    t = uniform_times(key, batch) if kind == "uniform" else logit_normal_times(key, batch, mean, std)
    return shift_times(t, shift)


def time_density(t, kind: str = "uniform", *, mean=0.0, std=1.0, shift=1.0):
    """Density on (0, 1) of the times :func:`sample_times` draws, evaluated at ``t``.

    The base density is 1 (``uniform``) or :func:`~diffusion_jax.timesteps.logit_normal_pdf`;
    the shift t' = s u / (1 + (s - 1) u) is a change of variables with inverse
    u = t' / (s - (s - 1) t') and du/dt' = s / (s - (s - 1) t')^2, so
    p(t') = p_base(u(t')) * du/dt'. Zero outside (0, 1).
    """
    check_choice(kind, TIME_SAMPLINGS, name="kind")
    if not shift > 0:
        raise ValueError(f"shift must be positive, got {shift}")
    if kind == "logit_normal" and not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    t = jnp.asarray(t, jnp.float32)
    denom = shift - (shift - 1.0) * t
    u = t / denom  # the unshifted time that maps to t
    jac = shift / denom**2  # du / dt
    base = jnp.ones_like(u) if kind == "uniform" else logit_normal_pdf(u, mean, std)
    return jnp.where((t > 0) & (t < 1), base * jac, 0.0)


def flow_loss(key, velocity_fn, x0, cond=None, *, time_sampling="uniform", mean=0.0, std=1.0, shift=1.0):
    """Conditional flow-matching loss E || v_theta(x_t, t) - (eps - x0) ||^2.

    Returns ``(loss, aux)`` with ``aux = {"t": (B,), "per_example": (B,)}``.
    """
    x0 = check_batched(x0, name="x0", min_rank=2)
    check_choice(time_sampling, TIME_SAMPLINGS, name="time_sampling")
    key_t, key_eps = jax.random.split(key)
    t = sample_times(key_t, x0.shape[0], time_sampling, mean=mean, std=std, shift=shift)
    eps = jax.random.normal(key_eps, x0.shape, x0.dtype)
    x_t = (1.0 - expand_to(t, x0)) * x0 + expand_to(t, x0) * eps
    per_example = per_example_mse(velocity_fn(x_t, t, cond), velocity_target(x0, eps))
    return jnp.mean(per_example), {"t": t, "per_example": per_example}


def time_grid(num_steps: int, shift: float = 1.0, t_max: float = 1.0):
    """``(num_steps + 1,)`` times from ``t_max`` (noise) to 0 (data), evenly spaced then shifted."""
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if not 0.0 < t_max <= 1.0:
        raise ValueError(f"t_max must lie in (0, 1], got {t_max}")
    return shift_times(jnp.linspace(t_max, 0.0, num_steps + 1), shift)


def diffusers_time_grid(num_steps: int, shift: float = 1.0, num_train_timesteps: int = 1000):
    """The sigmas of diffusers' ``FlowMatchEulerDiscreteScheduler`` (static shift), ``(n + 1,)``.

    diffusers places ``num_steps`` points evenly from 1 down to its smallest training
    sigma shift(1/T), shifts them (so that last point is shifted twice), then appends 0.
    Pass the result as ``times=`` to reproduce its step sizes exactly.
    """
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    sigma_min = shift_times(1.0 / num_train_timesteps, shift)
    grid = shift_times(jnp.linspace(1.0, sigma_min, num_steps), shift)
    return jnp.concatenate([grid, jnp.zeros((1,), grid.dtype)])


def _check_grid(times):
    times = jnp.asarray(times, jnp.float32)
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(f"times must be a 1-D grid of at least 2 times from 1 to 0, got shape {times.shape}")
    if is_concrete(times) and not bool(jnp.all(jnp.diff(times) < 0)):
        raise ValueError("times must decrease strictly (from noise at 1 towards data at 0)")
    return _check_times(times, "times")


def velocity_denoiser(velocity_fn, time_scale: float = 1.0) -> Denoiser:
    """``velocity_fn(x_t, t, cond)`` (float times, 0 = data) as a :class:`Denoiser` for any sampler."""
    return denoiser(as_partial(velocity_fn, name="velocity_fn"), "velocity", time_scale=time_scale)


def _sample(name, key, velocity_fn, shape, cond, num_steps, shift, times, x_T, return_trajectory):
    grid = flow_grid(time_grid(num_steps, shift) if times is None else _check_grid(times))
    d = velocity_fn if isinstance(velocity_fn, Denoiser) else velocity_denoiser(velocity_fn)
    fn = sample_heun if name == "heun" else sample_ddim
    return fn(key, d, _start(key, shape, x_T), grid, cond, return_trajectory=return_trajectory)


def euler_sample(
    key, velocity_fn, shape, cond=None, *, num_steps=50, shift=1.0, times=None, x_T=None, return_trajectory=False
):
    """Rectified-flow sampling with Euler steps from t = 1 to 0: ``num_steps`` evaluations.

    ``key`` only draws x_T (the same x_T as the DDPM/DDIM samplers for that key). The
    grid is :func:`time_grid` unless ``times`` (a decreasing ``(S + 1,)`` grid) is given.
    On the straight path an Euler step x + (t_next - t) v lands exactly where
    deterministic DDIM does, so this runs :func:`~diffusion_jax.samplers.sample_ddim`.
    """
    return _sample("euler", key, velocity_fn, shape, cond, num_steps, shift, times, x_T, return_trajectory)


def heun_sample(
    key, velocity_fn, shape, cond=None, *, num_steps=25, shift=1.0, times=None, x_T=None, return_trajectory=False
):
    """Heun (2nd order) steps from t = 1 to 0: ``2 * num_steps - 1`` evaluations."""
    return _sample("heun", key, velocity_fn, shape, cond, num_steps, shift, times, x_T, return_trajectory)
