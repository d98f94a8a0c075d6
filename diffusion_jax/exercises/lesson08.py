"""Lesson 08 exercises: value counts, the latent scale factor, DiT sequence shapes.

The references call the library; the learner re-derives the same numbers by hand.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import latent
from diffusion_jax.exercises._core import register
from diffusion_jax.models import dit
from diffusion_jax.models.vae import latent_scale_factor

LESSON = "08"


def _count_cases():
    return [
        (((512, 512, 3), (64, 64, 4)), {}),  # the chapter's Stable Diffusion example
        (((28, 28, 1), (7, 7, 4)), {}),  # our MNIST VAE
        (((32, 32, 3), (8, 8, 4)), {}),  # our CIFAR-10 VAE
        (((1024, 1024, 3), (128, 128, 16)), {}),  # an 8x VAE with 16 latent channels
    ]


register(
    "pixel_latent_counts",
    lesson=LESSON,
    reference=latent.value_counts,
    cases=_count_cases,
    hint='return {"pixel_values": H*W*C, "latent_values": h*w*c, "scalar_reduction": '
    '(H*W*C) // (h*w*c), "spatial_reduction": (H*W) // (h*w)}',
)


def _latent_cases():
    cases = []
    for i, (shape, std, mean) in enumerate([((16, 7, 7, 4), 5.49, 0.0), ((8, 8, 8, 4), 0.3, 0.5),
                                            ((4, 7, 7, 4), 1.0, -1.0), ((200,), 2.0, 0.0)]):
        z = mean + std * np.random.default_rng(800 + i).standard_normal(shape)
        cases.append(((jnp.asarray(z, jnp.float32),), {}))
    return cases


register(
    "scale_factor_from_latents",
    lesson=LESSON,
    reference=latent_scale_factor,
    cases=_latent_cases,
    hint="return 1 / std(latents), the standard deviation taken over every value of the batch",
    rtol=1e-4,  # float32 std against the library's float64
)


def _sequence_reference(input_shape, patch_size):
    n, d = dit.patchify(jnp.zeros((1,) + tuple(input_shape)), patch_size).shape[1:]  # (1, N, p*p*C)
    return n, d


def _sequence_cases():
    return [(((28, 28, 1), 4), {}), (((7, 7, 4), 1), {}), (((8, 8, 4), 2), {}),
            (((32, 32, 3), 2), {}), (((64, 64, 4), 2), {})]


register(
    "dit_sequence_shape",
    lesson=LESSON,
    reference=_sequence_reference,
    cases=_sequence_cases,
    hint="(H // p) * (W // p) tokens, each holding the p * p * C values of one patch",
)
