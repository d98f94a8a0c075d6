"""Lesson 01 exercises: the forward process, schedules and SNR.

The references call the library; the learner re-derives the same numbers by hand.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffusion_jax import forward, schedules
from diffusion_jax.exercises._core import register

LESSON = "01"


def _alpha_bar_cases():
    return [
        ((schedules.linear(1000).betas,), {}),
        ((schedules.cosine(1000).betas,), {}),
        ((schedules.scaled_linear(50).betas,), {}),
        ((jnp.array([0.1, 0.2, 0.5], jnp.float32),), {}),
    ]


register(
    "alpha_bar_from_betas",
    lesson=LESSON,
    reference=lambda betas: schedules.from_betas(betas).alpha_bars,
    cases=_alpha_bar_cases,
    hint="alpha_t = 1 - beta_t and alpha_bar_t is the running product of alpha_1..alpha_t "
    "(jnp.cumprod); the output has the same shape as betas",
    # the library multiplies in float64; a float32 cumprod drifts by ~1e-5 over 1000 steps
    rtol=1e-4,
    atol=1e-6,
)


def _q_sample_cases():
    cases = []
    shapes = [(4, 8, 8, 1), (3, 5), (2, 4, 4, 3)]
    scheds = [schedules.linear(1000), schedules.cosine(1000), schedules.linear(10)]
    for i, (shape, sched) in enumerate(zip(shapes, scheds)):
        k_x, k_e, k_t = jax.random.split(jax.random.key(100 + i), 3)
        x0 = jax.random.uniform(k_x, shape, minval=-1.0, maxval=1.0)
        eps = jax.random.normal(k_e, shape)
        t = jax.random.randint(k_t, (shape[0],), 0, sched.num_timesteps)
        cases.append(((sched, x0, t, eps), {}))
    # the chapter's single pixel: alpha_bar = 0.9, 0.5, 0.001; x0 = 1, eps = -0.4
    pixel = schedules.from_betas([0.1, 1 - 0.5 / 0.9, 1 - 0.001 / 0.5])
    cases.append(((pixel, jnp.ones((3, 1)), jnp.arange(3), jnp.full((3, 1), -0.4)), {}))
    return cases


register(
    "q_sample",
    lesson=LESSON,
    reference=forward.q_sample,
    cases=_q_sample_cases,
    hint="look up ab = schedule.alpha_bars[t] (shape (B,)), reshape it to (B, 1, ..., 1) so it "
    "broadcasts over x0, then return sqrt(ab) * x0 + sqrt(1 - ab) * eps",
)


def _snr_cases():
    return [
        ((schedules.linear(1000),), {}),
        ((schedules.cosine(1000),), {}),
        ((schedules.scaled_linear(100),), {}),
        ((schedules.rescale_zero_terminal_snr(schedules.linear(1000)),), {}),
    ]


register(
    "snr",
    lesson=LESSON,
    reference=lambda schedule: schedule.snr,
    cases=_snr_cases,
    hint="SNR(t) = alpha_bar_t / (1 - alpha_bar_t): signal power over noise power, one value "
    "per timestep, shape (T,)",
)
