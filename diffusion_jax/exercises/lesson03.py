"""Lesson 03 exercises: the reverse posterior, one ancestral DDPM step, the whole sampler loop.

The references call the library (``forward.q_posterior``, ``parameterization.to_x0``).
Noise is an explicit input, so every step is deterministic. Inputs come from NumPy's
seeded generator (eager ``jax.random`` compiles once per new shape, which is slow).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import forward, parameterization, schedules
from diffusion_jax.exercises._core import Variant, case, register

LESSON = "03"


def _normal(rng, shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


def _rows(a, ndim):
    return a.reshape((-1,) + (1,) * (ndim - 1))  # (B,) -> (B, 1, ..., 1)


def _setups():
    # (label, shape, schedule, fixed timesteps of the batch)
    return [
        ("(6, 8, 8, 1) images, linear schedule, both ends", (6, 8, 8, 1), schedules.linear(1000),
         (0, 1, 5, 500, 998, 999)),
        ("(4, 2) points, cosine schedule", (4, 2), schedules.cosine(1000), (0, 1, 250, 999)),
        ("(3, 4, 4, 3) colour images, middle timesteps", (3, 4, 4, 3), schedules.linear(1000), (2, 100, 700)),
        ("the chapter's three-step chain", (3, 1), schedules.from_betas([0.02, 0.03, 0.04]), (0, 1, 2)),
    ]


def _coefs(schedule, t, ndim, prev=None):
    ab = _rows(schedule.alpha_bars[t], ndim)
    ab_prev = _rows(schedule.alpha_bars_prev[t] if prev is None else prev, ndim)
    beta = _rows(schedule.betas[t], ndim)
    return ab, ab_prev, beta


# ------------------------------------------------------------------ posterior_mean


def _posterior_mean_cases():
    cases = []
    for i, (label, shape, sched, ts) in enumerate(_setups()):
        rng = np.random.default_rng(400 + i)
        x0 = jnp.asarray(rng.uniform(-1.0, 1.0, shape), jnp.float32)
        t = jnp.asarray(ts, jnp.int32)
        x_t = forward.q_sample(sched, x0, t, _normal(rng, shape))
        cases.append(case(label, sched, x0, x_t, t, rows=[f"t = {v}" for v in ts]))
    return cases


def _mean_with(weights):
    def mean(schedule, x0, x_t, t):
        a, b = weights(schedule, t, x_t.ndim)
        return a * x0 + b * x_t
    return mean


def _w_right(ab, ab_prev, beta):
    return jnp.sqrt(ab_prev) * beta / (1 - ab), jnp.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)


register(
    "posterior_mean",
    lesson=LESSON,
    reference=lambda schedule, x0, x_t, t: forward.q_posterior(schedule, x0, x_t, t)[0],
    cases=_posterior_mean_cases,
    hints=(
        "Everything you need is in the schedule, looked up at each row's t: alpha_bar_t, alpha_bar_{t-1} "
        "and beta_t. Before the first step the data is clean, so alpha_bar_{t-1} at t = 0 is 1 "
        "(schedule.alpha_bars_prev has that built in).",
        "The mean is a weighted sum a * x0 + b * x_t with per-row weights of shape (B, 1, ..., 1). Both "
        "weights share the denominator 1 - alpha_bar_t; check yourself that at t = 0 the result is exactly x0.",
        "ab, ab_prev, beta = alpha_bars[t], alpha_bars_prev[t], betas[t] (each reshaped to (B, 1, ..., 1)); "
        "mean = sqrt(ab_prev) * beta / (1 - ab) * x0 + sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * x_t",
    ),
    variants=(
        Variant("alpha_bars[t - 1] wraps at t = 0",
                _mean_with(lambda s, t, n: _w_right(*_coefs(s, t, n, prev=s.alpha_bars[t - 1]))),
                "alpha_bars[t - 1] without the t = 0 case: at t = 0 the index wraps around to the last "
                "entry, but before the first step nothing is noised yet, so alpha_bar_{-1} = 1 "
                "(schedule.alpha_bars_prev)"),
        Variant("weights swapped", _mean_with(lambda s, t, n: _w_right(*_coefs(s, t, n))[::-1]),
                "the two weights swapped: near t = 0 the mean must lean on x0, near T - 1 on x_t"),
        Variant("alpha_bar_t in the x0 weight",
                _mean_with(lambda s, t, n: (lambda ab, abp, b: (jnp.sqrt(ab) * b / (1 - ab), _w_right(ab, abp, b)[1]))(
                    *_coefs(s, t, n))),
                "sqrt(alpha_bar_t) in the weight of x0 where sqrt(alpha_bar_{t-1}) belongs: the mean lives "
                "at level t - 1, one step less noisy"),
        Variant("no square root on alpha_t",
                _mean_with(lambda s, t, n: (lambda ab, abp, b: (_w_right(ab, abp, b)[0], (1 - b) * (1 - abp) / (1 - ab)))(
                    *_coefs(s, t, n))),
                "alpha_t where its square root belongs in the weight of x_t: one forward step scales "
                "x_{t-1} by sqrt(alpha_t)"),
    ),
    rtol=1e-4,
    atol=1e-5,
)


# ------------------------------------------------------------------ ddpm_step


def _ddpm_step_cases():
    cases = []
    for i, (label, shape, sched, ts) in enumerate(_setups()):
        rng = np.random.default_rng(500 + i)
        t = jnp.asarray(ts, jnp.int32)
        cases.append(case(label, sched, _normal(rng, shape), t, _normal(rng, shape), _normal(rng, shape),
                          rows=[f"t = {v}" for v in ts]))
    return cases


def _ddpm_step_reference(schedule, x_t, t, eps_pred, noise):
    x0_hat = parameterization.to_x0(eps_pred, x_t, schedule.alpha_bars[t], "eps")
    mean, variance, _ = forward.q_posterior(schedule, x0_hat, x_t, t)
    return mean + jnp.sqrt(variance) * noise


def _step_with(std_of):
    def step(schedule, x_t, t, eps_pred, noise):
        ab, ab_prev, beta = _coefs(schedule, t, x_t.ndim)
        mean = (x_t - beta / jnp.sqrt(1 - ab) * eps_pred) / jnp.sqrt(1 - beta)
        return mean + std_of(schedule, t, x_t.ndim, ab, ab_prev, beta) * noise
    return step


def _tilde(ab, ab_prev, beta):
    return (1 - ab_prev) / (1 - ab) * beta


register(
    "ddpm_step",
    lesson=LESSON,
    reference=_ddpm_step_reference,
    cases=_ddpm_step_cases,
    hints=(
        "Two parts: the mean of q(x_{t-1} | x_t, x0) evaluated at the clean estimate that eps_pred implies, "
        "plus a random part: the standard deviation of that posterior times `noise`.",
        "Either convert eps_pred to x0_hat (invert lesson 01's forward formula) and reuse your posterior "
        "mean, or use the chapter's direct update from section 2. The posterior variance beta_tilde_t is "
        "slightly below beta_t and exactly 0 at t = 0; the noise is scaled by its square root.",
        "mean = (x_t - beta / sqrt(1 - ab) * eps_pred) / sqrt(1 - beta); "
        "x_prev = mean + sqrt((1 - ab_prev) / (1 - ab) * beta) * noise (all per-row, (B, 1, ..., 1))",
    ),
    variants=(
        Variant("beta_t as the variance", _step_with(lambda s, t, n, ab, abp, b: jnp.sqrt(b)),
                "using beta_t as the variance; the reverse step uses the posterior variance beta_tilde_t "
                "(section 1), which is smaller than beta_t and exactly 0 at t = 0"),
        Variant("variance used as the std", _step_with(lambda s, t, n, ab, abp, b: _tilde(ab, abp, b)),
                "the variance beta_tilde_t multiplying the noise; a standard-normal draw is scaled by the "
                "standard deviation, the square root of the variance"),
        Variant("no noise", _step_with(lambda s, t, n, ab, abp, b: 0.0),
                "the mean alone: ancestral sampling also adds the posterior's random part (zero only at t = 0)"),
        Variant("alpha_bars[t - 1] wraps at t = 0",
                _step_with(lambda s, t, n, ab, abp, b: jnp.sqrt(_tilde(ab, _rows(s.alpha_bars[t - 1], n), b))),
                "alpha_bars[t - 1] in beta_tilde without the t = 0 case: the index wraps around to the last "
                "entry, while alpha_bar_{-1} = 1 makes the last step noise-free"),
    ),
    # Algorithm 2's direct formula and the x0-then-posterior route differ by ~5e-4 in
    # float32 at t = 999, where x0_hat divides by sqrt(ab) = 0.006; a wrong std or a
    # missing noise term is off by 1e-2 or more.
    rtol=1e-3,
    atol=2e-3,
)


# ------------------------------------------------------------------ ddpm_sample_loop: the whole sampler


def _toy_eps_model(x, t):
    # a made-up noise predictor that depends on both inputs, so a wrong t shows
    return 0.45 * x + 0.02 * t.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)


def _loop_cases():
    cases = []
    for i, (label, sched, shape) in enumerate([
        ("10-step linear schedule, (4, 2) points", schedules.linear(10, 1e-3, 0.2), (4, 2)),
        ("20-step cosine schedule, (3, 5) vectors", schedules.cosine(20), (3, 5)),
        ("the chapter's three-step chain, one scalar", schedules.from_betas([0.02, 0.03, 0.04]), (1, 1)),
    ]):
        rng = np.random.default_rng(450 + i)
        noises = _normal(rng, (sched.num_timesteps,) + shape)  # (T, B, ...)
        cases.append(case(label, sched, _toy_eps_model, _normal(rng, shape), noises))
    return cases


def _loop(order, *, t_offset=0, restart=False, noise_index=lambda t, k: t):
    def sample(schedule, eps_model, x_T, noises):
        x = x_T
        T = schedule.num_timesteps
        for k, t in enumerate(order(T)):
            tt = jnp.full((x_T.shape[0],), t, jnp.int32)
            x_in = x_T if restart else x
            x = _ddpm_step_reference(schedule, x_in, tt, eps_model(x_in, tt + t_offset), noises[noise_index(t, k)])
        return x
    return sample


register(
    "ddpm_sample_loop",
    lesson=LESSON,
    reference=_loop(lambda T: range(T - 1, -1, -1)),
    cases=_loop_cases,
    hints=(
        "Start from x_T and apply one reverse step per timestep. Which timestep comes first, which comes last, "
        "and what does each step take as its input?",
        "Loop t = T - 1, T - 2, ..., 0. At each t, ask the model for eps with a (B,) array of that t, take one "
        "ancestral step (your ddpm_step, or the library's pieces) with noises[t], and continue from its output.",
        "x = x_T; for t in reversed(range(T)): tt = jnp.full((B,), t); x = ddpm_step(schedule, x, tt, "
        "eps_model(x, tt), noises[t]); return x",
    ),
    variants=(
        Variant("steps in the wrong order", _loop(lambda T: range(T)),
                "the steps run from t = 0 upwards; sampling starts at the noisiest step T - 1 and ends at t = 0"),
        Variant("model sees t + 1", _loop(lambda T: range(T - 1, -1, -1), t_offset=1),
                "the model called with t + 1 (the equations' 1-based numbering); the library and the model "
                "count timesteps from 0"),
        Variant("every step restarts from x_T", _loop(lambda T: range(T - 1, -1, -1), restart=True),
                "every step starts again from x_T; each step must continue from the previous step's output"),
        Variant("noise of another step", _loop(lambda T: range(T - 1, -1, -1), noise_index=lambda t, k: k),
                "each step used noises[k] with k counting loop iterations; the noise for the step that "
                "leaves timestep t is noises[t]"),
    ),
    rtol=1e-3,
    atol=2e-3,
)
