"""Lesson 07 exercises: the DDIM update, the evaluation budget, one inversion step.

The references call the library; the learner re-derives the same numbers by hand.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import samplers, sampling
from diffusion_jax.exercises._core import register
from diffusion_jax.parameterization import to_x0

LESSON = "07"


def _ddim_reference(eps, x_t, alpha_bar, alpha_bar_prev, eta, noise):
    return samplers.ddim_step(eps, x_t, alpha_bar, alpha_bar_prev, eta, noise, prediction="eps")[0]


def _ddim_cases():
    cases = []
    # (shape, alpha_bar, alpha_bar_prev, eta): a mid step, a big skip, the final step to the data
    for i, (shape, ab, abp, eta) in enumerate([((4, 2), 0.30, 0.55, 0.0), ((4, 2), 0.30, 0.55, 1.0),
                                               ((2, 8, 8, 1), 0.05, 0.6, 0.5), ((3, 5), 0.9, 1.0, 1.0),
                                               ((3, 5), 0.001, 0.02, 0.0)]):
        rng = np.random.default_rng(700 + i)
        eps, x_t, noise = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(3))
        cases.append(((eps, x_t, ab, abp, eta, noise), {}))
    return cases


register(
    "ddim_update",
    lesson=LESSON,
    reference=_ddim_reference,
    cases=_ddim_cases,
    hint="x0_hat = (x_t - sqrt(1 - ab) * eps) / sqrt(ab); sigma = eta * sqrt((1 - ab_prev) / (1 - ab)) * "
    "sqrt(1 - ab / ab_prev); return sqrt(ab_prev) * x0_hat + sqrt(1 - ab_prev - sigma**2) * eps + sigma * noise",
    rtol=1e-4,
    atol=1e-4,  # ab = 0.001 divides float32 rounding by sqrt(ab)
)


def _budget_reference(steps, sampler, cfg):
    return sampling.denoiser_evaluations(sampler, steps, predictions_per_step=2 if cfg else 1)


register(
    "evaluation_budget",
    lesson=LESSON,
    reference=_budget_reference,
    cases=lambda: [((1000, "ddpm", False), {}), ((50, "ddim", True), {}), ((6, "ddim", False), {}),
                   ((18, "heun", False), {}), ((10, "heun", True), {}), ((1, "heun", False), {})],
    hint="stages = 2 * steps - 1 for heun (no correction after the last step), else steps; "
    "multiply by 2 with cfg (conditional + unconditional prediction)",
)


def _inversion_reference(eps, x, alpha_bar_from, alpha_bar_to):
    # the eta = 0 DDIM update read upwards: the library's x0 estimate, re-noised with the same eps
    x0_hat = to_x0(eps, x, alpha_bar_from, "eps")
    return jnp.sqrt(alpha_bar_to) * x0_hat + jnp.sqrt(1.0 - alpha_bar_to) * eps


def _inversion_cases():
    cases = []
    for i, (shape, a_from, a_to) in enumerate([((4, 2), 0.9, 0.6), ((2, 8, 8, 1), 0.999, 0.95),
                                               ((3, 5), 0.3, 0.02), ((1, 6), 1.0, 0.99)]):
        rng = np.random.default_rng(750 + i)
        eps, x = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(2))
        cases.append(((eps, x, a_from, a_to), {}))
    return cases


register(
    "inversion_step",
    lesson=LESSON,
    reference=_inversion_reference,
    cases=_inversion_cases,
    hint="x0_hat = (x - sqrt(1 - ab_from) * eps) / sqrt(ab_from); return sqrt(ab_to) * x0_hat + "
    "sqrt(1 - ab_to) * eps (the eta = 0 DDIM step with the levels swapped)",
    rtol=1e-4,
    atol=1e-5,
)
