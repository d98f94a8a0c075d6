"""Lesson 07 exercises: the DDIM update, the evaluation budget, one inversion step, and the
whole deterministic DDIM loop over a sub-sampled grid.

The references call the library (``samplers.ddim_step``, ``sampling``, ``parameterization``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffusion_jax import samplers, sampling, schedules, timesteps
from diffusion_jax.exercises._core import Variant, case, register
from diffusion_jax.parameterization import to_x0

LESSON = "07"


def _ddim_reference(eps, x_t, alpha_bar, alpha_bar_prev, eta, noise):
    return samplers.ddim_step(eps, x_t, alpha_bar, alpha_bar_prev, eta, noise, prediction="eps")[0]


def _ddim_cases():
    cases = []
    for i, (label, shape, ab, abp, eta) in enumerate([
        ("eta = 0, a mid step", (4, 2), 0.30, 0.55, 0.0),
        ("eta = 1, a mid step", (4, 2), 0.30, 0.55, 1.0),
        ("eta = 0.5, a big skip on (2, 8, 8, 1) images", (2, 8, 8, 1), 0.05, 0.6, 0.5),
        ("eta = 1, the last step (alpha_bar_prev = 1)", (3, 5), 0.9, 1.0, 1.0),
        ("eta = 0, the noisiest step (alpha_bar = 0.001)", (3, 5), 0.001, 0.02, 0.0),
    ]):
        rng = np.random.default_rng(700 + i)
        eps, x_t, noise = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(3))
        cases.append(case(label, eps, x_t, ab, abp, eta, noise))
    return cases


def _ddim_with(*, eta_fixed=None, noise_on=True, shrink=True):
    def step(eps, x_t, ab, abp, eta, noise):
        e = eta if eta_fixed is None else eta_fixed
        x0 = (x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab)
        sigma = e * jnp.sqrt((1 - abp) / (1 - ab) * (1 - ab / abp))
        direction = jnp.sqrt(jnp.maximum(1 - abp - (sigma**2 if shrink else 0.0), 0.0)) * eps
        return jnp.sqrt(abp) * x0 + direction + (sigma * noise if noise_on else 0.0)
    return step


register(
    "ddim_update",
    lesson=LESSON,
    reference=_ddim_reference,
    cases=_ddim_cases,
    hints=(
        "Three ingredients: the clean estimate x0_hat implied by eps, the noise level sigma that eta "
        "allows, and the new point at level alpha_bar_prev built from x0_hat, eps and fresh noise.",
        "sigma is eta times the DDPM posterior std between the two levels (section 2). The new point has "
        "signal coefficient sqrt(alpha_bar_prev); its noise variance 1 - alpha_bar_prev is split between the "
        "predicted direction eps and the fresh noise, sigma^2 of it to the fresh noise.",
        "x0 = (x_t - sqrt(1 - ab) * eps) / sqrt(ab); sigma = eta * sqrt((1 - ab_prev) / (1 - ab)) * "
        "sqrt(1 - ab / ab_prev); return sqrt(ab_prev) * x0 + sqrt(1 - ab_prev - sigma**2) * eps + sigma * noise",
    ),
    variants=(
        Variant("eta ignored", _ddim_with(eta_fixed=1.0),
                "sigma computed as if eta were always 1; eta scales sigma, and eta = 0 is deterministic"),
        Variant("no fresh noise", _ddim_with(noise_on=False),
                "sigma * noise left out: with eta > 0 the step must add fresh noise (the rows with eta = 0 "
                "were right)"),
        Variant("direction not shrunk", _ddim_with(shrink=False),
                "the direction term keeps all of the variance 1 - alpha_bar_prev; with sigma > 0 it must "
                "leave sigma^2 of it to the fresh noise"),
    ),
    rtol=1e-4,
    atol=1e-4,  # ab = 0.001 divides float32 rounding by sqrt(ab)
)


def _budget_reference(steps, sampler, cfg):
    return sampling.denoiser_evaluations(sampler, steps, predictions_per_step=2 if cfg else 1)


def _budget_cases():
    return [case("DDPM-1000, no guidance", 1000, "ddpm", False), case("DDIM-50 with guidance", 50, "ddim", True),
            case("DDIM-6, no guidance", 6, "ddim", False), case("Heun-18, no guidance", 18, "heun", False),
            case("Heun-10 with guidance", 10, "heun", True), case("Heun-1 (a single step)", 1, "heun", False)]


register(
    "evaluation_budget",
    lesson=LESSON,
    reference=_budget_reference,
    cases=_budget_cases,
    hints=(
        "Count the places where the network is evaluated: how many per step for each sampler, and how many "
        "predictions per evaluation point when guidance is on?",
        "DDPM and DDIM evaluate once per step. Heun evaluates twice per step except on the last one, which "
        "has no correction. Guidance needs a conditional and an unconditional prediction at each point.",
        "stages = 2 * steps - 1 if sampler == 'heun' else steps; return stages * (2 if cfg else 1)",
    ),
    variants=(
        Variant("two per Heun step", lambda n, s, c: (2 * n if s == "heun" else n) * (2 if c else 1),
                "two evaluations on every Heun step; the last step has no correction, so it needs only one"),
        Variant("guidance not counted", lambda n, s, c: 2 * n - 1 if s == "heun" else n,
                "guidance counted as free: each evaluation point needs a conditional and an unconditional "
                "prediction"),
    ),
)


def _inversion_reference(eps, x, alpha_bar_from, alpha_bar_to):
    # the eta = 0 DDIM update read upwards: the library's x0 estimate, re-noised with the same eps
    x0_hat = to_x0(eps, x, alpha_bar_from, "eps")
    return jnp.sqrt(alpha_bar_to) * x0_hat + jnp.sqrt(1.0 - alpha_bar_to) * eps


def _inversion_cases():
    cases = []
    for i, (label, shape, a_from, a_to) in enumerate([
        ("(4, 2) points, 0.9 -> 0.6", (4, 2), 0.9, 0.6), ("(2, 8, 8, 1) images, 0.999 -> 0.95", (2, 8, 8, 1), 0.999, 0.95),
        ("(3, 5) vectors, 0.3 -> 0.02", (3, 5), 0.3, 0.02), ("from clean data, 1.0 -> 0.99", (1, 6), 1.0, 0.99)]):
        rng = np.random.default_rng(750 + i)
        eps, x = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(2))
        cases.append(case(label, eps, x, a_from, a_to))
    return cases


register(
    "inversion_step",
    lesson=LESSON,
    reference=_inversion_reference,
    cases=_inversion_cases,
    hints=(
        "Inversion runs the eta = 0 DDIM update upwards: from the less noisy level to the noisier one, "
        "keeping the same noise estimate eps.",
        "First the clean estimate from x at the level it is at (alpha_bar_from); then place that estimate "
        "and eps at the new level alpha_bar_to, exactly as the forward formula would.",
        "x0_hat = (x - sqrt(1 - ab_from) * eps) / sqrt(ab_from); return sqrt(ab_to) * x0_hat + sqrt(1 - ab_to) * eps",
    ),
    variants=(
        Variant("levels swapped", lambda e, x, f, t: _inversion_reference(e, x, t, f),
                "the two levels swapped: x0_hat comes from the level x is at, alpha_bar_from, and the result "
                "lives at alpha_bar_to"),
        Variant("x re-noised directly", lambda e, x, f, t: jnp.sqrt(t) * x + jnp.sqrt(1 - t) * e,
                "x itself placed at the new level; first estimate the clean x0 from x, then re-noise that"),
    ),
    rtol=1e-4,
    atol=1e-5,
)


# ------------------------------------------------------------------ ddim_sample_loop: the whole sampler


def _toy_eps(x, t):
    return 0.3 * x + 1e-3 * t.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)


def _grid_loop(prev_of, *, final_step=True, ascending=False):
    def sample(eps_model, schedule, x_T, grid):
        grid = [int(g) for g in np.asarray(grid)]
        order = sorted(grid) if ascending else grid
        x = x_T
        for k, t in enumerate(order):
            last = k == len(order) - 1
            if last and not final_step:
                break
            ab = schedule.alpha_bars[t]
            ab_prev = prev_of(schedule, order, k)
            tt = jnp.full((x_T.shape[0],), t, jnp.int32)
            x = samplers.ddim_step(eps_model(x, tt), x, ab, ab_prev, 0.0, jnp.zeros_like(x), prediction="eps")[0]
        return x
    return sample


def _next_on_grid(schedule, order, k):
    return schedule.alpha_bars[order[k + 1]] if k + 1 < len(order) else 1.0


def _loop_cases():
    lin = schedules.linear(1000)
    cases = []
    for i, (label, sched, grid, shape) in enumerate([
        ("trailing grid, 5 of 1000 steps", lin, timesteps.ddim_timesteps(1000, 5, "trailing"), (4, 2)),
        ("leading grid, 10 of 1000 steps", lin, timesteps.ddim_timesteps(1000, 10, "leading"), (3, 5)),
        ("every step of a 10-step schedule", schedules.linear(10, 1e-3, 0.2), np.arange(9, -1, -1), (2, 3)),
    ]):
        rng = np.random.default_rng(780 + i)
        cases.append(case(label, _toy_eps, sched, jnp.asarray(rng.standard_normal(shape), jnp.float32),
                          np.asarray(grid)))
    return cases


register(
    "ddim_sample_loop",
    lesson=LESSON,
    reference=_grid_loop(_next_on_grid),
    cases=_loop_cases,
    hints=(
        "Walk the grid from its first (noisiest) timestep to its last. Each step goes from the level of the "
        "current grid point to the level of the next one; after the last grid point comes the data itself.",
        "At grid point k: alpha_bar = alpha_bars[grid[k]], alpha_bar_prev = alpha_bars[grid[k + 1]], or 1.0 "
        "after the last point. Ask the model for eps with a (B,) array of grid[k], take one eta = 0 DDIM update "
        "(your ddim_update with zero noise), continue from its output.",
        "x = x_T; for k, t in enumerate(grid): ab = alpha_bars[t]; ab_prev = alpha_bars[grid[k + 1]] if "
        "k + 1 < len(grid) else 1.0; x = ddim_update(eps_model(x, jnp.full((B,), t)), x, ab, ab_prev, 0.0, 0 * x)",
    ),
    variants=(
        Variant("adjacent timestep instead of the next grid point",
                _grid_loop(lambda s, o, k: s.alpha_bars[o[k] - 1] if o[k] > 0 else 1.0),
                "alpha_bar of the adjacent timestep t - 1 as the target level; DDIM jumps to the next point "
                "of the grid, so each step covers the whole gap"),
        Variant("no final step to the data", _grid_loop(_next_on_grid, final_step=False),
                "the loop stops at the last grid point; one more step, to alpha_bar = 1, turns that state "
                "into the clean sample"),
        Variant("grid walked upwards", _grid_loop(_next_on_grid, ascending=True),
                "the grid walked from its smallest timestep upwards; sampling starts at the noisiest point"),
    ),
    rtol=1e-4,
    atol=1e-4,
)
