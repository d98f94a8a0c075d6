"""Lesson 06 exercises: the guided prediction in both conventions, guidance rescale, and a
guided denoiser with two bugs to find and fix.

The references call the library (``guidance``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import guidance
from diffusion_jax.exercises._core import Variant, case, register

LESSON = "06"


def _pair_cases(param="s"):
    cases = []
    # the chapter's three-component predictions
    u, c = jnp.array([0.20, -0.10, 0.05]), jnp.array([0.05, -0.35, 0.20])
    for s in (0.0, 1.0, 7.5, 15.0):
        value = s if param == "s" else s - 1.0  # the same guided predictions, read as the paper's w
        cases.append(case(f"the chapter's vectors, {param} = {value:g}", u, c, value))
    for i, shape in enumerate([(4, 8, 8, 1), (3, 5)]):
        rng = np.random.default_rng(600 + i)  # numpy: fixed inputs without compiling anything
        value = 3.0 if param == "s" else 2.0
        cases.append(case(f"{shape} predictions, {param} = {value:g}", jnp.asarray(rng.standard_normal(shape), jnp.float32),
                          jnp.asarray(rng.standard_normal(shape), jnp.float32), value))
    return cases


register(
    "cfg_combine",
    lesson=LESSON,
    reference=guidance.cfg_combine,
    cases=_pair_cases,
    hints=(
        "Think of cond - uncond as the direction in which the condition pushes the prediction. Where does the "
        "guided prediction start, and how far along that direction does it go?",
        "It is a straight line in s through uncond (at s = 0) and cond (at s = 1); s > 1 goes past cond.",
        "return uncond + scale * (cond - uncond)",
    ),
    variants=(
        Variant("paper's form with w = s", lambda u, c, s: c + s * (c - u),
                "the paper's form with its w set to the diffusers scale s; in this convention s = 1 must "
                "return cond exactly and s = 0 uncond"),
        Variant("direction reversed", lambda u, c, s: u + s * (u - c),
                "the difference taken the wrong way round: guidance moves away from uncond, towards cond"),
        Variant("direction only", lambda u, c, s: s * (c - u),
                "only the guidance direction, without the point it starts from: s = 0 must give uncond"),
    ),
)


register(
    "cfg_paper",
    lesson=LESSON,
    reference=lambda uncond, cond, w: guidance.cfg_combine(uncond, cond, guidance.diffusers_scale(w)),
    cases=lambda: _pair_cases("w"),
    hints=(
        "The CFG paper weights the conditional prediction by 1 + w and subtracts w times the unconditional one.",
        "Its w = 0 is the plain conditional prediction and w = -1 the unconditional one; compare with the "
        "diffusers form to see which s each w corresponds to.",
        "return (1 + w) * cond - w * uncond",
    ),
    variants=(
        Variant("diffusers' form with s = w", lambda u, c, w: u + w * (c - u),
                "diffusers' formula with s = w: one unit weaker than the paper's w, whose w = 0 is the "
                "conditional prediction"),
        Variant("cond and uncond swapped", lambda u, c, w: (1 + w) * u - w * c,
                "cond and uncond swapped: the extra weight 1 + w belongs to the conditional prediction"),
    ),
)


# ------------------------------------------------------------------ guidance_rescale


def _rescale_cases():
    cases = []
    for i, (shape, phi) in enumerate([((4, 8, 8, 1), 0.7), ((2, 6), 1.0), ((3, 4, 4, 2), 0.0), ((1, 10), 0.5)]):
        rng = np.random.default_rng(650 + i)
        cond = rng.standard_normal(shape)
        # a guided prediction wider than cond, each row by its own factor
        widths = np.linspace(2.0, 5.0, shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
        guided = widths * rng.standard_normal(shape) + 0.3
        label = f"{shape} rows, phi = {phi:g}" + (" (no rescale)" if phi == 0 else " (full rescale)" if phi == 1 else "")
        cases.append(case(label, jnp.asarray(guided, jnp.float32), jnp.asarray(cond, jnp.float32), phi))
    return cases


def _rescaled(stat, *, batch=False, swap_phi=False, invert=False):
    def rescale(guided, cond, phi):
        axes = tuple(range(1 if not batch else 0, guided.ndim))
        r = stat(cond, axis=axes, keepdims=True) / stat(guided, axis=axes, keepdims=True)
        r = 1.0 / r if invert else r
        a, b = (1 - phi, phi) if swap_phi else (phi, 1 - phi)
        return a * guided * r + b * guided
    return rescale


register(
    "guidance_rescale",
    lesson=LESSON,
    reference=guidance.rescale_guidance,
    cases=_rescale_cases,
    hints=(
        "Per sample: measure how spread out each row of cond and of guided is, shrink guided so its spread "
        "matches cond's, and blend the shrunk and the unshrunk versions by phi.",
        "The spread is the standard deviation over all non-batch axes, one number per row, kept as shape "
        "(B, 1, ..., 1) so it broadcasts back (keepdims=True). phi = 0 must return guided unchanged.",
        "axes = tuple(range(1, guided.ndim)); ratio = jnp.std(cond, axis=axes, keepdims=True) / "
        "jnp.std(guided, axis=axes, keepdims=True); return phi * guided * ratio + (1 - phi) * guided",
    ),
    variants=(
        Variant("variance ratio", _rescaled(jnp.var),
                "a ratio of variances; the rescale matches standard deviations, so a ratio of variances "
                "shrinks too much"),
        Variant("one std for the whole batch", _rescaled(jnp.std, batch=True),
                "one standard deviation over the whole batch; each sample gets its own ratio"),
        Variant("phi the wrong way round", _rescaled(jnp.std, swap_phi=True),
                "phi weighting the unrescaled prediction: phi = 0 is plain CFG, phi = 1 the full rescale"),
        Variant("ratio inverted", _rescaled(jnp.std, invert=True),
                "the ratio upside down: the rescaled prediction must have cond's spread, so guided is "
                "multiplied by std(cond) over std(guided)"),
    ),
    rtol=1e-5,
    atol=1e-5,
)


# ------------------------------------------------------------------ fix_guided_prediction (find the bugs)


def _toy_denoise(x, t, c):
    # a made-up denoiser whose output depends on x, t and the label (10 = the null label)
    col = (-1,) + (1,) * (x.ndim - 1)
    label = c.reshape(col).astype(x.dtype)
    return 0.5 * x + 1e-3 * t.reshape(col).astype(x.dtype) + 0.2 * jnp.sin(label) + 0.3 * (label == 10)


def _guided_cases():
    cases = []
    for i, (label, shape, s) in enumerate([("(4, 3) points, s = 3", (4, 3), 3.0),
                                            ("(2, 4, 4, 1) images, s = 7.5", (2, 4, 4, 1), 7.5),
                                            ("(3, 2) points, s = 1 (plain conditional)", (3, 2), 1.0),
                                            ("(3, 2) points, s = 0 (unconditional)", (3, 2), 0.0)]):
        rng = np.random.default_rng(680 + i)
        x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        t = jnp.asarray(rng.integers(0, 1000, shape[0]), jnp.int32)
        labels = jnp.asarray(rng.integers(0, 10, shape[0]), jnp.int32)
        cases.append(case(label, _toy_denoise, x, t, labels, 10, s))
    return cases


def _guided_reference(denoise, x_t, t, labels, null_label, scale):
    return guidance.guided_denoiser(denoise, scale, null_label)(x_t, t, labels)


def _buggy(swap_halves, paper_form):
    def guided(denoise, x_t, t, labels, null_label, scale):
        B = x_t.shape[0]
        out = denoise(jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]),
                      jnp.concatenate([labels, jnp.full_like(labels, null_label)]))  # (2B, ...)
        first, second = out[:B], out[B:]
        uncond, cond = (first, second) if swap_halves else (second, first)
        return cond + scale * (cond - uncond) if paper_form else uncond + scale * (cond - uncond)
    return guided


register(
    "fix_guided_prediction",
    lesson=LESSON,
    reference=_guided_reference,
    cases=_guided_cases,
    hints=(
        "Two lines are wrong. Follow the rows: which half of the batch carries the real labels, and which "
        "half the null label? Then test the formula at s = 1: it must return the conditional prediction.",
        "The first B rows of the output belong to the first B rows of the input (the real labels). The "
        "combination must be diffusers' form, because `scale` is diffusers' s.",
        "cond, uncond = out[:B], out[B:]; return uncond + scale * (cond - uncond)",
    ),
    variants=(
        Variant("both bugs left", _buggy(swap_halves=True, paper_form=True),
                "the code as given: both bugs are still there"),
        Variant("halves still swapped", _buggy(swap_halves=True, paper_form=False),
                "the halves of the batch still swapped: the first B rows were computed with the real labels, "
                "so they are the conditional prediction"),
        Variant("paper's form with w = s", _buggy(swap_halves=False, paper_form=True),
                "the halves are right now, but the combination is the paper's form with w = s; `scale` is "
                "diffusers' s, which must give the conditional prediction at s = 1"),
    ),
)
