"""Lesson 02 exercises: the denoising training objective.

The references call the library; the learner writes the loss and the training pair by
hand. Every input is explicit (timesteps and noise are given), so nothing depends on how
a key is split. Inputs come from NumPy's seeded generator: eager ``jax.random`` calls
compile once per new shape, which made building the cases take seconds.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import forward, losses, schedules
from diffusion_jax.exercises._core import register

LESSON = "02"


def _normal(rng, shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


def _uniform(rng, shape):
    return jnp.asarray(rng.uniform(-1.0, 1.0, shape), jnp.float32)


def _simple_loss_cases():
    cases = []
    shapes = [(4, 3), (2, 28, 28, 1), (3, 8, 8, 3), (1, 5)]
    for i, shape in enumerate(shapes):
        rng = np.random.default_rng(200 + i)
        true_eps = _normal(rng, shape)
        pred_eps = true_eps + 0.3 * _normal(rng, shape)
        cases.append(((pred_eps, true_eps), {}))
    # the chapter's two rows: losses 0.0006 (t = 100) and 0.025 (t = 700) after rounding
    pred = jnp.array([[0.18, -0.08, 0.02], [0.72, -0.35, 0.10]])
    true = jnp.array([[0.20, -0.10, 0.05], [0.90, -0.40, 0.30]])
    cases.append(((pred, true), {}))
    return cases


register(
    "simple_loss",
    lesson=LESSON,
    reference=losses.per_example_mse,
    cases=_simple_loss_cases,
    hint="square the difference pred_eps - true_eps and average over every axis except the "
    "batch axis 0 (axis=tuple(range(1, ndim))), so the result has shape (B,)",
)


def _pair_cases():
    cases = []
    setups = [
        ((4, 8, 8, 1), schedules.linear(1000), "eps"),
        ((4, 8, 8, 1), schedules.linear(1000), "x0"),
        ((4, 8, 8, 1), schedules.linear(1000), "v"),
        ((3, 5), schedules.cosine(1000), "v"),
        ((2, 4, 4, 3), schedules.linear(10), "eps"),
    ]
    for i, (shape, sched, prediction) in enumerate(setups):
        rng = np.random.default_rng(300 + i)
        x0 = _uniform(rng, shape)
        eps = _normal(rng, shape)
        t = rng.integers(0, sched.num_timesteps, shape[0])
        t[0], t[-1] = 0, sched.num_timesteps - 1  # both ends of the chain
        t = jnp.asarray(t, jnp.int32)
        cases.append(((sched, x0, t, eps, prediction), {}))
    return cases


def _pair_reference(schedule, x0, t, eps, prediction):
    x_t = forward.q_sample(schedule, x0, t, eps)
    target = losses.prediction_target(prediction, x0, eps, schedule.alpha_bars[t])
    return x_t, target


register(
    "noisy_input_and_target",
    lesson=LESSON,
    reference=_pair_reference,
    cases=_pair_cases,
    hint="with ab = schedule.alpha_bars[t] reshaped to (B, 1, ..., 1): x_t = sqrt(ab) x0 + "
    "sqrt(1 - ab) eps; the target is eps for 'eps', x0 for 'x0', and "
    "sqrt(ab) eps - sqrt(1 - ab) x0 for 'v'; return the tuple (x_t, target)",
)
