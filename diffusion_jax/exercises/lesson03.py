"""Lesson 03 exercises: the reverse posterior and one ancestral DDPM step.

The references call the library (``forward.q_posterior``, ``parameterization.to_x0``);
the learner writes the same formulas by hand. Noise is an explicit input, so the step is
deterministic. Inputs come from NumPy's seeded generator (eager ``jax.random`` compiles
once per new shape, which is slow).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import forward, parameterization, schedules
from diffusion_jax.exercises._core import register

LESSON = "03"


def _normal(rng, shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


def _setups():
    # (shape, schedule, fixed timesteps included in t)
    return [
        ((6, 8, 8, 1), schedules.linear(1000), (0, 1, 5, 500, 998, 999)),
        ((4, 2), schedules.cosine(1000), (0, 1, 250, 999)),
        ((3, 4, 4, 3), schedules.linear(1000), (2, 100, 700)),
        ((3, 1), schedules.from_betas([0.02, 0.03, 0.04]), (0, 1, 2)),  # the chapter's chain
    ]


def _posterior_mean_cases():
    cases = []
    for i, (shape, sched, ts) in enumerate(_setups()):
        rng = np.random.default_rng(400 + i)
        x0 = jnp.asarray(rng.uniform(-1.0, 1.0, shape), jnp.float32)
        t = jnp.asarray(ts, jnp.int32)
        x_t = forward.q_sample(sched, x0, t, _normal(rng, shape))
        cases.append(((sched, x0, x_t, t), {}))
    return cases


register(
    "posterior_mean",
    lesson=LESSON,
    reference=lambda schedule, x0, x_t, t: forward.q_posterior(schedule, x0, x_t, t)[0],
    cases=_posterior_mean_cases,
    hint="with ab = alpha_bars[t], ab_prev = alpha_bars[t-1] (1.0 at t = 0: use "
    "schedule.alpha_bars_prev[t]), beta = betas[t], alpha = 1 - beta, all reshaped to "
    "(B, 1, ..., 1): mean = sqrt(ab_prev) beta / (1 - ab) * x0 + sqrt(alpha) (1 - ab_prev) / (1 - ab) * x_t",
)


def _ddpm_step_cases():
    cases = []
    for i, (shape, sched, ts) in enumerate(_setups()):
        rng = np.random.default_rng(500 + i)
        t = jnp.asarray(ts, jnp.int32)
        x_t = _normal(rng, shape)
        eps_pred = _normal(rng, shape)
        noise = _normal(rng, shape)
        cases.append(((sched, x_t, t, eps_pred, noise), {}))
    return cases


def _ddpm_step_reference(schedule, x_t, t, eps_pred, noise):
    x0_hat = parameterization.to_x0(eps_pred, x_t, schedule.alpha_bars[t], "eps")
    mean, variance, _ = forward.q_posterior(schedule, x0_hat, x_t, t)
    return mean + jnp.sqrt(variance) * noise


register(
    "ddpm_step",
    lesson=LESSON,
    reference=_ddpm_step_reference,
    cases=_ddpm_step_cases,
    hint="mean = (x_t - beta_t / sqrt(1 - ab_t) * eps_pred) / sqrt(alpha_t); std = "
    "sqrt(beta_tilde_t), beta_tilde_t = (1 - ab_prev) / (1 - ab_t) * beta_t (0 at t = 0); "
    "return mean + std * noise, coefficients reshaped to (B, 1, ..., 1)",
    # Algorithm 2's direct formula and the x0-then-posterior route differ by ~5e-4 in
    # float32 at t = 999, where x0_hat divides by sqrt(ab) = 0.006; a wrong std or a
    # missing noise term is off by 1e-2 or more.
    rtol=1e-3,
    atol=2e-3,
)
