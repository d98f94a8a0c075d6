"""Sampling budgets and the steps-versus-quality trade-off.

Three groups of tools:

* **Budgets** (plain arithmetic, no JAX): :func:`denoiser_evaluations` counts the
  denoiser predictions one sample costs (steps x stages per step x predictions per
  stage), :func:`sequential_calls` the network calls that must run one after another,
  and :func:`route_budget` applies the count to a list of deployment routes.
* **Samplers on a respaced chain**, keyed by name (:data:`SAMPLERS`), all starting from
  the same x_T for the same key (see :func:`diffusion_jax.samplers.initial_noise`):
  DDIM with eta = 0 or 1, DDPM, and the DDIM paper's larger-variance "sigma hat"
  variant (:func:`sigma_hat_sample`), built on the public step function
  :func:`diffusion_jax.samplers.ddim_step`.
* **Studies**: :func:`sampler_study` runs every (sampler, steps) pair with one key and
  scores the samples with a function you pass; :func:`quality_vs_steps` does that for a
  trained class-conditional preset and scores with a domain classifier (FID, KID,
  class accuracy) - a small version of Table 1 of Song et al. (2021, DDIM).
  :func:`within_class_spread` measures diversity for the guidance trade-off.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax import samplers as S
from diffusion_jax._checks import as_partial, check_choice, check_shape
from diffusion_jax.parameterization import PREDICTIONS
from diffusion_jax.schedules import Schedule
from diffusion_jax.timesteps import SPACINGS, ddim_timesteps

# ----------------------------------------------------------------------------------------
# budgets

#: Denoiser stages per step. Heun (EDM's 2nd-order solver) evaluates twice per step except
#: on the last one, where the correction is skipped; every other sampler evaluates once.
STAGES = {"ddpm": 1, "ddim": 1, "ddim_eta0": 1, "ddim_eta1": 1, "sigma_hat": 1, "euler": 1, "heun": 2}


def _check_steps(steps, name="steps"):
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"{name} must be a positive integer, got {steps!r}")
    return int(steps)


def denoiser_evaluations(steps: int, *, sampler: str = "ddim", predictions_per_step: int = 1) -> int:
    """Denoiser predictions one sample costs: stages x ``predictions_per_step``.

    ``steps``: sampler steps; ``sampler``: a key of :data:`STAGES` ("heun" costs
    ``2 * steps - 1`` stages, every other sampler ``steps``); ``predictions_per_step``:
    2 for classifier-free guidance (a conditional and an unconditional prediction),
    1 without it or for a guidance-distilled model. This counts predictions, i.e. rows
    through the network: our batched CFG computes both in ONE call on a doubled batch,
    which costs the same arithmetic but only one sequential call (see
    :func:`sequential_calls`).
    """
    steps = _check_steps(steps)
    check_choice(sampler, STAGES, name="sampler")
    if isinstance(predictions_per_step, bool) or int(predictions_per_step) != predictions_per_step \
            or predictions_per_step < 1:
        raise ValueError(f"predictions_per_step must be a positive integer (1, or 2 with CFG), "
                         f"got {predictions_per_step!r}")
    stages = 2 * steps - 1 if STAGES[sampler] == 2 else steps
    return stages * int(predictions_per_step)


def sequential_calls(steps: int, *, sampler: str = "ddim", guidance: bool = False,
                     batched_cfg: bool = True) -> int:
    """Network calls that must run one after another for one sample (the latency count).

    Every stage depends on the previous one, so stages cannot overlap. With guidance and
    ``batched_cfg`` (how :func:`diffusion_jax.guidance.guided_denoiser` works) the two
    predictions of a stage share one call; unbatched they are two calls.
    """
    per_stage = 2 if (guidance and not batched_cfg) else 1
    return denoiser_evaluations(steps, sampler=sampler, predictions_per_step=per_stage)


def route_budget(routes: Iterable[dict]) -> list[dict]:
    """Evaluation budget per deployment route.

    Each route is a dict with ``name``, ``steps``, ``predictions_per_step`` and optionally
    ``sampler`` (default "ddim"). Returns one dict per route: ``route``,
    ``denoiser_evaluations`` and ``quality_gate_required`` - always True, because a
    cheaper route is only acceptable after its samples pass the same quality check as
    the expensive one.
    """
    out = []
    for i, route in enumerate(routes):
        missing = {"name", "steps", "predictions_per_step"} - set(route)
        if missing:
            raise ValueError(f"route {i} lacks {sorted(missing)}; expected keys name, steps, "
                             f"predictions_per_step (and optionally sampler)")
        out.append({
            "route": route["name"],
            "denoiser_evaluations": denoiser_evaluations(
                route["steps"], sampler=route.get("sampler", "ddim"),
                predictions_per_step=route["predictions_per_step"]),
            "quality_gate_required": True,
        })
    return out


# ----------------------------------------------------------------------------------------
# samplers on a respaced chain

#: Names accepted by :func:`sample` and the studies.
#:  * ``ddim_eta0``: deterministic DDIM (eta = 0).
#:  * ``ddim_eta1``: DDIM with eta = 1, i.e. ancestral sampling with the posterior variance
#:    beta_tilde of the respaced chain (DDIM eq. 16 with eta = 1 is exactly that std).
#:  * ``ddpm``: ancestral DDPM. At ``steps == T`` this is :func:`samplers.ddpm_sample`; on a
#:    sub-grid it is the respaced chain with posterior variance, the same update as
#:    ``ddim_eta1``. Requested together, the studies run the two once and share the samples.
#:  * ``sigma_hat``: DDPM's larger variance on the respaced chain, sigma_hat^2 =
#:    1 - alpha_bar_t / alpha_bar_prev (DDIM paper, Table 1, last row), no noise on the
#:    final step.
SAMPLERS = ("ddpm", "ddim_eta0", "ddim_eta1", "sigma_hat")


def _next_alpha_bars(schedule: Schedule, grid):
    """alpha_bar at the next (less noisy) grid point, ``(S,)``; 1.0 after the last one."""
    nxt = jnp.concatenate([grid[1:], jnp.array([-1], grid.dtype)])
    return jnp.where(nxt >= 0, schedule.alpha_bars[jnp.maximum(nxt, 0)], 1.0)


def sigma_hat_sigmas(schedule: Schedule, grid):
    """Per-step noise std of the sigma-hat sampler on ``grid`` (descending timesteps), ``(S,)``.

    sigma_hat_i = sqrt(1 - alpha_bar[t_i] / alpha_bar[t_{i+1}]), the beta of the respaced
    chain; 0 on the last step (which lands on the data, alpha_bar = 1).
    """
    grid = jnp.asarray(grid, jnp.int32)
    ab = schedule.alpha_bars[grid]  # (S,)
    ab_prev = _next_alpha_bars(schedule, grid)  # (S,), 1.0 after the last point
    sig = jnp.sqrt(jnp.clip(1.0 - ab / ab_prev, 0.0, 1.0))
    return sig.at[-1].set(0.0)


@functools.partial(jax.jit, static_argnames=("prediction", "clip_x0"))
def _sigma_hat(key, denoise, schedule, x_T, cond, grid, prediction, clip_x0):
    B = x_T.shape[0]
    keys = S.row_keys(key, B)
    ab_prev = _next_alpha_bars(schedule, grid)
    sig = sigma_hat_sigmas(schedule, grid)

    def step(x, inputs):
        i, t, abp, s = inputs
        pred = denoise(x, jnp.full((B,), t, jnp.int32), cond)
        # eta = 1 with zero noise is the posterior mean of the respaced chain ...
        mean, _ = S.ddim_step(pred, x, schedule.alpha_bars[t], abp, 1.0, jnp.zeros_like(x),
                              prediction=prediction, clip_x0=clip_x0)
        # ... to which the larger std is added, with the same noise stream as DDIM/DDPM.
        return mean + s * S.row_normal(keys, 1, i, x.shape[1:], x.dtype), None

    x, _ = jax.lax.scan(step, x_T, (jnp.arange(grid.shape[0]), grid, ab_prev, sig))
    return x


def sigma_hat_sample(key, denoise, schedule: Schedule, shape, cond=None, *, num_steps: int = 50,
                     spacing: str = "leading", prediction: str = "eps", clip_x0: float | None = None,
                     x_T=None):
    """Ancestral sampling on a ``num_steps`` sub-grid with the larger variance sigma_hat.

    The mean of each step is the posterior mean q(x_prev | x_t, x0_hat) of the respaced
    chain (= DDIM with eta = 1 and no noise); the noise std is
    :func:`sigma_hat_sigmas`. Same key conventions as :func:`samplers.ddim_sample`, so
    the same ``key`` gives the same x_T. Returns ``(B, ...)`` samples.
    """
    check_choice(prediction, PREDICTIONS, name="prediction")
    check_choice(spacing, SPACINGS, name="spacing")
    shape = check_shape(shape)
    grid = jnp.asarray(ddim_timesteps(schedule.num_timesteps, num_steps, spacing), jnp.int32)
    x_T = S.initial_noise(key, shape) if x_T is None else jnp.asarray(x_T)
    if x_T.shape != shape:
        raise ValueError(f"x_T must have the sampling shape {shape}, got {x_T.shape}")
    return _sigma_hat(key, as_partial(denoise), schedule, x_T, cond, grid, prediction, clip_x0)


def _run_signature(sampler: str, steps: int, T: int):
    """Which sampler a (sampler, steps) pair really is; equal signatures give the same samples.

    ``ddpm`` and ``ddim_eta1`` are one sampler (ancestral, posterior variance): identical
    programs on a sub-grid, equal up to float rounding at ``steps == T``.
    """
    if sampler in ("ddpm", "ddim_eta1"):
        return ("posterior_variance", steps)
    return (sampler, steps)


def sample(key, denoise, schedule: Schedule, shape, cond=None, *, sampler: str, num_steps: int,
           spacing: str = "leading", prediction: str = "eps", clip_x0: float | None = None):
    """Run the sampler named ``sampler`` (one of :data:`SAMPLERS`) for ``num_steps`` steps."""
    check_choice(sampler, SAMPLERS, name="sampler")
    num_steps = _check_steps(num_steps, "num_steps")
    kw = {"prediction": prediction, "clip_x0": clip_x0}
    if sampler == "ddpm" and num_steps == schedule.num_timesteps:
        return S.ddpm_sample(key, denoise, schedule, shape, cond, **kw)
    if sampler == "sigma_hat":
        return sigma_hat_sample(key, denoise, schedule, shape, cond, num_steps=num_steps, spacing=spacing, **kw)
    eta = 0.0 if sampler == "ddim_eta0" else 1.0  # ddpm on a sub-grid = DDIM eta 1
    return S.ddim_sample(key, denoise, schedule, shape, cond, num_steps=num_steps, eta=eta, spacing=spacing, **kw)


# ----------------------------------------------------------------------------------------
# timing without compilation

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


@contextlib.contextmanager
def compile_timer():
    """Context manager yielding a dict whose ``"seconds"`` sums JAX's tracing and
    compilation time inside the block (from :mod:`jax.monitoring` duration events)."""
    spent = {"seconds": 0.0}

    def listener(event, duration, **kwargs):
        if event in _COMPILE_EVENTS:
            spent["seconds"] += float(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield spent
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


# ----------------------------------------------------------------------------------------
# studies


def _check_list(values, allowed, name):
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} must name at least one entry, got {values}")
    for v in values:
        check_choice(v, allowed, name=name.rstrip("s"))
    return values


def sampler_study(key, denoise, schedule: Schedule, sample_shape, labels, score: Callable, *,
                  steps=(10, 20, 50, 100, 1000), samplers=("ddpm", "ddim_eta0", "ddim_eta1"),
                  predictions_per_step: int = 1, spacing: str = "leading", prediction: str = "eps",
                  clip_x0: float | None = None, batch_size: int = 500, progress: bool = False) -> list[dict]:
    """Sample with every (sampler, steps) pair from the same key, score each set.

    ``denoise(x_t, t, cond)``: the (possibly guided) denoiser; ``sample_shape``: one
    sample's shape, e.g. ``(28, 28, 1)``; ``labels``: ``(N,)`` conditions (N samples) or
    an int N for unconditional sampling; ``score(samples, labels) -> dict`` of numbers.
    Rows are generated in chunks of ``batch_size``; chunk ``j`` uses
    ``fold_in(key, j * batch_size)``, so every sampler starts from the same x_T.

    Returns one dict per pair, in the order ``for sampler in samplers: for s in steps``:
    ``sampler, steps, evaluations`` (denoiser predictions per sample), ``num_samples``,
    the score's entries, ``seconds`` (sampling wall time without tracing/compilation),
    ``compile_seconds``, and ``shared_with``: None, or the sampler whose run this row
    reuses (``ddim_eta1`` after ``ddpm`` is the same sampler, see :data:`SAMPLERS`).
    """
    samplers = _check_list(samplers, SAMPLERS, "samplers")
    steps = tuple(_check_steps(s, "steps entries") for s in steps)
    if not steps:
        raise ValueError("steps must list at least one step count, got ()")
    for s in steps:
        if s > schedule.num_timesteps:
            raise ValueError(f"steps entry {s} exceeds the schedule's T = {schedule.num_timesteps}")
    sample_shape = check_shape(sample_shape, name="sample_shape")
    if isinstance(labels, (int, np.integer)):
        n, labels = int(labels), None
    else:
        labels = np.asarray(labels)
        if labels.ndim < 1 or len(labels) == 0:
            raise ValueError(f"labels must be (N, ...) conditions or an int N, got shape {labels.shape}")
        n = len(labels)
    if n < 1:
        raise ValueError(f"need at least one sample, got N = {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    done: dict[tuple, dict] = {}
    rows = []
    for name in samplers:
        for s in steps:
            sig = _run_signature(name, s, schedule.num_timesteps)
            if sig in done:
                first = done[sig]
                row = {**first["row"], "sampler": name, "shared_with": first["row"]["sampler"]}
                rows.append(row)
                continue
            chunks, wall, compile_s = [], 0.0, 0.0
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                cond = None if labels is None else jnp.asarray(labels[start:stop])
                with compile_timer() as spent:
                    t0 = time.perf_counter()
                    x = sample(jax.random.fold_in(key, start), denoise, schedule, (stop - start,) + sample_shape,
                               cond, sampler=name, num_steps=s, spacing=spacing, prediction=prediction,
                               clip_x0=clip_x0)
                    x = np.asarray(jax.block_until_ready(x))
                    wall += time.perf_counter() - t0
                compile_s += spent["seconds"]
                chunks.append(x)
            samples = np.concatenate(chunks)  # (N, *sample_shape)
            scores = dict(score(samples, labels))
            row = {"sampler": name, "steps": s,
                   "evaluations": denoiser_evaluations(s, sampler=name, predictions_per_step=predictions_per_step),
                   "num_samples": n, **scores, "seconds": max(wall - compile_s, 0.0),
                   "compile_seconds": compile_s, "shared_with": None}
            done[sig] = {"row": row}
            rows.append(row)
            if progress:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, (int, float)))
                print(f"{name:>10} {s:5d} steps: {shown}; {row['seconds']:.1f} s (+{compile_s:.1f} s compile)")
    return rows


def quality_vs_steps(key, state, preset, classifier, real_features, *, steps=(10, 20, 50, 100, 1000),
                     samplers=("ddpm", "ddim_eta0", "ddim_eta1"), num_samples: int = 500,
                     guidance_scale: float | None = None, spacing: str = "leading",
                     kid_subset_size: int = 100, batch_size: int = 500, progress: bool = False) -> list[dict]:
    """Steps against sample quality and wall time for a trained class-conditional preset.

    ``state``/``preset``: from :func:`diffusion_jax.pipeline.train` (pixel-space presets
    only); ``classifier``: ``(graphdef, params)`` from :func:`metrics.train_classifier`;
    ``real_features``: ``(M, D)`` classifier features of held-out real images (the FID
    reference). ``num_samples`` images are drawn with labels ``0, 1, ..., K-1, 0, ...``
    and EMA weights; ``guidance_scale`` (None = the preset's) of exactly 1 uses the
    plain conditional model (1 prediction per step), anything else batched CFG
    (2 predictions per step, one call).

    Returns :func:`sampler_study`'s rows with ``fid``, ``kid`` (unbiased MMD^2, mean over
    subsets of ``min(kid_subset_size, N)``), ``accuracy`` (the classifier agrees with the
    intended label) and ``guidance_scale``. FID is biased upward at small N (roughly
    like 1/N): compare rows only at equal ``num_samples``. Domain-feature FID is
    comparable only within this project.
    """
    from diffusion_jax import guidance, metrics, pipeline, schedules
    from diffusion_jax.train import model_denoiser

    if preset.is_latent:
        raise ValueError(f"quality_vs_steps needs a pixel-space preset; {preset.name!r} diffuses in latents")
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2 (FID needs a covariance), got {num_samples!r}")
    real_features = np.asarray(real_features, np.float64)
    if real_features.ndim != 2 or len(real_features) < 2:
        raise ValueError(f"real_features must be (M >= 2, D) classifier features, got {real_features.shape}")
    scale = float(preset.guidance_scale if guidance_scale is None else guidance_scale)
    num_classes = pipeline.null_label(preset)
    labels = np.arange(int(num_samples)) % num_classes  # (N,) 0..K-1 repeated
    base = model_denoiser(state.graphdef, state.ema_params, state.rest)
    if scale == 1.0:
        denoise, per_step = base, 1
    else:
        denoise, per_step = guidance.guided_denoiser(base, scale, num_classes), 2
    kid_m = max(2, min(int(kid_subset_size), int(num_samples), len(real_features)))

    def score(images, intended):
        feats, logits = metrics.features_and_logits(classifier, np.clip(images, -1.0, 1.0))
        if feats.shape[1] != real_features.shape[1]:
            raise ValueError(f"real_features have D = {real_features.shape[1]} but the classifier gives "
                             f"D = {feats.shape[1]}")
        kid_mean, _ = metrics.kid(feats, real_features, 50, kid_m, jax.random.key(0))
        return {"fid": metrics.fid(feats, real_features), "kid": kid_mean,
                "accuracy": metrics.class_accuracy(logits, intended)}

    rows = sampler_study(key, denoise, schedules.make_schedule(preset.schedule), pipeline.image_shape(preset),
                         labels, score, steps=steps, samplers=samplers, predictions_per_step=per_step,
                         spacing=spacing, prediction=preset.train.prediction, clip_x0=preset.clip_x0,
                         batch_size=batch_size, progress=progress)
    for row in rows:
        row["guidance_scale"] = scale
    return rows


# ----------------------------------------------------------------------------------------
# diversity


def within_class_spread(features, labels, num_classes: int | None = None) -> np.ndarray:
    """Mean pairwise Euclidean distance between the ``(N, D)`` features of each class.

    Returns a ``(K,)`` float64 array (K = ``num_classes`` or ``max(labels) + 1``), NaN for
    a class with fewer than two rows. Lower spread at equal fidelity = less diverse
    samples: the quantity classifier-free guidance trades for class accuracy.
    """
    x = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),):
        raise ValueError(f"need (N, D) features and (N,) labels, got {x.shape} and {labels.shape}")
    k = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    out = np.full(k, np.nan)
    for c in range(k):
        f = x[labels == c]  # (n_c, D)
        m = len(f)
        if m < 2:
            continue
        sq = np.square(f).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None] - 2.0 * f @ f.T, 0.0)  # (n_c, n_c)
        out[c] = np.sqrt(d2)[np.triu_indices(m, 1)].mean()
    return out
