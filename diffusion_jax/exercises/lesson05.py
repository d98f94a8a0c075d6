"""Lesson 05 exercises: timestep embeddings, FiLM modulation, DiT patches and their inverse.

The references call the library (``models.embeddings``, ``models.dit``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax.exercises._core import Variant, case, register
from diffusion_jax.models import dit, embeddings

LESSON = "05"


# ------------------------------------------------------------------ sinusoidal_embedding


def _embedding_cases():
    return [
        case("t = 0, 1, 10, 999, dim = 32", jnp.array([0, 1, 10, 999]), 32,
             rows=["t = 0", "t = 1", "t = 10", "t = 999"]),
        case("t = 0, 50, ..., 950, dim = 64", jnp.arange(0, 1000, 50), 64),
        case("fractional t = 0.5, 250.25, dim = 8", jnp.array([0.5, 250.25]), 8, rows=["t = 0.5", "t = 250.25"]),
        case("t = 7, dim = 2 (one frequency)", jnp.array([7]), 2),
    ]


def _embed(order="cos-sin", sign=-1.0, denom="half", interleave=False):
    def embed(t, dim):
        half = dim // 2
        d = half if denom == "half" else dim
        freqs = jnp.exp(sign * jnp.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / d)
        args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]  # (B, half)
        pair = [jnp.cos(args), jnp.sin(args)] if order == "cos-sin" else [jnp.sin(args), jnp.cos(args)]
        if interleave:
            return jnp.stack(pair, axis=-1).reshape(args.shape[0], dim)  # (B, half, 2) -> (B, dim)
        return jnp.concatenate(pair, axis=-1)
    return embed


register(
    "sinusoidal_embedding",
    lesson=LESSON,
    reference=embeddings.timestep_embedding,
    cases=_embedding_cases,
    hints=(
        "Each row is one timestep. Compute half = dim // 2 frequencies that fall geometrically from 1 to about "
        "1/10000, multiply every t by every frequency, and take cosines and sines of those angles.",
        "Frequency i is 10000 ** (-i / half); t[:, None] * freqs[None, :] gives the (B, half) angles. The "
        "output puts all the cosines first, then all the sines, as float32.",
        "freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half) / half); args = t[:, None] * freqs[None, :]; "
        "return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)",
    ),
    variants=(
        Variant("sines first", _embed(order="sin-cos"),
                "the sines before the cosines; this course's embedding (like diffusers' with "
                "flip_sin_to_cos) puts the cosines first"),
        Variant("rising frequencies", _embed(sign=+1.0),
                "frequencies that grow from 1 to 10000; they must fall, so the slow components can tell "
                "distant timesteps apart"),
        Variant("exponent divided by dim", _embed(denom="dim"),
                "the exponent divided by dim instead of by half = dim // 2: the lowest frequency then "
                "stops at 1/100 instead of reaching about 1/10000"),
        Variant("cos and sin interleaved", _embed(interleave=True),
                "cos and sin interleaved pair by pair; the output is all cosines, then all sines"),
    ),
    rtol=1e-4,
    atol=1e-4,  # sin/cos of arguments near 1000 lose a few float32 digits
)


# ------------------------------------------------------------------ film


def _film_cases():
    cases = []
    for i, (label, shape) in enumerate([("(2, 4, 4, 3) feature maps", (2, 4, 4, 3)),
                                        ("(3, 5, 8) token sequences", (3, 5, 8)), ("(4, 6) vectors", (4, 6))]):
        rng = np.random.default_rng(500 + i)  # numpy: no per-shape compilation, still fixed
        b, c = shape[0], shape[-1]
        h = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        scale = jnp.asarray(0.5 * rng.standard_normal((b, c)), jnp.float32)
        shift = jnp.asarray(0.5 * rng.standard_normal((b, c)), jnp.float32)
        cases.append(case(label, h, scale, shift))
    # the chapter's feature map under its "early, high noise" controls
    cases.append(case("the chapter's three features", jnp.array([[0.20, -0.10, 0.50]]),
                      jnp.full((1, 3), 0.50), jnp.full((1, 3), -0.05)))
    return cases


def _expand(a, h):
    return a.reshape(a.shape[:1] + (1,) * (h.ndim - 2) + a.shape[-1:])  # (B, C) -> (B, 1, ..., 1, C)


def _film_reference(h, scale, shift):
    return dit.modulate(h, _expand(shift, h), _expand(scale, h))


register(
    "film",
    lesson=LESSON,
    reference=_film_reference,
    cases=_film_cases,
    hints=(
        "scale and shift hold one value per sample and channel, (B, C); h has positions in between, "
        "(B, ..., C). First make them broadcast over every position of their own sample.",
        "Reshape (B, C) to (B, 1, ..., 1, C) with h.ndim - 2 ones. The modulation is chosen so that "
        "scale = 0 and shift = 0 leave h exactly as it is.",
        "s = scale.reshape(scale.shape[:1] + (1,) * (h.ndim - 2) + scale.shape[-1:]) (the same for shift); "
        "return h * (1 + s) + shift",
    ),
    variants=(
        Variant("no 1 + scale", lambda h, sc, sh: h * _expand(sc, h) + _expand(sh, h),
                "scale multiplying h directly: with this convention a zero scale (and zero shift) must leave h "
                "unchanged, which is what lets a zero-initialised layer start as the identity"),
        Variant("scale and shift swapped", lambda h, sc, sh: h * (1 + _expand(sh, h)) + _expand(sc, h),
                "scale and shift swapped: the first argument multiplies, the second is added"),
    ),
)


# ------------------------------------------------------------------ patchify / unpatchify


def _patch_cases():
    cases = []
    for i, (shape, p) in enumerate([((2, 8, 8, 1), 2), ((1, 28, 28, 1), 4), ((3, 6, 4, 3), 2), ((2, 4, 4, 2), 1)]):
        x = np.random.default_rng(550 + i).standard_normal(shape)
        label = f"{shape[1]}x{shape[2]}x{shape[3]} images, p = {p}" + (" (not square)" if shape[1] != shape[2] else "")
        cases.append(case(label, jnp.asarray(x, jnp.float32), p))
    return cases


def _patchify_with(perm):
    def patchify(x, p):
        b, h, w, c = x.shape
        x = x.reshape(b, h // p, p, w // p, p, c).transpose(perm)  # (B, H/p, py, W/p, px, C) permuted
        return x.reshape(b, (h // p) * (w // p), p * p * c)
    return patchify


register(
    "patchify",
    lesson=LESSON,
    reference=dit.patchify,
    cases=_patch_cases,
    hints=(
        "A plain reshape of (B, H, W, C) to (B, N, p*p*C) does not give patches: the pixels of one patch are "
        "not next to each other in memory. Split H and W into (patch row, row inside the patch) first.",
        "reshape to (B, H/p, p, W/p, p, C), move the two within-patch axes next to each other with a "
        "transpose, so the order is (B, H/p, W/p, p, p, C), then flatten to tokens.",
        "x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // p) * (w // p), p * p * c)",
    ),
    variants=(
        Variant("no transpose", lambda x, p: x.reshape(x.shape[0], -1, p * p * x.shape[-1]),
                "a reshape without a transpose: each 'token' is then a run of p*p consecutive pixels of one "
                "image row, not a p x p square"),
        Variant("patch grid transposed", _patchify_with((0, 3, 1, 2, 4, 5)),
                "the patch grid in column-major order: token i * (W/p) + j must be patch row i, column j"),
        Variant("pixels inside a patch transposed", _patchify_with((0, 1, 3, 4, 2, 5)),
                "the pixels inside each patch flattened column by column; the order is row in patch, "
                "then column, then channel"),
    ),
)


def _unpatchify_cases():
    return [case(c.label, dit.patchify(c.args[0], c.args[1]), c.args[1], *c.args[0].shape[1:]) for c in _patch_cases()]


def _unpatchify_with(perm):
    def unpatchify(tokens, p, H, W, C):
        b = tokens.shape[0]
        x = tokens.reshape(b, H // p, W // p, p, p, C).transpose(perm)
        return x.reshape(b, H, W, C)
    return unpatchify


register(
    "unpatchify",
    lesson=LESSON,
    reference=dit.unpatchify,
    cases=_unpatchify_cases,
    hints=(
        "Undo patchify's three steps in reverse order: unflatten each token, move the axes back, "
        "merge (patch row, row in patch) into H and (patch column, column in patch) into W.",
        "tokens (B, N, p*p*C) -> (B, H/p, W/p, p, p, C); a transpose brings it to (B, H/p, p, W/p, p, C); "
        "a final reshape gives (B, H, W, C). Check it on an image that is not square.",
        "tokens.reshape(b, H // p, W // p, p, p, C).transpose(0, 1, 3, 2, 4, 5).reshape(b, H, W, C)",
    ),
    variants=(
        Variant("no transpose", lambda tok, p, H, W, C: tok.reshape(tok.shape[0], H, W, C),
                "a reshape without a transpose: the p x p squares come back as runs of pixels along rows"),
        Variant("patch grid transposed",
                lambda tok, p, H, W, C: tok.reshape(tok.shape[0], W // p, H // p, p, p, C)
                .transpose(0, 2, 3, 1, 4, 5).reshape(tok.shape[0], H, W, C),
                "the patch grid read column-major: token i * (W/p) + j is patch row i, column j"),
        Variant("pixels inside a patch transposed", _unpatchify_with((0, 1, 4, 2, 3, 5)),
                "the pixels inside each patch put back column by column; they were flattened row by row"),
    ),
)
