"""Lesson 04 exercises: prediction targets (eps, x0, v), a conversion to derive, min-SNR weights.

The references call the library (``parameterization``, ``losses.snr_weight``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import losses, parameterization, schedules
from diffusion_jax.exercises._core import Variant, case, register

LESSON = "04"


def _expand(alpha_bar, x):
    ab = jnp.asarray(alpha_bar)
    return ab.reshape(ab.shape + (1,) * (x.ndim - ab.ndim))  # (B,) -> (B, 1, ..., 1); a scalar stays


def _conversion_cases(floor=0.0):
    """(a, b, alpha_bar) triples: batched images with per-row alpha_bar, 2-D points, a shared scalar."""
    sched = schedules.linear(1000)
    cases = []
    for i, (label, shape) in enumerate([("(4, 8, 8, 1) images, one alpha_bar per row", (4, 8, 8, 1)),
                                        ("(6, 2) points, one alpha_bar per row", (6, 2)),
                                        ("(3, 4, 4, 3) colour images, one alpha_bar per row", (3, 4, 4, 3))]):
        rng = np.random.default_rng(400 + i)  # numpy: no per-shape compilation, still fixed
        a = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        b = jnp.asarray(rng.uniform(-1.0, 1.0, shape), jnp.float32)
        t = rng.integers(0, 1000, shape[0])
        t[0] = 0
        ab = jnp.maximum(sched.alpha_bars[t], floor)
        cases.append(case(label, a, b, ab, rows=[f"t = {v}" for v in t]))
    cases.append(case("alpha_bar = 0.5 shared by the batch (a Python float)",
                      jnp.full((2, 3), 0.3), jnp.full((2, 3), -0.5), 0.5))
    return cases


# ------------------------------------------------------------------ eps_to_x0


def _x0_from(numerator_sign=-1.0, sqrt=True, swap=False):
    def conv(eps, x_t, alpha_bar):
        ab = _expand(alpha_bar, x_t)
        a, b = (jnp.sqrt(ab), jnp.sqrt(1 - ab)) if sqrt else (ab, 1 - ab)
        if swap:
            a, b = b, a
        return (x_t + numerator_sign * b * eps) / a
    return conv


register(
    "eps_to_x0",
    lesson=LESSON,
    reference=lambda eps, x_t, alpha_bar: parameterization.to_x0(eps, x_t, alpha_bar, "eps"),
    # keep alpha_bar away from 0 so x0 stays finite
    cases=lambda: _conversion_cases(floor=1e-3),
    hints=(
        "Start from the forward equation, x_t in terms of x0 and eps, and solve it for x0. alpha_bar may be a "
        "scalar or one value per row.",
        "Subtract the noise part, then divide by the signal coefficient. A (B,) alpha_bar must become "
        "(B, 1, ..., 1) first, while a scalar needs nothing: pad its shape with as many 1s as x_t has extra axes.",
        "ab = jnp.asarray(alpha_bar); ab = ab.reshape(ab.shape + (1,) * (x_t.ndim - ab.ndim)); "
        "x0 = (x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab)",
    ),
    variants=(
        Variant("noise added, not removed", _x0_from(numerator_sign=+1.0),
                "the noise part added to x_t instead of subtracted from it"),
        Variant("no square roots", _x0_from(sqrt=False),
                "alpha_bar and 1 - alpha_bar as the coefficients; the coefficients are their square roots"),
        Variant("coefficients swapped", _x0_from(swap=True),
                "the signal and noise coefficients swapped: x0's coefficient in x_t is sqrt(alpha_bar)"),
    ),
    rtol=1e-4,
    atol=1e-5,
)


# ------------------------------------------------------------------ x0_eps_to_v


def _v_from(f):
    def conv(x0, eps, alpha_bar):
        ab = _expand(alpha_bar, x0)
        return f(jnp.sqrt(ab), jnp.sqrt(1 - ab), x0, eps)
    return conv


register(
    "x0_eps_to_v",
    lesson=LESSON,
    reference=parameterization.velocity,
    # the pairs are read as (x0-like, eps-like)
    cases=lambda: [case(c.label, c.args[1], c.args[0], c.args[2], rows=c.rows) for c in _conversion_cases()],
    hints=(
        "v is the rate of change of x_t along the circle of section 1: a mix of eps and x0 using the same two "
        "coefficients as x_t, with the roles turned round.",
        "At alpha_bar = 1 (no noise) v equals eps; at alpha_bar = 0 (pure noise) v equals -x0. Find the mix "
        "that does both, with a (B,) alpha_bar reshaped to (B, 1, ..., 1).",
        "ab = jnp.asarray(alpha_bar); ab = ab.reshape(ab.shape + (1,) * (x0.ndim - ab.ndim)); "
        "v = jnp.sqrt(ab) * eps - jnp.sqrt(1 - ab) * x0",
    ),
    variants=(
        Variant("sign flipped", _v_from(lambda a, b, x0, e: b * x0 - a * e),
                "v with its sign flipped: at alpha_bar = 1 v must equal +eps"),
        Variant("coefficients swapped", _v_from(lambda a, b, x0, e: b * e - a * x0),
                "the two coefficients swapped: at alpha_bar = 1 v must equal eps, not -x0"),
        Variant("x_t instead of v", _v_from(lambda a, b, x0, e: a * x0 + b * e),
                "x_t itself, the point on the circle; v is the direction along it"),
    ),
)


# ------------------------------------------------------------------ v_to_eps (a derivation)


def _eps_from_v(f):
    def conv(v, x_t, alpha_bar):
        ab = _expand(alpha_bar, x_t)
        return f(jnp.sqrt(ab), jnp.sqrt(1 - ab), v, x_t)
    return conv


register(
    "v_to_eps",
    lesson=LESSON,
    reference=lambda v, x_t, alpha_bar: parameterization.to_eps(v, x_t, alpha_bar, "v"),
    cases=_conversion_cases,
    hints=(
        "You have two equations, x_t = a x0 + b eps and v = a eps - b x0, with a = sqrt(alpha_bar) and "
        "b = sqrt(1 - alpha_bar). Eliminate x0.",
        "Multiply the first equation by b and the second by a and add them: x0 cancels, and a^2 + b^2 = 1 "
        "leaves eps alone. No division is needed, so alpha_bar = 0 and 1 are both fine.",
        "eps = jnp.sqrt(1 - ab) * x_t + jnp.sqrt(ab) * v (ab reshaped to (B, 1, ..., 1))",
    ),
    variants=(
        Variant("coefficients swapped", _eps_from_v(lambda a, b, v, x: a * x + b * v),
                "the coefficients swapped: at alpha_bar = 1 (no noise) eps must equal v"),
        Variant("sign of v flipped", _eps_from_v(lambda a, b, v, x: b * x - a * v),
                "v entering with the wrong sign: at alpha_bar = 1 eps must equal +v"),
        Variant("x0 instead of eps", _eps_from_v(lambda a, b, v, x: a * x - b * v),
                "the clean estimate x0 (lesson 04's table) instead of the noise eps"),
    ),
    rtol=1e-4,
    atol=1e-5,
)


# ------------------------------------------------------------------ min_snr_weight


def _min_snr_cases():
    sched = schedules.linear(1000)
    zero = schedules.rescale_zero_terminal_snr(sched)
    cases = []
    for prediction in ("eps", "x0", "v"):
        cases.append(case(f'prediction="{prediction}", linear schedule, gamma = 5', sched.snr, prediction, 5.0))
        cases.append(case(f'prediction="{prediction}", SNR = 100, 5, 1, 0.01, gamma = 1',
                          jnp.array([100.0, 5.0, 1.0, 0.01]), prediction, 1.0,
                          rows=["SNR = 100", "SNR = 5", "SNR = 1", "SNR = 0.01"]))
    # zero-terminal SNR: the last timestep has SNR exactly 0
    cases.append(case('prediction="eps", zero terminal SNR (last SNR = 0)', zero.snr, "eps", 5.0))
    cases.append(case('prediction="v", zero terminal SNR (last SNR = 0)', zero.snr, "v", 5.0))
    return cases


def _weights(eps_w, x0_w, v_w):
    def weight(snr, prediction, gamma):
        snr = jnp.asarray(snr)
        return {"eps": eps_w, "x0": x0_w, "v": v_w}[prediction](snr, gamma)
    return weight


_RIGHT = dict(eps_w=lambda s, g: jnp.minimum(1.0, g / s), x0_w=lambda s, g: jnp.minimum(s, g),
              v_w=lambda s, g: jnp.minimum(s, g) / (s + 1.0))

register(
    "min_snr_weight",
    lesson=LESSON,
    reference=lambda snr, prediction, gamma: losses.snr_weight(snr, prediction, "min_snr", gamma),
    cases=_min_snr_cases,
    hints=(
        "Aim: for every target, weight * (target-MSE) = min(SNR, gamma) * (x0-MSE). Section 2 tells you how each "
        "target's MSE relates to the x0-MSE.",
        "Divide min(SNR, gamma) by each target's factor from section 2 (1 for x0, SNR for eps, SNR + 1 for v). "
        "For eps, rewrite the quotient so SNR = 0 gives a finite number instead of 0/0.",
        "x0: jnp.minimum(snr, gamma); eps: jnp.minimum(1.0, gamma / snr); v: jnp.minimum(snr, gamma) / (snr + 1)",
    ),
    variants=(
        Variant("x0 weight for every target", _weights(_RIGHT["x0_w"], _RIGHT["x0_w"], _RIGHT["x0_w"]),
                "min(SNR, gamma) for every target; that is the x0 weight, and eps and v losses already carry "
                "their own factor of the x0-MSE"),
        Variant("eps weight is NaN at SNR = 0",
                _weights(lambda s, g: jnp.minimum(s, g) / s, _RIGHT["x0_w"], _RIGHT["v_w"]),
                "min(SNR, gamma) / SNR for eps: right on paper, but 0/0 = NaN at SNR = 0; write the same "
                "quotient as a minimum of two terms that stay finite"),
        Variant("v weight without the +1",
                _weights(_RIGHT["eps_w"], _RIGHT["x0_w"], lambda s, g: jnp.minimum(1.0, g / s)),
                "the eps weight for v; the v-MSE is (SNR + 1) times the x0-MSE, not SNR times"),
    ),
)
