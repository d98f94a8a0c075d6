"""Lesson 12 exercises: one DPM-Solver++(2M) update, the target of one progressive-distillation
round, and short interview questions on the fast-sampling frontier.

The function references call the library (``dpm_solver.dpmpp_2m_update``, ``distill.ddim_to``
and ``distill.one_step_x0``); numeric answers are computed with it when checked. The
``iq_`` questions are written for lesson 11's bank as well (same API, ``teaches="12"``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import distill, dpm_solver, sampling
from diffusion_jax.exercises._answers import register_answer
from diffusion_jax.exercises._core import Variant, case, register

LESSON = "12"


def _levels(*alpha_bars):
    """(a, s) pairs for alpha_bar values: a = sqrt(ab), s = sqrt(1 - ab)."""
    return [v for ab in alpha_bars for v in (float(np.sqrt(ab)), float(np.sqrt(1.0 - ab)))]


# ------------------------------------------------------------------ (a) one DPM-Solver++(2M) update


def _lam(a, s):
    return jnp.log(a) - jnp.log(s)


def _dpm_cases():
    out = []
    for i, (label, shape, abs_, h_prev) in enumerate([
        ("a mid step, equal widths", (4, 2), (0.2, 0.5), None),
        ("a step near the data on (2, 8, 8, 1) images", (2, 8, 8, 1), (0.8, 0.97), None),
        ("a wide step after a narrow one", (3, 5), (0.05, 0.6), 0.3),
        ("a narrow step after a wide one", (3, 5), (0.4, 0.5), 2.0),
    ]):
        rng = np.random.default_rng(1200 + i)
        x, m0, m1 = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(3))
        a, s, a_next, s_next = _levels(*abs_)
        h = float(_lam(a_next, s_next) - _lam(a, s))
        out.append(case(label, x, m0, m1, a, s, a_next, s_next, h if h_prev is None else h_prev))
    return out


def _dpm_with(*, ratio="h/h_prev", half=True, second=True):
    def step(x, m0, m1, a, s, a_next, s_next, h_prev):
        h = _lam(a_next, s_next) - _lam(a, s)
        r = h / h_prev if ratio == "h/h_prev" else h_prev / h
        d = m0 + (0.5 if half else 1.0) * r * (m0 - m1) if second else m0
        return (s_next / s) * x - a_next * jnp.expm1(-h) * d
    return step


register(
    "dpmpp_2m_step",
    lesson=LESSON,
    reference=dpm_solver.dpmpp_2m_update,
    cases=_dpm_cases,
    hints=(
        "Work in lambda = log(a / s). Between two levels the linear part of the ODE is solved exactly; "
        "only the x0 estimate is approximated. First-order DPM-Solver++ (= DDIM) holds it constant at m0.",
        "Second order: a straight line through the two estimates. The step's width is h = lambda_next - lambda; "
        "the line, read half a step ahead, gives m0 + (h / h_prev) (m0 - m1) / 2.",
        "h = log(a_next / s_next) - log(a / s); D = m0 + 0.5 * (h / h_prev) * (m0 - m1); "
        "return (s_next / s) * x - a_next * (exp(-h) - 1) * D",
    ),
    variants=(
        Variant("first order", _dpm_with(second=False),
                "the first-order step (DDIM): the previous estimate x0_prev is never used"),
        Variant("ratio upside down", _dpm_with(ratio="h_prev/h"),
                "h_prev / h where the slope needs h / h_prev: the line through the two estimates is "
                "read at the wrong distance"),
        Variant("no one half", _dpm_with(half=False),
                "a full extrapolation step; the midpoint of the step needs half of it"),
    ),
    atol=1e-5,
)


# ------------------------------------------------------------------ (b) the distillation target of one round


def _target_reference(x_t, x0_first, x0_second, a, s, a_mid, s_mid, a_next, s_next):
    x_mid = distill.ddim_to(x0_first, x_t, a, s, a_mid, s_mid)
    x_next = distill.ddim_to(x0_second, x_mid, a_mid, s_mid, a_next, s_next)
    return distill.one_step_x0(x_t, x_next, a, s, a_next, s_next)


def _target_cases():
    out = []
    for i, (label, shape, abs_) in enumerate([
        ("a noisy student step", (4, 2), (0.01, 0.1, 0.3)),
        ("a middle step on (2, 8, 8, 1) images", (2, 8, 8, 1), (0.3, 0.5, 0.7)),
        ("the last step, landing on the data", (3, 5), (0.6, 0.85, 1.0)),
    ]):
        rng = np.random.default_rng(1250 + i)
        x_t, x0a, x0b = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(3))
        out.append(case(label, x_t, x0a, x0b, *_levels(*abs_)))
    return out


def _landing_point(x_t, x0a, x0b, a, s, am, sm, an, sn):
    x_mid = am * x0a + sm * (x_t - a * x0a) / s
    return an * x0b + sn * (x_mid - am * x0b) / sm


def _no_r_a(x_t, x0a, x0b, a, s, am, sm, an, sn):
    return (_landing_point(x_t, x0a, x0b, a, s, am, sm, an, sn) - (sn / s) * x_t) / an


register(
    "distillation_target",
    lesson=LESSON,
    reference=_target_reference,
    cases=_target_cases,
    hints=(
        "First take the teacher's two deterministic DDIM steps, x_t -> x_mid -> x_next, each with its own x0 "
        "estimate. Then ask: which x0 would make ONE DDIM step from x_t land exactly on x_next?",
        "A DDIM step from x_t is x_next = a_next x0 + s_next (x_t - a x0) / s: linear in x0. Solve it for x0.",
        "x_mid = a_mid x0_first + s_mid (x_t - a x0_first) / s; x_next likewise from x_mid with x0_second; "
        "r = s_next / s; return (x_next - r x_t) / (a_next - r a)",
    ),
    variants=(
        Variant("landing point", _landing_point,
                "x_next, where the teacher lands; the student is trained on the x0 that gets it there in one step"),
        Variant("second estimate", lambda x_t, x0a, x0b, *c: x0b,
                "the teacher's second x0 estimate; the target must account for both teacher steps"),
        Variant("mean of estimates", lambda x_t, x0a, x0b, *c: 0.5 * (x0a + x0b),
                "the mean of the two x0 estimates; the right mix depends on the noise levels"),
        Variant("denominator a_next", _no_r_a,
                "dividing by a_next alone: the x0 inside (x_t - a x0) / s also moves, which adds -r a"),
    ),
    atol=1e-5,
)


# ------------------------------------------------------------------ interview questions (for lesson 11's bank)


def _num(name, answer, hints, explanation="", *, exact=False):
    kw = dict(rtol=0.0, atol=0.5) if exact else dict(sig_figs=2)
    register_answer(name, lesson=LESSON, answer=answer, kind="numeric", hints=hints, teaches=LESSON,
                    explanation=explanation, **kw)


def _pick(name, answer, hint, explanation=""):
    register_answer(name, lesson=LESSON, answer=answer, kind="choice", hint=hint, teaches=LESSON,
                    explanation=explanation)


_num("iq_distill_rounds", lambda: float(np.log2(64 / 4)),
     ("Each round halves the number of sampling steps.", "rounds = log2(64 / 4)"),
     "64 -> 32 -> 16 -> 8 -> 4: four rounds, each a full training run", exact=True)
_num("iq_guided_student_saving",
     lambda: float(sampling.denoiser_evaluations("ddim", 50, predictions_per_step=2)
                   / sampling.denoiser_evaluations("ddim", 4, predictions_per_step=1)),
     ("Count predictions: steps times predictions per step, for each route.",
      "(50 steps x 2 predictions) / (4 steps x 1 prediction)"),
     "100 / 4 = 25: guidance distillation halves the cost, progressive distillation does the rest", exact=True)
_num("iq_dpm_2m_evals", lambda: float(sampling.denoiser_evaluations("dpmpp_2m", 10)),
     ("How many times per step does a multistep solver call the network?",
      "one evaluation per step; the second-order information comes from the previous step's estimate"),
     "10: multistep methods reuse earlier estimates instead of evaluating twice per step (Heun would need 19)",
     exact=True)
_pick("iq_v_mse_weighting", "b",
      "convert a v error into an x0 error with x0 = a x_t - s v, and remember 1 / s^2 = 1 + SNR",
      "||v_hat - v||^2 = (1 + SNR) ||x0_hat - x0||^2: Salimans & Ho's 'SNR + 1' weighting, finite at SNR = 0")
_pick("iq_eps_student", "a",
      "what does the first step of a 2-step sampler ask the network at almost pure noise, and how is x0 formed?",
      "x0 = (x_t - s eps) / a with a near 0: any eps error is multiplied by 1 / a. v or x0 students avoid it")
