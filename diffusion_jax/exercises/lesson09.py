"""Lesson 09 exercises: the rectified-flow pair, one Euler step, the SD3 shift, the logit-normal density.

The references call the library; the learner re-derives the same numbers by hand.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax import flow, timesteps
from diffusion_jax.exercises._core import register

LESSON = "09"


def _rng(i):
    return np.random.default_rng(900 + i)  # numpy: fixed inputs without compiling anything


def _pair_reference(x0, eps, t):
    return flow.interpolate(x0, eps, t), flow.velocity_target(x0, eps)


def _pair_cases():
    cases = []
    for i, shape in enumerate([(4, 2), (3, 8, 8, 1), (2, 5, 3)]):
        r = _rng(i)
        x0 = jnp.asarray(r.uniform(-1, 1, shape), jnp.float32)
        eps = jnp.asarray(r.standard_normal(shape), jnp.float32)
        t = jnp.asarray(np.concatenate([[0.0, 1.0], r.uniform(0, 1, shape[0] - 2)]), jnp.float32)
        cases.append(((x0, eps, t), {}))
    return cases


register(
    "rf_interpolate_and_target",
    lesson=LESSON,
    reference=_pair_reference,
    cases=_pair_cases,
    hint="t = t.reshape((-1,) + (1,) * (x0.ndim - 1)); return ((1 - t) * x0 + t * eps, eps - x0)",
)


def _const_velocity(v, x_t, t, cond):
    return v


def _euler_reference(x, v, t, t_next):
    # one step of the library's Euler sampler on the grid [t, t_next] with the velocity fixed at v
    times = jnp.array([t, t_next], jnp.float32)
    return flow.euler_sample(jax.random.key(0), jax.tree_util.Partial(_const_velocity, v), x.shape,
                             x_T=x, times=times)


def _euler_cases():
    cases = []
    for i, (shape, t, t_next) in enumerate([((4, 2), 1.0, 0.75), ((2, 6, 6, 1), 0.5, 0.0),
                                            ((3, 4), 0.9, 0.1), ((5, 2), 0.3, 0.25)]):
        r = _rng(10 + i)
        x = jnp.asarray(r.standard_normal(shape), jnp.float32)
        v = jnp.asarray(r.standard_normal(shape), jnp.float32)
        cases.append(((x, v, t, t_next), {}))
    return cases


register(
    "euler_flow_step",
    lesson=LESSON,
    reference=_euler_reference,
    cases=_euler_cases,
    hint="return x + (t_next - t) * v (a negative step when t_next < t)",
)


def _shift_cases():
    t = jnp.linspace(0.0, 1.0, 11)
    return [((t, 1.0), {}), ((t, 3.0), {}), ((t, 0.5), {}),
            ((jnp.asarray(_rng(20).uniform(0, 1, (4, 5)), jnp.float32), 6.0), {})]


register(
    "shift_time",
    lesson=LESSON,
    reference=timesteps.shift_times,
    cases=_shift_cases,
    hint="shift * t / (1 + (shift - 1) * t)",
)


def _density_cases():
    t = jnp.linspace(0.01, 0.99, 25)
    return [((t, 0.0, 1.0), {}), ((t, 0.5, 0.8), {}), ((t, -1.0, 2.0), {}),
            ((jnp.array([0.5]), 0.0, 1.0), {})]


register(
    "logit_normal_density",
    lesson=LESSON,
    reference=timesteps.logit_normal_pdf,
    cases=_density_cases,
    hint="u = log(t / (1 - t)); return exp(-((u - mean) / std)**2 / 2) / (std * sqrt(2 pi)) / (t * (1 - t))",
    rtol=1e-4,
)
