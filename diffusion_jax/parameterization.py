"""What a denoiser predicts: eps, x0 or v, and exact conversions between them.

With a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t) and x_t = a x0 + b eps:

    eps -> x0:  x0  = (x_t - b eps) / a          x0 -> eps:  eps = (x_t - a x0) / b
    v (Salimans & Ho 2022, diffusers' ``get_velocity``):  v = a eps - b x0
    v -> x0:    x0  = a x_t - b v                v -> eps:   eps = b x_t + a v

The functions take ``alpha_bar`` values rather than a schedule and a timestep, so the
same code serves discrete samplers, DDIM's sub-sampled grids and continuous-time toys.
``alpha_bar`` is a scalar or ``(B,)``; it broadcasts over the trailing axes of x_t.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffusion_jax._checks import check_choice, expand_to

__all__ = ["PREDICTIONS", "velocity", "to_x0", "to_eps", "to_v", "convert", "x0_and_eps"]

PREDICTIONS = ("eps", "x0", "v")


def _ab(alpha_bar, x):
    alpha_bar = expand_to(alpha_bar, x)
    return jnp.sqrt(alpha_bar), jnp.sqrt(1.0 - alpha_bar)


def velocity(x0, eps, alpha_bar):
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0, the v-prediction target."""
    a, b = _ab(alpha_bar, x0)
    return a * eps - b * x0


def to_x0(pred, x_t, alpha_bar, prediction: str):
    """The clean-data estimate x0 implied by a prediction of kind ``prediction``."""
    check_choice(prediction, PREDICTIONS, name="prediction")
    a, b = _ab(alpha_bar, x_t)
    if prediction == "x0":
        return pred
    if prediction == "eps":
        return (x_t - b * pred) / a
    return a * x_t - b * pred


def to_eps(pred, x_t, alpha_bar, prediction: str):
    """The noise estimate eps implied by a prediction of kind ``prediction``."""
    check_choice(prediction, PREDICTIONS, name="prediction")
    a, b = _ab(alpha_bar, x_t)
    if prediction == "eps":
        return pred
    if prediction == "x0":
        return (x_t - a * pred) / b
    return b * x_t + a * pred


def to_v(pred, x_t, alpha_bar, prediction: str):
    """The velocity v implied by a prediction of kind ``prediction``."""
    check_choice(prediction, PREDICTIONS, name="prediction")
    if prediction == "v":
        return pred
    x0 = to_x0(pred, x_t, alpha_bar, prediction)
    eps = to_eps(pred, x_t, alpha_bar, prediction)
    return velocity(x0, eps, alpha_bar)


def convert(pred, x_t, alpha_bar, *, source: str, target: str):
    """Convert a prediction between any two of ``"eps"``, ``"x0"``, ``"v"``."""
    check_choice(target, PREDICTIONS, name="target")
    fn = {"eps": to_eps, "x0": to_x0, "v": to_v}[target]
    return fn(pred, x_t, alpha_bar, source)


def x0_and_eps(pred, x_t, alpha_bar, prediction: str, clip_x0: float | None = None):
    """Both estimates a sampler needs, consistent with each other.

    When ``clip_x0`` is set, x0 is clipped to ``[-clip_x0, clip_x0]`` and eps is
    re-derived from the clipped x0, so the pair still reconstructs x_t exactly.
    Skipping that re-derivation is a classic sampler bug.
    """
    x0 = to_x0(pred, x_t, alpha_bar, prediction)
    if clip_x0 is None:
        return x0, to_eps(pred, x_t, alpha_bar, prediction)
    x0 = jnp.clip(x0, -clip_x0, clip_x0)
    return x0, to_eps(x0, x_t, alpha_bar, "x0")
