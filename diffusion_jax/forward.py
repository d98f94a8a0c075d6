"""The forward (noising) process and its tractable reverse posterior.

Closed form (DDPM eq. 4):   q(x_t | x0) = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I)
Reparameterised sample:     x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
Posterior (DDPM eqs. 6-7):  q(x_{t-1} | x_t, x0) = N(mu_tilde, beta_tilde I) with
    mu_tilde   = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x0
               + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
    beta_tilde = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t

Arrays are ``(B, ...)``; ``t`` is ``(B,)`` integers in ``0..T-1`` or one scalar for the
whole batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusion_jax._checks import check_batched, check_same_shape, check_timesteps, expand_to, take_timesteps
from diffusion_jax.schedules import Schedule

__all__ = ["q_moments", "q_sample", "add_noise", "posterior_variance", "posterior_log_variance_clipped",
           "posterior_coefficients", "q_posterior"]


def _t(schedule: Schedule, t, x):
    return check_timesteps(t, schedule.num_timesteps, batch=x.shape[0])


def q_moments(schedule: Schedule, x0, t):
    """Mean and standard deviation of q(x_t | x0); mean has x0's shape, std is per row."""
    x0 = check_batched(x0, name="x0")
    t = _t(schedule, t, x0)
    alpha_bar = take_timesteps(schedule.alpha_bars, t)  # NaN for a traced t outside [0, T-1]
    return expand_to(jnp.sqrt(alpha_bar), x0) * x0, expand_to(jnp.sqrt(1.0 - alpha_bar), x0)


def q_sample(schedule: Schedule, x0, t, eps):
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps for given noise ``eps``.

    Equal to diffusers' ``DDPMScheduler.add_noise(x0, eps, t)``.
    """
    check_same_shape(x0, eps, names=("x0", "eps"))
    mean, std = q_moments(schedule, x0, t)
    return mean + std * eps


def add_noise(key, schedule: Schedule, x0, t):
    """Draw eps ~ N(0, I) with ``key`` and noise ``x0`` to step ``t``; returns ``(x_t, eps)``."""
    x0 = check_batched(x0, name="x0")
    eps = jax.random.normal(key, x0.shape, x0.dtype)
    return q_sample(schedule, x0, t, eps), eps


def posterior_variance(schedule: Schedule):
    """beta_tilde_t for every t, shape ``(T,)``; zero at t = 0 (nothing left to sample)."""
    return schedule.betas * (1.0 - schedule.alpha_bars_prev) / (1.0 - schedule.alpha_bars)


def posterior_log_variance_clipped(schedule: Schedule):
    """log beta_tilde_t with the t = 0 entry replaced by t = 1's, shape ``(T,)``.

    beta_tilde_0 = 0, so its log is -inf; DDPM's reference code substitutes beta_tilde_1
    so that learned-variance losses stay finite.
    """
    var = posterior_variance(schedule)
    if var.shape[0] == 1:
        return jnp.log(jnp.maximum(var, jnp.finfo(var.dtype).tiny))
    return jnp.log(jnp.concatenate([var[1:2], var[1:]]))


def posterior_coefficients(schedule: Schedule):
    """(coef_x0, coef_xt) of mu_tilde for every t, each shape ``(T,)`` (DDPM eq. 7)."""
    one_minus_ab = 1.0 - schedule.alpha_bars
    coef_x0 = jnp.sqrt(schedule.alpha_bars_prev) * schedule.betas / one_minus_ab
    coef_xt = jnp.sqrt(schedule.alphas) * (1.0 - schedule.alpha_bars_prev) / one_minus_ab
    return coef_x0, coef_xt


def q_posterior(schedule: Schedule, x0, x_t, t):
    """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x0).

    Returns ``(mean, variance, log_variance)``: mean has x_t's shape; the other two are
    broadcastable per-row arrays ``(B, 1, ..., 1)`` (or scalars for a scalar ``t``).
    """
    check_same_shape(x0, x_t, names=("x0", "x_t"))
    x_t = check_batched(x_t, name="x_t")
    t = _t(schedule, t, x_t)
    coef_x0, coef_xt = posterior_coefficients(schedule)
    coef_x0, coef_xt = take_timesteps(coef_x0, t), take_timesteps(coef_xt, t)  # NaN for a traced bad t
    mean = expand_to(coef_x0, x_t) * x0 + expand_to(coef_xt, x_t) * x_t
    variance = expand_to(take_timesteps(posterior_variance(schedule), t), x_t)
    log_variance = expand_to(take_timesteps(posterior_log_variance_clipped(schedule), t), x_t)
    return mean, variance, log_variance
