"""Training objectives for discrete-time diffusion: eps-, x0- and v-MSE with SNR weights.

DDPM's "simple" loss (Ho et al. 2020, eq. 14) is a plain regression:

    L = E_{t, x0, eps} || eps - eps_theta(sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t) ||^2

Predicting x0 or v instead changes only the target. For one underlying estimate the
three squared errors are tied by the SNR (see :func:`snr_weight`):

    eps-MSE = x0-MSE * SNR = v-MSE * SNR / (SNR + 1)

Min-SNR weighting (Hang et al. 2023) caps the effective x0 weight at ``gamma`` so easy,
high-SNR timesteps stop dominating the gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusion_jax._checks import check_batched, check_choice
from diffusion_jax.forward import q_sample
from diffusion_jax.parameterization import PREDICTIONS, velocity
from diffusion_jax.schedules import Schedule
from diffusion_jax.timesteps import uniform_timesteps

__all__ = ["WEIGHTINGS", "prediction_target", "snr_weight", "per_example_mse", "diffusion_loss"]

WEIGHTINGS = (None, "min_snr")


def prediction_target(prediction: str, x0, eps, alpha_bar):
    """The regression target for a model that predicts ``prediction``."""
    check_choice(prediction, PREDICTIONS, name="prediction")
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    return velocity(x0, eps, alpha_bar)


def snr_weight(snr, prediction: str, weighting: str | None = None, gamma: float = 5.0):
    """Per-timestep loss weight for a target, shape of ``snr``.

    ``weighting=None`` gives 1 (each target's plain MSE). ``"min_snr"`` makes the
    effective x0-space weight min(SNR, gamma) whatever the target:
    eps: min(SNR, gamma) / SNR,  x0: min(SNR, gamma),  v: min(SNR, gamma) / (SNR + 1).
    """
    check_choice(weighting, WEIGHTINGS, name="weighting")
    check_choice(prediction, PREDICTIONS, name="prediction")
    snr = jnp.asarray(snr)
    if weighting is None:
        return jnp.ones_like(snr)
    clipped = jnp.minimum(snr, gamma)
    if prediction == "eps":
        return jnp.minimum(1.0, gamma / snr)  # = min(SNR, gamma)/SNR, finite at SNR = 0
    if prediction == "x0":
        return clipped
    return clipped / (snr + 1.0)


def per_example_mse(pred, target):
    """Mean squared error over all non-batch axes, shape ``(B,)``."""
    return jnp.mean((pred - target) ** 2, axis=tuple(range(1, pred.ndim)))


def diffusion_loss(
    key,
    denoise,
    schedule: Schedule,
    x0,
    cond=None,
    *,
    prediction: str = "eps",
    weighting: str | None = None,
    gamma: float = 5.0,
):
    """One Monte-Carlo estimate of the (weighted) denoising loss on a batch.

    Draws t ~ U{0..T-1} and eps ~ N(0, I) from ``key``, forms x_t (DDPM eq. 4), and
    regresses ``denoise(x_t, t, cond)`` onto the target of kind ``prediction``.

    Returns ``(loss, aux)``: the scalar mean loss and a dict with ``t`` ``(B,)`` and
    ``per_example`` ``(B,)`` weighted losses (for loss-by-timestep plots); shaped for
    ``jax.value_and_grad(..., has_aux=True)``.
    """
    x0 = check_batched(x0, name="x0", min_rank=2)
    key_t, key_eps = jax.random.split(key)
    t = uniform_timesteps(key_t, x0.shape[0], schedule.num_timesteps)  # (B,)
    eps = jax.random.normal(key_eps, x0.shape, x0.dtype)
    x_t = q_sample(schedule, x0, t, eps)
    alpha_bar = schedule.alpha_bars[t]
    target = prediction_target(prediction, x0, eps, alpha_bar)
    weights = snr_weight(schedule.snr[t], prediction, weighting, gamma)
    per_example = weights * per_example_mse(denoise(x_t, t, cond), target)
    return jnp.mean(per_example), {"t": t, "per_example": per_example}
