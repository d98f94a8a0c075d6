"""Classifier-free guidance (Ho & Salimans 2022) as a transformation of a denoiser.

Training: :func:`drop_labels` replaces a random fraction of conditions with the null
condition, so one network learns both the conditional and the unconditional model.

Sampling: :func:`guided_denoiser` wraps ``denoise(x_t, t, cond)`` into a denoiser that
runs the conditional and unconditional rows in ONE batched call and combines them as

    guided = uncond + s * (cond - uncond)

with the diffusers convention for the scale ``s``: 0 is unconditional, 1 is the plain
conditional model, larger extrapolates. The paper writes ``(1 + w) cond - w uncond``,
so ``w = s - 1``. Optional guidance rescale (Lin et al. 2024, eq. 15-16) pulls the
guided prediction's standard deviation back towards the conditional one by ``phi``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax._checks import as_partial, is_concrete

__all__ = ["drop_decision", "drop_labels", "cfg_combine", "paper_weight", "diffusers_scale",
           "rescale_guidance", "guided_denoiser"]


def drop_decision(uniforms, p: float):
    """The condition-dropout rule: row ``i`` goes unconditional when ``uniforms[i] < p``.

    ``uniforms`` are draws from U[0, 1) (any array shape, any source: ``jax.random``,
    NumPy or Python's ``random``); returns a boolean array of the same shape (a JAX
    array for JAX input, else NumPy, compared in float64 so Python draws keep every bit).
    With ``p = 0`` nothing is dropped and with ``p = 1`` everything is, since ``u < 1``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p (the condition dropout probability) must lie in [0, 1], got {p}")
    if isinstance(uniforms, jax.Array):
        return uniforms < p
    return np.asarray(uniforms, np.float64) < p


def drop_labels(key, cond, p: float, null_cond):
    """Replace each row of ``cond`` by ``null_cond`` with probability ``p``.

    ``cond`` is ``(B, ...)`` (class labels ``(B,)`` or tokens ``(B, L, D)``); ``null_cond``
    is one row (or a scalar such as the null label). Returns the new conditions; the
    rows that were dropped are ``drop_decision(jax.random.uniform(key, (B,)), p)``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p (the condition dropout probability) must lie in [0, 1], got {p}")
    cond = jnp.asarray(cond)
    drop = drop_decision(jax.random.uniform(key, (cond.shape[0],)), p)  # (B,)
    drop = drop.reshape((-1,) + (1,) * (cond.ndim - 1))  # (B, 1, ...)
    return jnp.where(drop, jnp.asarray(null_cond, cond.dtype), cond)


def cfg_combine(uncond, cond, scale):
    """uncond + scale * (cond - uncond): the guided prediction (diffusers' scale)."""
    return uncond + scale * (cond - uncond)


def paper_weight(scale):
    """The CFG paper's guidance weight ``w`` for diffusers' scale ``s``: ``w = s - 1``.

    Ho & Salimans write ``(1 + w) cond - w uncond``, which equals
    :func:`cfg_combine` with ``s = 1 + w``: ``w = 0`` is the plain conditional model,
    ``w = -1`` the unconditional one.
    """
    return scale - 1.0


def diffusers_scale(weight):
    """Inverse of :func:`paper_weight`: diffusers' ``s = w + 1``."""
    return weight + 1.0


def rescale_guidance(guided, cond, phi):
    """Guidance rescale: match the per-sample std of ``guided`` to ``cond``, then mix by phi.

    ``phi = 0`` returns ``guided`` unchanged; ``phi = 1`` fully rescales. Standard
    deviations are taken over all non-batch axes, as in diffusers' ``rescale_noise_cfg``.
    """
    axes = tuple(range(1, guided.ndim))
    std_cond = jnp.std(cond, axis=axes, keepdims=True)  # (B, 1, ..., 1)
    std_guided = jnp.std(guided, axis=axes, keepdims=True)
    # A constant row has no spread to match; leave it as is instead of dividing 0 by 0.
    ratio = jnp.where(std_guided > 0, std_cond / jnp.where(std_guided > 0, std_guided, 1.0), 1.0)
    rescaled = guided * ratio
    return phi * rescaled + (1.0 - phi) * guided


def _guided(denoise, scale, null_cond, phi, x_t, t, cond):
    B = x_t.shape[0]
    if cond is None:
        raise ValueError("a guided denoiser needs cond (the condition to guide towards), got None")
    cond = jnp.asarray(cond)
    null = jnp.broadcast_to(jnp.asarray(null_cond, cond.dtype), cond.shape)
    x2 = jnp.concatenate([x_t, x_t], axis=0)  # (2B, ...)
    t2 = jnp.concatenate([jnp.broadcast_to(t, (B,))] * 2, axis=0)  # (2B,)
    c2 = jnp.concatenate([cond, null], axis=0)  # (2B, ...)
    out = denoise(x2, t2, c2)
    out_cond, out_uncond = out[:B], out[B:]
    guided = cfg_combine(out_uncond, out_cond, scale)
    return rescale_guidance(guided, out_cond, phi)


def guided_denoiser(denoise, scale, null_cond, *, rescale: float = 0.0):
    """A denoiser ``f(x_t, t, cond)`` applying CFG with scale ``s`` and rescale ``phi``.

    The result is a :class:`jax.tree_util.Partial` whose scale is a traced leaf: a
    sampler compiled once serves every guidance scale. Guidance is applied to whatever
    the wrapped denoiser predicts (eps, x0 or v), which are all affine in the model
    output, so the combination means the same thing in each parameterisation.
    """
    if not 0.0 <= rescale <= 1.0:
        raise ValueError(f"rescale (phi) must lie in [0, 1], got {rescale}")
    if is_concrete(scale) and not np.all(np.isfinite(np.asarray(scale, np.float64))):
        raise ValueError(f"scale (the guidance scale s) must be a finite number, got {scale}")
    try:
        null = jnp.asarray(null_cond)
    except (TypeError, ValueError):
        null = None
    if null is None or not (jnp.issubdtype(null.dtype, jnp.integer) or jnp.issubdtype(null.dtype, jnp.floating)):
        raise TypeError(f"null_cond must be the null condition (e.g. the null class label), got {null_cond!r}")
    if is_concrete(null) and jnp.issubdtype(null.dtype, jnp.integer) and null.ndim == 0 and int(null) < 0:
        raise ValueError(f"null_cond (the null class label) must be >= 0, usually the number of classes, "
                         f"got {int(null)}")
    return jax.tree_util.Partial(
        _guided,
        as_partial(denoise),
        jnp.asarray(scale, jnp.float32),
        null,
        jnp.asarray(rescale, jnp.float32),
    )
