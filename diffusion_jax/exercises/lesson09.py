"""Lesson 09 exercises: the rectified-flow pair, one Euler step, the SD3 shift, the
logit-normal density, and the whole Euler sampler.

The references call the library (``flow``, ``timesteps``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax import flow, timesteps
from diffusion_jax.exercises._core import Variant, case, register

LESSON = "09"


def _rng(i):
    return np.random.default_rng(900 + i)  # numpy: fixed inputs without compiling anything


def _col(t, x):
    return jnp.asarray(t).reshape((-1,) + (1,) * (x.ndim - 1))  # (B,) -> (B, 1, ..., 1)


# ------------------------------------------------------------------ rf_interpolate_and_target


def _pair_reference(x0, eps, t):
    return flow.interpolate(x0, eps, t), flow.velocity_target(x0, eps)


def _pair_cases():
    cases = []
    for i, (label, shape) in enumerate([("(4, 2) points", (4, 2)), ("(3, 8, 8, 1) images", (3, 8, 8, 1)),
                                        ("(2, 5, 3) sequences", (2, 5, 3))]):
        r = _rng(i)
        x0 = jnp.asarray(r.uniform(-1, 1, shape), jnp.float32)
        eps = jnp.asarray(r.standard_normal(shape), jnp.float32)
        t = np.concatenate([[0.0, 1.0], r.uniform(0, 1, shape[0] - 2)])
        cases.append(case(label + ", with t = 0 and t = 1 rows", x0, eps, jnp.asarray(t, jnp.float32),
                          rows=[f"t = {v:.2f}" for v in t]))
    return cases


register(
    "rf_interpolate_and_target",
    lesson=LESSON,
    reference=_pair_reference,
    cases=_pair_cases,
    outputs=("x_t", "v"),
    hints=(
        "The path is a straight line between the data and the noise. In this course t = 0 is the data and "
        "t = 1 is the noise; the target is the velocity, the derivative of x_t with respect to t.",
        "x_t is a weighted average of x0 and eps whose weights move linearly with t; t has shape (B,) and "
        "must become (B, 1, ..., 1). A straight line has the same velocity everywhere.",
        "t = t.reshape((-1,) + (1,) * (x0.ndim - 1)); return (1 - t) * x0 + t * eps, eps - x0",
    ),
    variants=(
        Variant("flipped flow time", lambda x0, e, t: ((1 - _col(t, x0)) * e + _col(t, x0) * x0, x0 - e),
                "the opposite time convention (t = 0 noise, t = 1 data); in this course t = 0 is the data and "
                "t = 1 the noise"),
        Variant("velocity sign flipped", lambda x0, e, t: ((1 - _col(t, x0)) * x0 + _col(t, x0) * e, x0 - e),
                "the velocity with its sign flipped: as t grows the path moves from the data towards the "
                "noise, so dx_t/dt points from x0 to eps"),
        Variant("noise as the target", lambda x0, e, t: ((1 - _col(t, x0)) * x0 + _col(t, x0) * e, e),
                "the noise itself as the target; a flow model regresses the velocity, the derivative of x_t"),
    ),
)


# ------------------------------------------------------------------ euler_flow_step


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
        cases.append(case(f"{shape}, t = {t:g} -> {t_next:g}", x, v, t, t_next))
    return cases


register(
    "euler_flow_step",
    lesson=LESSON,
    reference=_euler_reference,
    cases=_euler_cases,
    hints=(
        "Euler's method follows the tangent for one step: the change in x is the velocity times the change "
        "in time.",
        "The change in time is t_next - t, which is negative while sampling (from the noise at t = 1 towards "
        "the data at t = 0); keep its sign.",
        "return x + (t_next - t) * v",
    ),
    variants=(
        Variant("step in the wrong direction", lambda x, v, t, tn: x - (tn - t) * v,
                "a step in the wrong direction: the time step is t_next - t, negative when sampling, and x "
                "moves by that times the velocity"),
        Variant("unit step", lambda x, v, t, tn: x - v,
                "a step of length 1 in time whatever the grid; scale the velocity by the time step"),
    ),
)


# ------------------------------------------------------------------ shift_time


def _shift_cases():
    t = jnp.linspace(0.0, 1.0, 11)
    return [case("11 times from 0 to 1, shift 1 (no shift)", t, 1.0), case("11 times, shift 3 (SD3)", t, 3.0),
            case("11 times, shift 0.5", t, 0.5),
            case("(4, 5) random times, shift 6", jnp.asarray(_rng(20).uniform(0, 1, (4, 5)), jnp.float32), 6.0)]


register(
    "shift_time",
    lesson=LESSON,
    reference=timesteps.shift_times,
    cases=_shift_cases,
    hints=(
        "Section 3 defines the shift; it keeps t = 0 and t = 1 fixed and moves the times in between towards "
        "the noise when shift > 1.",
        "The shifted time is a ratio: shift * t on top, and underneath a term that is 1 at t = 0 and equals "
        "shift at t = 1. Check shift = 1 gives t back.",
        "return shift * t / (1 + (shift - 1) * t)",
    ),
    variants=(
        Variant("inverse shift", lambda t, s: t / (s - (s - 1) * t),
                "the inverse map: it moves times towards the data when shift > 1; the shift moves them "
                "towards the noise"),
        Variant("no normaliser", lambda t, s: s * t,
                "shift * t alone: that leaves [0, 1] for shift > 1; the denominator keeps t = 1 at 1"),
    ),
)


# ------------------------------------------------------------------ logit_normal_density


def _density_cases():
    t = jnp.linspace(0.01, 0.99, 25)
    return [case("25 times, mean 0, std 1", t, 0.0, 1.0), case("25 times, mean 0.5, std 0.8", t, 0.5, 0.8),
            case("25 times, mean -1, std 2", t, -1.0, 2.0), case("t = 0.5 only, mean 0, std 1", jnp.array([0.5]), 0.0, 1.0)]


def _density(jacobian=True, var_as_std=False):
    def pdf(t, mean, std):
        u = jnp.log(t / (1 - t))
        scale = std**2 if var_as_std else std
        p = jnp.exp(-0.5 * ((u - mean) / scale) ** 2) / (scale * jnp.sqrt(2 * jnp.pi))
        return p / (t * (1 - t)) if jacobian else p
    return pdf


register(
    "logit_normal_density",
    lesson=LESSON,
    reference=timesteps.logit_normal_pdf,
    cases=_density_cases,
    hints=(
        "t is a squashed normal: u = logit(t) is normal with the given mean and std. A density changes "
        "under a change of variables by the derivative of the map.",
        "p_t(t) = p_u(logit(t)) * |du/dt|, with p_u the normal density (mean, std) and du/dt = 1 / (t (1 - t)).",
        "u = jnp.log(t / (1 - t)); return jnp.exp(-0.5 * ((u - mean) / std) ** 2) / (std * jnp.sqrt(2 * jnp.pi)) "
        "/ (t * (1 - t))",
    ),
    variants=(
        Variant("no change-of-variables factor", _density(jacobian=False),
                "the normal density of logit(t) without the change-of-variables factor; a density of t must "
                "integrate to 1 over t, which needs |du/dt|"),
        Variant("std used as the variance", _density(var_as_std=True),
                "std squared where std belongs: the normal density divides u - mean by the standard deviation"),
    ),
    rtol=1e-4,
)


# ------------------------------------------------------------------ flow_sample_loop: the whole Euler sampler


def _toy_velocity(x, t):
    return -0.8 * x + 0.5 * t.reshape((-1,) + (1,) * (x.ndim - 1))


def _euler_loop(*, flip=False, use_next=False, sign=1.0):
    def sample(velocity, x1, times):
        times = [float(v) for v in np.asarray(times)]
        if flip:
            times = times[::-1]
        x = x1
        for t, t_next in zip(times[:-1], times[1:]):
            at = t_next if use_next else t
            v = velocity(x, jnp.full((x1.shape[0],), at, jnp.float32))
            x = x + sign * (t_next - t) * v
        return x
    return sample


def _loop_cases():
    cases = []
    for i, (label, times, shape) in enumerate([
        ("uniform 4-step grid 1, 0.75, ..., 0", flow.time_grid(4), (4, 2)),
        ("10-step grid with shift 3", flow.time_grid(10, shift=3.0), (3, 5)),
        ("a single step from 1 to 0", np.array([1.0, 0.0]), (2, 3)),
    ]):
        cases.append(case(label, _toy_velocity, jnp.asarray(_rng(30 + i).standard_normal(shape), jnp.float32),
                          np.asarray(times)))
    return cases


register(
    "flow_sample_loop",
    lesson=LESSON,
    reference=_euler_loop(),
    cases=_loop_cases,
    hints=(
        "Sampling integrates dx/dt = v(x, t) from the noise at t = 1 down to the data at t = 0, one Euler "
        "step per interval of the grid.",
        "For each pair (t, t_next) of consecutive grid times: evaluate the velocity at the current x and at "
        "time t (a (B,) array), then take your euler_flow_step to t_next.",
        "x = x1; for t, t_next in zip(times[:-1], times[1:]): x = x + (t_next - t) * velocity(x, "
        "jnp.full((B,), t)); return x",
    ),
    variants=(
        Variant("grid walked backwards", _euler_loop(flip=True),
                "the grid walked from t = 0 to t = 1; sampling starts from the noise at t = 1"),
        Variant("velocity at the end of the step", _euler_loop(use_next=True),
                "the velocity evaluated at t_next; Euler's method evaluates it where the step starts, at t"),
        Variant("steps in the wrong direction", _euler_loop(sign=-1.0),
                "every step in the wrong direction: with t_next < t the time step is negative"),
    ),
    rtol=1e-4,
    atol=1e-5,
)
