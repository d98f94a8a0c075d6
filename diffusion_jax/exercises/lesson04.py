"""Lesson 04 exercises: prediction targets (eps, x0, v) and min-SNR loss weights.

The references call the library; the learner re-derives the same numbers by hand.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import losses, parameterization, schedules
from diffusion_jax.exercises._core import register

LESSON = "04"


def _conversion_cases():
    """(a, b, alpha_bar) triples: batched images with per-row alpha_bar, 2-D points, scalars."""
    sched = schedules.linear(1000)
    cases = []
    shapes = [(4, 8, 8, 1), (6, 2), (3, 4, 4, 3)]
    for i, shape in enumerate(shapes):
        rng = np.random.default_rng(400 + i)  # numpy: no per-shape compilation, still fixed
        a = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        b = jnp.asarray(rng.uniform(-1.0, 1.0, shape), jnp.float32)
        t = jnp.asarray(rng.integers(0, 1000, shape[0]))
        cases.append(((a, b, sched.alpha_bars[t]), {}))
    # one alpha_bar shared by the whole batch (a Python float)
    cases.append(((jnp.full((2, 3), 0.3), jnp.full((2, 3), -0.5), 0.5), {}))
    return cases


def _eps_x_t_alpha_bar_cases():
    # eps_to_x0(eps, x_t, alpha_bar): keep alpha_bar away from 0 so x0 stays finite
    out = []
    for (eps, x_t, ab), kw in _conversion_cases():
        out.append(((eps, x_t, jnp.maximum(jnp.asarray(ab), 1e-3)), kw))
    return out


register(
    "eps_to_x0",
    lesson=LESSON,
    reference=lambda eps, x_t, alpha_bar: parameterization.to_x0(eps, x_t, alpha_bar, "eps"),
    cases=_eps_x_t_alpha_bar_cases,
    hint="x0 = (x_t - sqrt(1 - ab) * eps) / sqrt(ab); when alpha_bar has shape (B,), reshape it "
    "to (B, 1, ..., 1) so it broadcasts over each row: ab = jnp.asarray(alpha_bar); "
    "ab = ab.reshape(ab.shape + (1,) * (x_t.ndim - ab.ndim))",
    rtol=1e-4,
    atol=1e-5,
)


def _x0_eps_cases():
    # x0_to_v(x0, eps, alpha_bar): the pairs are read as (eps-like, x0-like); swap them
    return [((b, a, ab), kw) for (a, b, ab), kw in _conversion_cases()]


register(
    "x0_eps_to_v",
    lesson=LESSON,
    reference=parameterization.velocity,
    cases=_x0_eps_cases,
    hint="v = sqrt(ab) * eps - sqrt(1 - ab) * x0 (note the minus sign on x0); broadcast a "
    "(B,) alpha_bar over the trailing axes: ab = jnp.asarray(alpha_bar); "
    "ab = ab.reshape(ab.shape + (1,) * (x0.ndim - ab.ndim))",
)


def _min_snr_cases():
    sched = schedules.linear(1000)
    zero = schedules.rescale_zero_terminal_snr(sched)
    cases = []
    for prediction in ("eps", "x0", "v"):
        cases.append(((sched.snr, prediction, 5.0), {}))
        cases.append(((jnp.array([100.0, 5.0, 1.0, 0.01]), prediction, 1.0), {}))
    # zero-terminal SNR: the last timestep has SNR exactly 0
    cases.append(((zero.snr, "eps", 5.0), {}))
    cases.append(((zero.snr, "v", 5.0), {}))
    return cases


register(
    "min_snr_weight",
    lesson=LESSON,
    reference=lambda snr, prediction, gamma: losses.snr_weight(snr, prediction, "min_snr", gamma),
    cases=_min_snr_cases,
    hint="the weight must make every target's loss equal min(SNR, gamma) times the x0-MSE: "
    "x0 -> min(SNR, gamma); eps -> min(SNR, gamma) / SNR, written as minimum(1, gamma / SNR) "
    "so SNR = 0 gives 1 instead of NaN; v -> min(SNR, gamma) / (SNR + 1)",
)
