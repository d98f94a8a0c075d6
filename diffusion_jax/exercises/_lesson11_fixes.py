"""Lesson 11 (interview prep), part 2: the "find the bug" function fixes.

Each registration holds the reference (a library call), named cases, hint tiers and the
buggy or half-fixed versions the grader recognises. Imported by ``lesson11``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import flow, guidance, samplers, schedules, timesteps
from diffusion_jax import parameterization as P
from diffusion_jax.exercises._core import Variant, case, register

LESSON = "11"


def _lin():
    return schedules.linear(1000)


def _col(a, x):
    return jnp.asarray(a).reshape((-1,) + (1,) * (x.ndim - 1))  # (B,) -> (B, 1, ..., 1)


def _batch_cases(seed, shape=(4, 6, 6, 1), lo=0, hi=999):
    rng = np.random.default_rng(seed)
    sched = _lin()
    t = rng.integers(lo, hi, shape[0])
    return (jnp.asarray(rng.standard_normal(shape), jnp.float32),
            jnp.asarray(rng.standard_normal(shape), jnp.float32), sched.alpha_bars[t], sched, t)


def _clip_cases():
    cases = []
    for i, label in enumerate(["(4, 6, 6, 1) images, x_t doubled so x0 leaves [-1, 1]",
                               "(4, 6, 6, 1) images, other timesteps", "(4, 6, 6, 1) images, a third draw"]):
        pred, x_t, ab, _, t = _batch_cases(1100 + i)
        cases.append(case(label, pred, 2.0 * x_t, ab, rows=[f"t = {v}" for v in t]))
    return cases


def _clip_variant(clip=True, rederive=True, swapped=False):
    def fix(eps, x_t, alpha_bar):
        ab = _col(alpha_bar, x_t)
        raw = (x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab)
        x0 = jnp.clip(raw, -1.0, 1.0) if clip else raw
        if not rederive:
            return x0, eps
        a, b = (jnp.sqrt(1 - ab), jnp.sqrt(ab)) if swapped else (jnp.sqrt(ab), jnp.sqrt(1 - ab))
        return x0, (x_t - a * x0) / b
    return fix


register(
    "fix_clipped_x0_eps",
    lesson=LESSON,
    reference=lambda eps, x_t, alpha_bar: P.x0_and_eps(eps, x_t, alpha_bar, "eps", clip_x0=1.0),
    cases=_clip_cases,
    outputs=("x0", "eps"),
    hints=(
        "After clipping, x0 and eps must still describe the same x_t: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps "
        "must hold for the pair you return.",
        "Keep the clipped x0, and solve the forward equation for eps given x_t and that clipped x0 "
        "(alpha_bar reshaped to (B, 1, ..., 1)).",
        "x0 = jnp.clip((x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab), -1, 1); "
        "return x0, (x_t - jnp.sqrt(ab) * x0) / jnp.sqrt(1 - ab)",
    ),
    variants=(
        Variant("the code as given", _clip_variant(rederive=False),
                "the code as given: x0 is clipped, but eps is still the model's original prediction"),
        Variant("coefficients swapped", _clip_variant(swapped=True),
                "eps solved from the forward equation with the two coefficients swapped: x0's coefficient "
                "in x_t is sqrt(alpha_bar)"),
        Variant("no clipping", _clip_variant(clip=False),
                "x0 not clipped at all: the fix keeps the clip and makes eps agree with it"),
    ),
    rtol=1e-4, atol=1e-4,
)


def _ddim_cases():
    cases = []
    for i, eta in enumerate([1.0, 0.5, 0.0]):
        rng = np.random.default_rng(1110 + i)
        pred, x_t, _, sched, _ = _batch_cases(1110 + i)
        t = rng.integers(50, 999, pred.shape[0])
        ab, ab_prev = sched.alpha_bars[t], sched.alpha_bars[t - 40]
        noise = jnp.asarray(rng.standard_normal(pred.shape), jnp.float32)
        cases.append(case(f"eta = {eta:g}, steps of 40 timesteps", pred, x_t, ab, ab_prev, eta, noise,
                          rows=[f"t = {v}" for v in t]))
    return cases


def _ddim_variant(add_noise, shrink):
    def step(eps, x_t, ab, ab_prev, eta, noise):
        ab, ab_prev = _col(ab, x_t), _col(ab_prev, x_t)
        x0 = (x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab)
        sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        direction = jnp.sqrt(jnp.maximum(1 - ab_prev - (sigma**2 if shrink else 0.0), 0.0)) * eps
        return jnp.sqrt(ab_prev) * x0 + direction + (sigma * noise if add_noise else 0.0)
    return step


register(
    "fix_ddim_eta_step",
    lesson=LESSON,
    reference=lambda eps, x_t, ab, ab_prev, eta, noise: samplers.ddim_step(eps, x_t, ab, ab_prev, eta, noise)[0],
    cases=_ddim_cases,
    hints=(
        "The variance 1 - ab_prev of the new point is split in two: the predicted direction gets "
        "1 - ab_prev - sigma^2, and sigma^2 must go to fresh noise. Which part is missing?",
        "Add sigma * noise to the update; x0 comes from eps and x_t as usual, and ab, ab_prev have shape (B,), "
        "so reshape them to (B, 1, ..., 1).",
        "return jnp.sqrt(ab_prev) * x0 + jnp.sqrt(1 - ab_prev - sigma**2) * eps + sigma * noise",
    ),
    variants=(
        Variant("the code as given", _ddim_variant(add_noise=False, shrink=True),
                "the code as given: the direction term is shrunk but sigma * noise is never added (the "
                "eta = 0 case was right)"),
        Variant("noise added, direction not shrunk", _ddim_variant(add_noise=True, shrink=False),
                "the noise is added now, but the direction term keeps all of 1 - ab_prev; it must give up "
                "sigma^2 to the fresh noise"),
    ),
    rtol=1e-4, atol=1e-4,
)


def _cfg_cases():
    cases = []
    for i, w in enumerate([0.0, 2.0, 6.5]):
        rng = np.random.default_rng(1120 + i)
        u, c = (jnp.asarray(rng.standard_normal((3, 5)), jnp.float32) for _ in range(2))
        cases.append(case(f"w = {w:g}" + (" (the plain conditional prediction)" if w == 0 else ""), u, c, w))
    return cases


register(
    "fix_cfg_paper_w",
    lesson=LESSON,
    reference=lambda uncond, cond, w: guidance.cfg_combine(uncond, cond, 1.0 + w),
    cases=_cfg_cases,
    hints=(
        "The paper's w = 0 means 'no extra guidance', the plain conditional prediction. What does the given "
        "code return at w = 0?",
        "Either write the paper's form directly, or keep diffusers' form and convert w to s first.",
        "return (1 + w) * cond - w * uncond   (= uncond + (w + 1) * (cond - uncond))",
    ),
    variants=(
        Variant("the code as given", lambda u, c, w: u + w * (c - u),
                "the code as given: diffusers' formula with s = w, one unit weaker; at w = 0 it returns the "
                "unconditional prediction"),
        Variant("cond and uncond swapped", lambda u, c, w: (1 + w) * u - w * c,
                "cond and uncond swapped: the extra weight 1 + w belongs to the conditional prediction"),
    ),
    rtol=1e-5, atol=1e-5,
)


def _flow_cases():
    cases = []
    for i in range(3):
        rng = np.random.default_rng(1130 + i)
        x0, eps = (jnp.asarray(rng.standard_normal((4, 3)), jnp.float32) for _ in range(2))
        t = rng.uniform(0, 1, 4)
        if i == 0:
            t[:2] = [0.0, 1.0]
        cases.append(case("(4, 3) points" + (", with t = 0 and t = 1" if i == 0 else f", draw {i + 1}"), x0, eps,
                          jnp.asarray(t, jnp.float32), rows=[f"t = {v:.2f}" for v in t]))
    return cases


register(
    "fix_flow_interpolant",
    lesson=LESSON,
    reference=flow.interpolate,
    cases=_flow_cases,
    hints=(
        "Check the two ends in this project's convention: at t = 0 the path must be at the data, at t = 1 "
        "at the noise. Where is the given line at t = 0?",
        "Swap which endpoint each weight belongs to; t has shape (B,) and must broadcast as (B, 1).",
        "t = t.reshape(-1, 1); return (1 - t) * x0 + t * eps",
    ),
    variants=(
        Variant("the code as given", lambda x0, e, t: (1 - _col(t, x0)) * e + _col(t, x0) * x0,
                "the code as given: t = 0 is the noise there; in this project t = 0 is the data"),
        Variant("data never removed", lambda x0, e, t: x0 + _col(t, x0) * e,
                "x0 + t * eps keeps all of x0 even at t = 1; the path must end at pure noise"),
    ),
)


def _grid_cases():
    return [case("T = 1000, 50 steps", 1000, 50), case("T = 1000, 10 steps", 1000, 10),
            case("T = 1000, 4 steps", 1000, 4), case("T = 100, 7 steps (T/n not whole)", 100, 7)]


register(
    "fix_trailing_grid",
    lesson=LESSON,
    reference=lambda T, n: timesteps.ddim_timesteps(T, n, "trailing"),
    cases=_grid_cases,
    hints=(
        "Two problems: the first grid point must be the last valid timestep, T - 1, and the spacing "
        "must be T / n as a real number (not an integer division), rounded afterwards.",
        "Count down from T in real steps of T / n, round, subtract one, keep the first n points, and "
        "return integers. Try T = 100, n = 7 by hand.",
        "return (np.round(np.arange(T, 0, -T / n)) - 1)[:n].astype(np.int64)",
    ),
    variants=(
        Variant("the code as given", lambda T, n: np.arange(T, 0, -T // n)[:n],
                "the code as given: it starts at T, one past the last valid timestep (and -T // n is "
                "(-T) // n)"),
        Variant("no minus one", lambda T, n: np.round(np.arange(T, 0, -T / n))[:n].astype(np.int64),
                "the grid still starts at T; timesteps are 0-based, so subtract one"),
        Variant("integer spacing", lambda T, n: (np.arange(T, 0, -(T // n)) - 1)[:n].astype(np.int64),
                "an integer step T // n; trailing spacing uses T / n and rounds, which differs when T / n "
                "is not whole"),
    ),
)
