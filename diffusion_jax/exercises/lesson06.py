"""Lesson 06 exercises: the classifier-free-guided prediction, the paper's weight, rescale.

The references call the library; the learner re-derives the same numbers by hand.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import guidance
from diffusion_jax.exercises._core import register

LESSON = "06"


def _pair_cases():
    cases = []
    # the chapter's three-component predictions
    u, c = jnp.array([0.20, -0.10, 0.05]), jnp.array([0.05, -0.35, 0.20])
    for s in (0.0, 1.0, 7.5, 15.0):
        cases.append(((u, c, s), {}))
    for i, shape in enumerate([(4, 8, 8, 1), (3, 5)]):
        rng = np.random.default_rng(600 + i)  # numpy: fixed inputs without compiling anything
        cases.append(((jnp.asarray(rng.standard_normal(shape), jnp.float32),
                       jnp.asarray(rng.standard_normal(shape), jnp.float32), 3.0), {}))
    return cases


register(
    "cfg_combine",
    lesson=LESSON,
    reference=guidance.cfg_combine,
    cases=_pair_cases,
    hint="return uncond + scale * (cond - uncond); at scale 0 that is uncond, at scale 1 cond",
)


def _paper_reference(uncond, cond, w):
    return guidance.cfg_combine(uncond, cond, guidance.diffusers_scale(w))


def _paper_cases():
    # the same inputs, read as the paper's w (w = -1 is unconditional, w = 0 conditional)
    return [((u, c, s - 1.0), {}) for (u, c, s), _ in _pair_cases()]


register(
    "cfg_paper",
    lesson=LESSON,
    reference=_paper_reference,
    cases=_paper_cases,
    hint="return (1 + w) * cond - w * uncond; it equals the diffusers form with s = w + 1",
)


def _rescale_cases():
    cases = []
    for i, (shape, phi) in enumerate([((4, 8, 8, 1), 0.7), ((2, 6), 1.0), ((3, 4, 4, 2), 0.0), ((1, 10), 0.5)]):
        rng = np.random.default_rng(650 + i)
        cond = rng.standard_normal(shape)
        guided = 4.0 * rng.standard_normal(shape) + 0.3  # a guided prediction, wider than cond
        cases.append(((jnp.asarray(guided, jnp.float32), jnp.asarray(cond, jnp.float32), phi), {}))
    return cases


register(
    "guidance_rescale",
    lesson=LESSON,
    reference=guidance.rescale_guidance,
    cases=_rescale_cases,
    hint="axes = tuple(range(1, guided.ndim)); ratio = jnp.std(cond, axis=axes, keepdims=True) / "
    "jnp.std(guided, axis=axes, keepdims=True); return phi * guided * ratio + (1 - phi) * guided",
    rtol=1e-5,
    atol=1e-5,
)
