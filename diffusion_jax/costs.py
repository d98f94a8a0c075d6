"""What one denoiser evaluation and one decode cost: XLA-counted FLOPs and measured time.

Lesson 08 compares pixel and latent models with these: the denoiser runs at every step,
the VAE decoder once per sample.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from diffusion_jax import pipeline
from diffusion_jax.models import forward_flops
from diffusion_jax.timing import median_ms

__all__ = ["forward_cost", "decode_cost"]


def _check(batch_size, repeats):
    for name, v in (("batch_size", batch_size), ("repeats", repeats)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def forward_cost(preset, state=None, *, batch_size: int = 64, repeats: int = 5, seed: int = 0) -> dict:
    """Cost of ONE denoiser forward of ``preset``'s model at ``batch_size`` rows.

    Returns ``{"input_shape", "gflops_per_image" (XLA cost analysis), "ms_per_forward"
    (median of ``repeats`` jitted calls after one warm-up), "ms_per_image"}``. The weights
    (``state``'s EMA, else a fresh init) do not change the cost. The model works on
    latents for latent presets, pixels otherwise.
    """
    _check(batch_size, repeats)
    model = state.model() if state is not None else pipeline.build_model(preset, seed)
    hwc = pipeline.model_input_shape(preset)
    x = jnp.zeros((batch_size,) + hwc)  # (B, H, W, C)
    t = jnp.full((batch_size,), 500, jnp.int32)
    y = jnp.zeros((batch_size,), jnp.int32)
    flops = forward_flops(model, x, t, y) / batch_size
    graphdef, params = nnx.split(model)
    forward = jax.jit(lambda p, x, t, y: nnx.merge(graphdef, p)(x, t, y))
    ms = median_ms(lambda: forward(params, x, t, y), repeats)
    return {"input_shape": hwc, "gflops_per_image": flops / 1e9, "ms_per_forward": ms, "ms_per_image": ms / batch_size}


def decode_cost(preset, *, batch_size: int = 64, repeats: int = 5) -> dict:
    """Cost of decoding ``batch_size`` latents with ``preset``'s VAE (once per sample); same keys."""
    _check(batch_size, repeats)
    c = pipeline.codec(preset)
    vae = nnx.merge(c.graphdef, c.params)
    z = jnp.zeros((batch_size,) + c.latent_shape)  # (B, h, w, c)
    flops = forward_flops(vae.decoder, z) / batch_size
    graphdef, params = nnx.split(vae.decoder)
    decode = jax.jit(lambda p, z: nnx.merge(graphdef, p)(z))
    ms = median_ms(lambda: decode(params, z), repeats)
    return {"input_shape": c.latent_shape, "gflops_per_image": flops / 1e9, "ms_per_forward": ms,
            "ms_per_image": ms / batch_size}
