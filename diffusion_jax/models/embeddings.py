"""Conditioning embeddings shared by every backbone: timesteps and class labels.

The sinusoidal embedding follows the Transformer positional encoding as used by DDPM
(Ho et al. 2020, appendix B) with diffusers' defaults for `UNet2DModel`
(`flip_sin_to_cos=True`, `downscale_freq_shift=0`): the first half of the vector is
cosines, the second half sines, frequencies ``max_period ** (-i / half)``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx

__all__ = ["timestep_embedding", "TimestepEmbedder", "LabelEmbedder", "GuidanceEmbedder", "GUIDANCE_FEATURE_SCALE"]

#: The guidance embedder sees 100 s: scales of a few units would sit near cos(0) = 1 at all
#: but the highest sinusoidal frequencies (made for timesteps up to 1000), as flow times do.
GUIDANCE_FEATURE_SCALE = 100.0


def timestep_embedding(t, dim: int, max_period: float = 10_000.0):
    """Sinusoidal embedding of (possibly fractional) timesteps.

    Args:
      t: timesteps, shape ``(B,)`` (integers ``0..T-1`` or continuous flow times, which
        callers scale to a comparable range, e.g. ``1000 * t``).
      dim: embedding width; must be even.
      max_period: the longest wavelength.

    Returns:
      ``(B, dim)`` float32 array ``[cos(t * f_i), sin(t * f_i)]``.
    """
    if dim % 2:
        raise ValueError(f"timestep_embedding: dim must be even, got {dim}")
    t = jnp.asarray(t, jnp.float32).reshape(-1)  # (B,)
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t[:, None] * freqs[None, :]  # (B, half)
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)  # (B, dim)


class TimestepEmbedder(nnx.Module):
    """Sinusoidal features followed by a two-layer SiLU MLP (DDPM, DiT)."""

    def __init__(self, dim: int, *, freq_dim: int = 64, rngs: nnx.Rngs):
        self.freq_dim = freq_dim
        self.fc1 = nnx.Linear(freq_dim, dim, rngs=rngs)
        self.fc2 = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, t):
        h = timestep_embedding(t, self.freq_dim)  # (B, freq_dim)
        return self.fc2(nnx.silu(self.fc1(h)))  # (B, dim)


class LabelEmbedder(nnx.Module):
    """Class-label table with one extra learned row: the null label used by CFG.

    Labels are integers ``0..num_classes-1``; the value ``num_classes`` (see
    :attr:`null_label`) means "no condition" and is what label dropout writes.
    """

    def __init__(self, num_classes: int, dim: int, *, rngs: nnx.Rngs):
        self.num_classes = num_classes
        self.table = nnx.Embed(num_classes + 1, dim, rngs=rngs)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def __call__(self, labels):
        return self.table(jnp.asarray(labels, jnp.int32))  # (B, dim)


class GuidanceEmbedder(nnx.Module):
    """Embedding of the CFG scale s for a guidance-distilled student (Meng et al. 2023).

    Sinusoidal features of ``GUIDANCE_FEATURE_SCALE * s`` and a two-layer SiLU MLP whose
    last layer starts at zero: a student built from a teacher's weights plus this module
    computes exactly the teacher's conditional output until training moves it.
    """

    def __init__(self, dim: int, *, freq_dim: int = 64, rngs: nnx.Rngs):
        zeros = nnx.initializers.zeros_init()
        self.freq_dim = freq_dim
        self.fc1 = nnx.Linear(freq_dim, dim, rngs=rngs)
        self.fc2 = nnx.Linear(dim, dim, kernel_init=zeros, bias_init=zeros, rngs=rngs)

    def __call__(self, scale):
        h = timestep_embedding(jnp.asarray(scale, jnp.float32) * GUIDANCE_FEATURE_SCALE, self.freq_dim)  # (B, F)
        return self.fc2(nnx.silu(self.fc1(h)))  # (B, dim)
