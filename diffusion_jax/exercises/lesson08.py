"""Lesson 08 exercises: value counts, the latent scale factor, DiT sequence shapes, and the
training pair of a latent diffusion model.

The references call the library (``latent``, ``models.vae``, ``models.dit``, ``forward``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax import forward, latent, schedules
from diffusion_jax.exercises._core import Variant, case, register
from diffusion_jax.models import dit
from diffusion_jax.models.vae import latent_scale_factor

LESSON = "08"


# ------------------------------------------------------------------ pixel_latent_counts


def _count_cases():
    return [
        case("Stable Diffusion: 512x512x3 -> 64x64x4", (512, 512, 3), (64, 64, 4)),
        case("our MNIST VAE: 28x28x1 -> 7x7x4", (28, 28, 1), (7, 7, 4)),
        case("our CIFAR-10 VAE: 32x32x3 -> 8x8x4", (32, 32, 3), (8, 8, 4)),
        case("an 8x VAE with 16 latent channels: 1024x1024x3 -> 128x128x16", (1024, 1024, 3), (128, 128, 16)),
    ]


def _counts(scalar, spatial):
    def counts(pixel_shape, latent_shape):
        (H, W, C), (h, w, c) = pixel_shape, latent_shape
        return {"pixel_values": H * W * C, "latent_values": h * w * c,
                "scalar_reduction": scalar(H * W * C, h * w * c), "spatial_reduction": spatial(H, W, C, h, w, c)}
    return counts


register(
    "pixel_latent_counts",
    lesson=LESSON,
    reference=latent.value_counts,
    cases=_count_cases,
    outputs=("latent_values", "pixel_values", "scalar_reduction", "spatial_reduction"),  # dict leaves, sorted
    hints=(
        "Count the numbers each array holds; a reduction is how many times fewer the latent holds.",
        "The scalar reduction compares all values (height, width and channels); the spatial one compares "
        "positions only (height and width).",
        "pixel = H * W * C; latent = h * w * c; scalar = pixel // latent; spatial = (H * W) // (h * w)",
    ),
    variants=(
        Variant("spatial reduction with channels", _counts(lambda p, q: p // q, lambda H, W, C, h, w, c: (H * W * C) // (h * w * c)),
                "the spatial reduction counted with the channels; it compares positions only, H*W with h*w"),
        Variant("reductions upside down", _counts(lambda p, q: q / p, lambda H, W, C, h, w, c: (h * w) / (H * W)),
                "the reductions upside down: they say how many times FEWER values the latent holds, so "
                "they are larger than 1"),
    ),
)


# ------------------------------------------------------------------ scale_factor_from_latents


def _latent_cases():
    cases = []
    for i, (label, shape, std, mean) in enumerate([
        ("(16, 7, 7, 4) latents, std 5.49", (16, 7, 7, 4), 5.49, 0.0),
        ("(8, 8, 8, 4) latents, mean 0.5, std 0.3", (8, 8, 8, 4), 0.3, 0.5),
        ("(4, 7, 7, 4) latents, mean -1, std 1", (4, 7, 7, 4), 1.0, -1.0),
        ("a flat vector of 200 values, std 2", (200,), 2.0, 0.0),
    ]):
        z = mean + std * np.random.default_rng(800 + i).standard_normal(shape)
        cases.append(case(label, jnp.asarray(z, jnp.float32)))
    return cases


register(
    "scale_factor_from_latents",
    lesson=LESSON,
    reference=latent_scale_factor,
    cases=_latent_cases,
    hints=(
        "Multiplying every latent by s multiplies their spread by s. Which s makes the spread exactly 1?",
        "Measure the spread as the standard deviation of all values of the batch together (one number, "
        "not one per channel); the mean is left alone.",
        "return 1.0 / jnp.std(latents)",
    ),
    variants=(
        Variant("the std itself", lambda z: jnp.std(z),
                "the standard deviation itself; the factor must make the scaled latents unit-std, so it is "
                "its reciprocal"),
        Variant("one over the variance", lambda z: 1.0 / jnp.var(z),
                "one over the variance; scaling values by s scales their standard deviation by s, so the "
                "factor uses the standard deviation"),
        Variant("root mean square", lambda z: 1.0 / jnp.sqrt(jnp.mean(jnp.square(z))),
                "one over the root mean square, which also counts the mean; only the spread around the mean "
                "is normalised"),
        Variant("one factor per channel", lambda z: 1.0 / jnp.std(z.reshape(-1, z.shape[-1]), axis=0),
                "one factor per channel; the course (like Stable Diffusion) uses a single number for all values"),
    ),
    rtol=1e-4,  # float32 std against the library's float64
)


# ------------------------------------------------------------------ dit_sequence_shape


def _sequence_reference(input_shape, patch_size):
    n, d = dit.patchify(jnp.zeros((1,) + tuple(input_shape)), patch_size).shape[1:]  # (1, N, p*p*C)
    return n, d


def _sequence_cases():
    return [case("28x28x1 pixels, p = 4", (28, 28, 1), 4), case("7x7x4 latents, p = 1", (7, 7, 4), 1),
            case("8x8x4 latents, p = 2", (8, 8, 4), 2), case("32x32x3 pixels, p = 2", (32, 32, 3), 2),
            case("64x64x4 latents (SD at 512 px), p = 2", (64, 64, 4), 2)]


register(
    "dit_sequence_shape",
    lesson=LESSON,
    reference=_sequence_reference,
    cases=_sequence_cases,
    outputs=("tokens", "values per token"),
    hints=(
        "One token per p x p patch, and each token holds every value of its patch.",
        "The patch grid has H / p rows and W / p columns; a patch holds p * p positions with C channels each.",
        "return (H // p) * (W // p), p * p * C",
    ),
    variants=(
        Variant("channels left out", lambda s, p: ((s[0] // p) * (s[1] // p), p * p),
                "values per token without the channels: each position of a patch carries C numbers"),
        Variant("divided by p once", lambda s, p: ((s[0] * s[1]) // p, p * p * s[2]),
                "the number of positions divided by p once; a patch covers p * p positions"),
        Variant("pair in the wrong order", lambda s, p: (p * p * s[2], (s[0] // p) * (s[1] // p)),
                "the two numbers in the wrong order: (tokens, values per token)"),
    ),
)


# ------------------------------------------------------------------ latent_training_pair


def _toy_encode(x):
    # a made-up "VAE encoder": 2x2 average pooling into two channels, with a large spread like SD's latents
    b, h, w, _ = x.shape
    pooled = x.reshape(b, h // 2, 2, w // 2, 2).mean(axis=(2, 4))  # (B, h/2, w/2)
    return 5.0 * jnp.stack([pooled, pooled ** 2 - 0.3], axis=-1)  # (B, h/2, w/2, 2)


def _pair_reference(encode, scale, schedule, images, t, eps):
    z0 = encode(images) * scale
    return forward.q_sample(schedule, z0, t, eps), eps


def _pair_cases():
    cases = []
    for i, (label, shape, sched, scale) in enumerate([
        ("(4, 8, 8, 1) images, linear schedule, scale 0.2", (4, 8, 8, 1), schedules.linear(1000), 0.2),
        ("(3, 4, 4, 1) images, cosine schedule, scale 0.18215", (3, 4, 4, 1), schedules.cosine(1000), 0.18215),
    ]):
        rng = np.random.default_rng(850 + i)
        images = jnp.asarray(rng.uniform(-1, 1, shape), jnp.float32)
        t = rng.integers(0, 1000, shape[0])
        t[0] = 0
        eps = jnp.asarray(rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, 2)), jnp.float32)
        cases.append(case(label, jax.tree_util.Partial(_toy_encode), scale, sched, images,
                          jnp.asarray(t, jnp.int32), eps, rows=[f"t = {v}" for v in t]))
    return cases


register(
    "latent_training_pair",
    lesson=LESSON,
    reference=_pair_reference,
    cases=_pair_cases,
    outputs=("z_t", "target"),
    hints=(
        "Latent diffusion is ordinary diffusion on the encoder's output: everything that lesson 02 did to "
        "pixels happens here to latents. What does the diffusion model expect its clean latents to look like?",
        "Encode the images, multiply by the scale factor (so the clean latents have unit spread), then noise "
        "them to timestep t with eps, exactly as in lesson 01. This model predicts eps.",
        "z0 = encode(images) * scale; ab = schedule.alpha_bars[t].reshape((-1, 1, 1, 1)); "
        "z_t = jnp.sqrt(ab) * z0 + jnp.sqrt(1 - ab) * eps; return z_t, eps",
    ),
    variants=(
        Variant("scale factor left out", lambda enc, s, sch, x, t, e: _pair_reference(enc, 1.0, sch, x, t, e),
                "unscaled latents: their spread is several times 1, so the noise schedule would barely touch "
                "them; multiply by the scale factor before noising"),
        Variant("divided by the scale", lambda enc, s, sch, x, t, e: _pair_reference(enc, 1.0 / s, sch, x, t, e),
                "latents divided by the scale factor; encoding multiplies by it, decoding divides"),
        Variant("pixels noised, then encoded",
                lambda enc, s, sch, x, t, e: (enc(x * jnp.sqrt(sch.alpha_bars[t]).reshape(-1, 1, 1, 1)) * s
                                              + jnp.sqrt(1 - sch.alpha_bars[t]).reshape(-1, 1, 1, 1) * e, e),
                "the signal scaled in pixel space before encoding; latent diffusion encodes the clean image "
                "and applies the whole forward process to the latent"),
    ),
    rtol=1e-4,
    atol=1e-5,
)
