"""Lesson 05 exercises: timestep embeddings, FiLM modulation and DiT patches.

The references call the library; the learner re-derives the same numbers by hand.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax.exercises._core import register
from diffusion_jax.models import dit, embeddings

LESSON = "05"


def _embedding_cases():
    return [
        ((jnp.array([0, 1, 10, 999]), 32), {}),
        ((jnp.arange(0, 1000, 50), 64), {}),
        ((jnp.array([0.5, 250.25]), 8), {}),
        ((jnp.array([7]), 2), {}),
    ]


register(
    "sinusoidal_embedding",
    lesson=LESSON,
    reference=embeddings.timestep_embedding,
    cases=_embedding_cases,
    hint="half = dim // 2; freqs = exp(-log(10000) * arange(half) / half); args = t[:, None] * "
    "freqs[None, :] (t as float32); return concatenate([cos(args), sin(args)], axis=-1), shape (B, dim)",
    rtol=1e-4,
    atol=1e-4,  # sin/cos of arguments near 1000 lose a few float32 digits
)


def _film_cases():
    cases = []
    shapes = [(2, 4, 4, 3), (3, 5, 8), (4, 6)]
    for i, shape in enumerate(shapes):
        rng = np.random.default_rng(500 + i)  # numpy: no per-shape compilation, still fixed
        b, c = shape[0], shape[-1]
        h = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        scale = jnp.asarray(0.5 * rng.standard_normal((b, c)), jnp.float32)
        shift = jnp.asarray(0.5 * rng.standard_normal((b, c)), jnp.float32)
        cases.append(((h, scale, shift), {}))
    # the chapter's feature map under its "early, high noise" controls
    cases.append(((jnp.array([[0.20, -0.10, 0.50]]), jnp.full((1, 3), 0.50), jnp.full((1, 3), -0.05)), {}))
    return cases


def _film_reference(h, scale, shift):
    expand = scale.shape[:1] + (1,) * (h.ndim - 2) + scale.shape[-1:]  # (B, 1, ..., 1, C)
    return dit.modulate(h, shift.reshape(expand), scale.reshape(expand))


register(
    "film",
    lesson=LESSON,
    reference=_film_reference,
    cases=_film_cases,
    hint="reshape scale and shift from (B, C) to (B, 1, ..., 1, C) so they broadcast over the "
    "positions of h, then return h * (1 + scale) + shift",
)


def _patchify_cases():
    cases = []
    for i, (shape, p) in enumerate([((2, 8, 8, 1), 2), ((1, 28, 28, 1), 4), ((3, 6, 4, 3), 2), ((2, 4, 4, 2), 1)]):
        x = np.random.default_rng(550 + i).standard_normal(shape)
        cases.append(((jnp.asarray(x, jnp.float32), p), {}))
    return cases


register(
    "patchify",
    lesson=LESSON,
    reference=dit.patchify,
    cases=_patchify_cases,
    hint="reshape (B, H, W, C) to (B, H/p, p, W/p, p, C), transpose to (B, H/p, W/p, p, p, C) so each "
    "patch's pixels are contiguous (row-major over rows, columns, channels), then reshape to "
    "(B, (H/p)*(W/p), p*p*C)",
)
