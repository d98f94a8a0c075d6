"""A denoiser that knows what it predicts: the one object every sampler calls.

A trained network is a function ``fn(x_t, t, cond) -> output``; what the output *means*
depends on how it was trained. :class:`Denoiser` carries that meaning with the function,
so samplers never take ``prediction=`` arguments and lessons never pass them around:

=============  ======================  =================================================
prediction     network output          as (x0, eps) on the path x_t = a x0 + s eps
=============  ======================  =================================================
``"eps"``      the noise eps           x0 = (x_t - s eps) / a
``"x0"``       the clean data x0       eps = (x_t - a x0) / s
``"v"``        v = a eps - s x0        x0 = a x_t - s v,  eps = s x_t + a v   (a^2 + s^2 = 1)
``"velocity"`` u = eps - x0 (flow)     x0 = x_t - s u,    eps = x_t + a u     (a = 1 - t, s = t)
=============  ======================  =================================================

Every Gaussian path in this library is ``x_t = a_t x0 + s_t eps``: the variance-preserving
diffusion path has ``a = sqrt(alpha_bar)``, ``s = sqrt(1 - alpha_bar)`` (DDPM eq. 4), the
rectified-flow path ``a = 1 - t``, ``s = t`` (Liu et al. 2022). A sampler asks the denoiser
for ``(x0, eps)`` at ``(x_t, t, a, s)`` and never needs to know which of the four it is.

``clip_x0`` clips the x0 estimate (images live in [-1, 1]) and recomputes eps from the
clipped x0, as diffusers' schedulers do; ``time_scale`` multiplies ``t`` before the network
sees it (flow models see ``1000 t``, see :data:`diffusion_jax.train.FLOW_TIME_SCALE`).
A :class:`Denoiser` is a pytree whose only leaves are the network's (``fn`` is a
:class:`jax.tree_util.Partial`), so new weights or a new guidance scale reuse a compiled
sampler.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from diffusion_jax._checks import as_partial, check_choice, expand_to
from diffusion_jax.guidance import guided_denoiser

__all__ = ["PREDICTIONS", "Denoiser", "denoiser", "to_x0_eps"]

#: What a network can predict: the three diffusion targets and the flow velocity.
PREDICTIONS = ("eps", "x0", "v", "velocity")


@functools.partial(jax.tree_util.register_dataclass, data_fields=["fn"],
                   meta_fields=["prediction", "clip_x0", "time_scale"])
@dataclasses.dataclass(frozen=True)
class Denoiser:
    """``fn(x_t, t, cond)`` plus its parameterisation; call it as ``denoiser(x, t, a, s, cond)``."""

    fn: jax.tree_util.Partial  # the network: fn(x_t, t * time_scale, cond) -> output
    prediction: str = "eps"  # one of PREDICTIONS
    clip_x0: float | None = None  # clip x0 to [-clip_x0, clip_x0]; None for unbounded data (latents)
    time_scale: float = 1.0  # the network sees t * time_scale

    def __post_init__(self):
        check_choice(self.prediction, PREDICTIONS, name="prediction")
        if self.clip_x0 is not None and not self.clip_x0 > 0:
            raise ValueError(f"clip_x0 must be positive or None, got {self.clip_x0}")

    def output(self, x_t, t, cond=None):
        """The network's raw output at ``x_t`` ``(B, ...)`` and times ``t`` ``(B,)``."""
        t = t if self.time_scale == 1.0 else t * self.time_scale
        return self.fn(x_t, t, cond)

    def __call__(self, x_t, t, a, s, cond=None):
        """``(x0, eps)`` estimated at ``x_t``; ``a``, ``s``: scalars or ``(B,)`` path coefficients."""
        return to_x0_eps(self.output(x_t, t, cond), x_t, a, s, self.prediction, self.clip_x0)

    def guided(self, scale, null_cond, *, rescale: float = 0.0) -> Denoiser:
        """The same denoiser under classifier-free guidance (:func:`guidance.guided_denoiser`).

        Guidance combines raw outputs, which are affine in (x0, eps) for every
        parameterisation, so it means the same thing for all four.
        """
        return dataclasses.replace(self, fn=guided_denoiser(self.fn, scale, null_cond, rescale=rescale))


def denoiser(fn, prediction: str = "eps", *, clip_x0: float | None = None, time_scale: float = 1.0) -> Denoiser:
    """Wrap any callable ``fn(x_t, t, cond)`` as a :class:`Denoiser`."""
    return Denoiser(as_partial(fn), prediction, None if clip_x0 is None else float(clip_x0), float(time_scale))


def to_x0_eps(out, x_t, a, s, prediction: str, clip_x0: float | None = None):
    """Convert a network output to ``(x0, eps)`` on the path ``x_t = a x0 + s eps`` (table above)."""
    a, s = expand_to(a, x_t), expand_to(s, x_t)
    if prediction == "eps":
        eps = out
        x0 = (x_t - s * eps) / a
    elif prediction == "x0":
        x0 = out
        eps = (x_t - a * x0) / s
    elif prediction == "v":
        x0 = a * x_t - s * out
        eps = s * x_t + a * out
    elif prediction == "velocity":
        x0 = x_t - s * out
        eps = x_t + a * out
    else:
        check_choice(prediction, PREDICTIONS, name="prediction")
    if clip_x0 is not None:
        x0 = jnp.clip(x0, -clip_x0, clip_x0)
        # Keep x_t = a x0 + s eps true for the clipped x0 (diffusers does the same).
        eps = jnp.where(s > 0, (x_t - a * x0) / jnp.where(s > 0, s, 1.0), eps)
    return x0, eps
