"""Lesson 01 exercises: the forward process, schedules and SNR.

Each registration holds the reference (a library call), named cases, hint tiers and
known wrong variants. Inputs come from NumPy's seeded generator: eager ``jax.random``
calls compile once per new shape, which made building cases slow.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import forward, schedules
from diffusion_jax.exercises._core import Variant, case, register

LESSON = "01"


def _rows(a, ndim):
    return a.reshape((-1,) + (1,) * (ndim - 1))  # (B,) -> (B, 1, ..., 1)


# ------------------------------------------------------------------ alpha_bar_from_betas


def _alpha_bar_cases():
    return [
        case("linear schedule, T = 1000", schedules.linear(1000).betas),
        case("cosine schedule, T = 1000", schedules.cosine(1000).betas),
        case("scaled_linear schedule, T = 50", schedules.scaled_linear(50).betas),
        case("three hand-picked betas 0.1, 0.2, 0.5", jnp.array([0.1, 0.2, 0.5], jnp.float32)),
    ]


register(
    "alpha_bar_from_betas",
    lesson=LESSON,
    reference=lambda betas: schedules.from_betas(betas).alpha_bars,
    cases=_alpha_bar_cases,
    hints=(
        "alpha_t = 1 - beta_t is the share of signal power that survives step t; alpha_bar_t is the "
        "share left after steps 0..t, one after another.",
        "Surviving several steps multiplies the shares. JAX has a single call for a running product "
        "along an axis; entry t must include step t itself.",
        "alpha_bar = jnp.cumprod(1 - betas)",
    ),
    variants=(
        Variant("1 - running sum", lambda b: 1.0 - jnp.cumsum(b),
                "subtracting the betas from 1 one after another; the surviving shares multiply, and "
                "1 - sum(beta) is only their first-order approximation (it even goes negative)"),
        Variant("product of betas", lambda b: jnp.cumprod(b),
                "the running product of the betas, the noise added per step; what survives a step is "
                "1 - beta_t"),
        Variant("shifted by one", lambda b: jnp.concatenate([jnp.ones(1), jnp.cumprod(1.0 - b)[:-1]]),
                "a product that stops one step early (entry 0 is 1): alpha_bar_t includes step t itself"),
        Variant("no running product", lambda b: 1.0 - b,
                "alpha_t, the share kept by one step, instead of the share kept after all steps up to t"),
    ),
    # the library multiplies in float64; a float32 cumprod drifts by ~1e-5 over 1000 steps
    rtol=1e-4,
    atol=1e-6,
)


# ------------------------------------------------------------------ q_sample


def _q_sample_cases():
    cases = []
    setups = [("(4, 8, 8, 1) images, linear schedule", (4, 8, 8, 1), schedules.linear(1000)),
              ("(3, 5) vectors, cosine schedule", (3, 5), schedules.cosine(1000)),
              ("(2, 4, 4, 3) colour images, 10-step linear schedule", (2, 4, 4, 3), schedules.linear(10))]
    for i, (label, shape, sched) in enumerate(setups):
        rng = np.random.default_rng(100 + i)
        x0 = jnp.asarray(rng.uniform(-1.0, 1.0, shape), jnp.float32)
        eps = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        t = rng.integers(0, sched.num_timesteps, shape[0])
        t[0] = 0  # the first step of the chain
        t = jnp.asarray(t, jnp.int32)
        cases.append(case(label, sched, x0, t, eps, rows=[f"t = {v}" for v in np.asarray(t)]))
    # the chapter's single pixel: alpha_bar = 0.9, 0.5, 0.001; x0 = 1, eps = -0.4
    pixel = schedules.from_betas([0.1, 1 - 0.5 / 0.9, 1 - 0.001 / 0.5])
    cases.append(case("the chapter's pixel at alpha_bar = 0.9, 0.5, 0.001", pixel, jnp.ones((3, 1)),
                      jnp.arange(3), jnp.full((3, 1), -0.4),
                      rows=["alpha_bar = 0.9", "alpha_bar = 0.5", "alpha_bar = 0.001"]))
    return cases


def _q_no_sqrt(schedule, x0, t, eps):
    ab = _rows(schedule.alpha_bars[t], x0.ndim)
    return ab * x0 + (1.0 - ab) * eps


def _q_swapped(schedule, x0, t, eps):
    ab = _rows(schedule.alpha_bars[t], x0.ndim)
    return jnp.sqrt(1.0 - ab) * x0 + jnp.sqrt(ab) * eps


def _q_one_step(schedule, x0, t, eps):
    a = _rows(schedule.alphas[t], x0.ndim)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * eps


def _q_prev(schedule, x0, t, eps):
    ab = _rows(schedule.alpha_bars[t - 1], x0.ndim)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps


register(
    "q_sample",
    lesson=LESSON,
    reference=forward.q_sample,
    cases=_q_sample_cases,
    hints=(
        "Each row of the batch has its own timestep, so look up one alpha_bar per row: "
        "schedule.alpha_bars[t] has shape (B,).",
        "A (B,) vector cannot multiply a (B, H, W, C) batch row by row until it has shape "
        "(B, 1, ..., 1), as many axes as x0. The two coefficients are square roots of powers that add up to one.",
        "ab = schedule.alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1)); "
        "x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps",
    ),
    variants=(
        Variant("no square roots", _q_no_sqrt,
                "alpha_bar and 1 - alpha_bar used as coefficients; they are the signal and noise "
                "*powers* (variances), and a coefficient is the square root of a power"),
        Variant("coefficients swapped", _q_swapped,
                "the signal and noise coefficients swapped: at t = 0 almost all of x_t must be x0"),
        Variant("one-step alpha", _q_one_step,
                "alpha_t of a single step instead of alpha_bar_t: x_t must carry the noise of all "
                "steps 0..t at once"),
        Variant("alpha_bars[t - 1]", _q_prev,
                "alpha_bars[t - 1]: the library counts timesteps from 0, so step t's value is "
                "alpha_bars[t] (and t - 1 wraps around to the last entry at t = 0)"),
    ),
)


# ------------------------------------------------------------------ snr


def _snr_cases():
    return [
        case("linear schedule", schedules.linear(1000)),
        case("cosine schedule", schedules.cosine(1000)),
        case("scaled_linear schedule, T = 100", schedules.scaled_linear(100)),
        case("zero terminal SNR (last alpha_bar = 0)", schedules.rescale_zero_terminal_snr(schedules.linear(1000))),
    ]


register(
    "snr",
    lesson=LESSON,
    reference=lambda schedule: schedule.snr,
    cases=_snr_cases,
    hints=(
        "SNR compares powers (variances), not coefficients: the power of the signal part of x_t "
        "against the power of the noise part.",
        "A coefficient c in front of unit-variance data contributes power c**2. Square both "
        "coefficients of q(x_t | x0) and take their ratio, signal on top.",
        "snr = schedule.alpha_bars / (1 - schedule.alpha_bars)",
    ),
    variants=(
        Variant("ratio of coefficients", lambda s: jnp.sqrt(s.alpha_bars / (1.0 - s.alpha_bars)),
                "the ratio of the coefficients sqrt(alpha_bar) / sqrt(1 - alpha_bar); SNR is a ratio of "
                "powers, the squares of those coefficients"),
        Variant("noise over signal", lambda s: (1.0 - s.alpha_bars) / s.alpha_bars,
                "noise power over signal power, upside down: SNR is large at t = 0 and falls with t"),
        Variant("log-SNR", lambda s: jnp.log(s.alpha_bars / (1.0 - s.alpha_bars)),
                "the logarithm of the SNR; return the ratio itself"),
    ),
)


# ------------------------------------------------------------------ q_sample_from (a derivation)


def _from_reference(schedule, x_s, s, t, eps):
    # steps s+1..t keep the product of their alphas: alpha_bar_t / alpha_bar_s
    ratio = _rows(schedule.alpha_bars[t] / schedule.alpha_bars[s], x_s.ndim)
    return jnp.sqrt(ratio) * x_s + jnp.sqrt(1.0 - ratio) * eps


def _from_cases():
    cases = []
    for i, (label, shape, sched, pairs) in enumerate([
        ("(6, 4) vectors, linear schedule", (6, 4), schedules.linear(1000),
         [(0, 999), (10, 11), (500, 500), (100, 700), (998, 999), (3, 250)]),
        ("(4, 6, 6, 1) images, cosine schedule", (4, 6, 6, 1), schedules.cosine(1000),
         [(0, 1), (200, 800), (999, 999), (50, 400)]),
        ("(3, 2) vectors, the chapter's three-step chain", (3, 2), schedules.from_betas([0.02, 0.03, 0.04]),
         [(0, 2), (1, 2), (0, 1)]),
    ]):
        rng = np.random.default_rng(120 + i)
        s, t = (jnp.asarray([p[k] for p in pairs], jnp.int32) for k in (0, 1))
        x_s = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        eps = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        rows = [f"s = {a}, t = {b}" + (" (s = t)" if a == b else " (one step)" if b == a + 1 else "")
                for a, b in pairs]
        cases.append(case(label, sched, x_s, s, t, eps, rows=rows))
    return cases


def _from_ignores_s(schedule, x_s, s, t, eps):
    return forward.q_sample(schedule, x_s, t, eps)


def _from_variance_difference(schedule, x_s, s, t, eps):
    ab_s, ab_t = _rows(schedule.alpha_bars[s], x_s.ndim), _rows(schedule.alpha_bars[t], x_s.ndim)
    return jnp.sqrt(ab_t / ab_s) * x_s + jnp.sqrt(ab_s - ab_t) * eps


def _from_includes_step_s(schedule, x_s, s, t, eps):
    ratio = _rows(schedule.alpha_bars[t] / schedule.alpha_bars_prev[s], x_s.ndim)
    return jnp.sqrt(ratio) * x_s + jnp.sqrt(1.0 - ratio) * eps


register(
    "q_sample_from",
    lesson=LESSON,
    reference=_from_reference,
    cases=_from_cases,
    hints=(
        "Write one forward step from x_s to x_{s+1}, then the next one, and look at what happens to "
        "the coefficient in front of x_s: each step multiplies it by sqrt(alpha) of that step.",
        "Over steps s+1..t the alphas multiply to a ratio of two alpha_bars. The noise term is one "
        "Gaussian whose variance keeps a unit-variance x_s at unit variance; at s = t nothing changes.",
        "r = alpha_bars[t] / alpha_bars[s] (reshaped to (B, 1, ..., 1)); "
        "x_t = sqrt(r) * x_s + sqrt(1 - r) * eps",
    ),
    variants=(
        Variant("treats x_s as clean", _from_ignores_s,
                "noising x_s as if it were the clean x0 (ignoring s): x_s is already noised to level s, "
                "so only steps s+1..t remain"),
        Variant("variance difference", _from_variance_difference,
                "added noise variance (1 - ab_t) - (1 - ab_s): that forgets that the noise already in x_s "
                "is shrunk by the same factor as the signal, so the variances do not simply subtract"),
        Variant("counts step s twice", _from_includes_step_s,
                "a product that also includes step s: x_s has already been through step s, so the "
                "remaining steps are s+1..t"),
    ),
    rtol=1e-4,
    atol=1e-5,
)
