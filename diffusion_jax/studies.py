"""Steps against quality: run several samplers from one key and score what they draw.

* :func:`sampler_study`: every (sampler, steps) pair from the same key and labels, scored
  by a function you pass, with sampling wall time measured without compilation.
* :func:`quality_vs_steps`: that study for a trained class-conditional preset, scored with
  the reference classifier (FID, KID, class accuracy): a small version of Table 1 of Song
  et al. (2021, DDIM) and of the frontier plots in the DPM-Solver++ paper.
* :func:`fid_floor`: what FID says about N *real* images, and how much it moves between
  draws: the yardstick that tells a real difference from noise at that N.

Samplers are named as in :data:`diffusion_jax.sampling.SAMPLERS`, with options in
parentheses: ``"ddim"``, ``"ddim(eta=1)"``, ``"ddpm"``, ``"sigma_hat"``, ``"dpmpp_2m"``.
Two requests whose grids and sampler are identical (DDPM on a sub-grid *is* DDIM with
eta = 1) share one run; the later row says so in ``shared_with``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from diffusion_jax import metrics, pipeline, sampling, schedules
from diffusion_jax._checks import check_shape
from diffusion_jax.timing import compile_timer, timed

__all__ = ["sampler_study", "quality_vs_steps", "fid_floor"]


def _same_run(a, b) -> bool:
    (spec_a, grid_a), (spec_b, grid_b) = a, b
    if spec_a.fn is not spec_b.fn or grid_a.path != grid_b.path or grid_a.num_steps != grid_b.num_steps:
        return False
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(grid_a), jax.tree_util.tree_leaves(grid_b)))


def _check_counts(labels):
    if isinstance(labels, (int, np.integer)):
        if labels < 1:
            raise ValueError(f"need at least one sample, got N = {labels}")
        return int(labels), None
    labels = np.asarray(labels)
    if labels.ndim < 1 or len(labels) == 0:
        raise ValueError(f"labels must be (N, ...) conditions or an int N, got shape {labels.shape}")
    return len(labels), labels


def sampler_study(key, denoiser, sample_shape, labels, score: Callable, *, samplers=("ddpm", "ddim", "ddim(eta=1)"),
                  steps=(10, 20, 50, 100, 1000), schedule=None, predictions_per_step: int = 1, batch_size: int = 500,
                  decode: Callable | None = None, progress: bool = False) -> list[dict]:
    """Sample with every (sampler, steps) pair from ``key`` and score each set.

    ``denoiser``: a :class:`~diffusion_jax.denoisers.Denoiser` (guided or not);
    ``sample_shape``: one sample's shape, e.g. ``(28, 28, 1)``; ``labels``: ``(N,)``
    conditions or an int N (unconditional); ``schedule``: the diffusion schedule (None
    for a flow model); ``score(samples, labels) -> dict`` of numbers; ``decode``: applied
    to samples before scoring (a VAE decoder for latent models).

    Returns one dict per pair, in the order ``for sampler in samplers: for s in steps``:
    ``sampler`` (the spec as given), ``steps``, ``evaluations`` (denoiser predictions per
    sample), ``num_samples``, the score's entries, ``seconds`` (sampling wall time without
    tracing/compilation), ``compile_seconds`` and ``shared_with``.
    """
    specs = [(text, *sampling.parse_spec(text)) for text in samplers]
    if not specs:
        raise ValueError("samplers must name at least one sampler")
    steps = tuple(sampling._check_steps(s, "steps entries") for s in steps)
    if not steps:
        raise ValueError("steps must list at least one step count, got ()")
    sample_shape = check_shape(sample_shape, name="sample_shape")
    n, labels = _check_counts(labels)
    done, rows = [], []
    for text, name, opts in specs:
        for s in steps:
            grid = sampling.make_grid(name, s, schedule=schedule, **opts)
            spec = sampling.check_sampler(name, grid.path)
            shared = next((d for d in done if _same_run(d["run"], (spec, grid))), None)
            if shared is not None:
                rows.append({**shared["row"], "sampler": text, "shared_with": shared["row"]["sampler"]})
                continue
            with compile_timer() as spent:
                x, wall = timed(lambda: sampling.sample(name, key, denoiser, (n,) + sample_shape, labels, grid=grid,
                                                        chunk_size=batch_size, devices=jax.local_devices()))
            x = np.asarray(x)
            scores = dict(score(decode(x) if decode else x, labels))
            row = {"sampler": text, "steps": s,
                   "evaluations": sampling.denoiser_evaluations(name, s, predictions_per_step=predictions_per_step),
                   "num_samples": n, **scores, "seconds": max(wall - spent["seconds"], 0.0),
                   "compile_seconds": spent["seconds"], "shared_with": None}
            done.append({"run": (spec, grid), "row": row})
            rows.append(row)
            if progress:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, (int, float)))
                print(f"{text:>14} {s:5d} steps: {shown}; {row['seconds']:.1f} s (+{spent['seconds']:.1f} s compile)")
    return rows


def quality_vs_steps(key, state, preset, classifier, real_features, *, steps=(10, 20, 50, 100, 1000),
                     samplers=("ddpm", "ddim", "ddim(eta=1)"), num_samples: int = 500,
                     guidance_scale: float | None = None, kid_subset_size: int = 100, batch_size: int = 500,
                     progress: bool = False) -> list[dict]:
    """Steps against sample quality and wall time for a trained class-conditional preset.

    ``state``/``preset``: from :func:`diffusion_jax.pipeline.train`; ``classifier``: the
    reference classifier (``(graphdef, params)``); ``real_features``: ``(M, D)`` features
    of held-out real images (the FID reference). ``num_samples`` images are drawn with
    labels ``0, 1, ..., K-1, 0, ...``; ``guidance_scale`` of exactly 1 is the plain
    conditional model (1 prediction per step), anything else batched CFG (2), except for
    a guidance-distilled student, which takes the scale as an input (1 at every scale).

    Returns :func:`sampler_study`'s rows plus ``fid``, ``kid`` (unbiased MMD^2, mean over
    subsets of ``min(kid_subset_size, N)``), ``accuracy`` and ``guidance_scale``. FID is
    biased upward at small N: compare rows only at equal ``num_samples``.
    """
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2 (FID needs a covariance), got {num_samples!r}")
    real_features = np.asarray(real_features, np.float64)
    if real_features.ndim != 2 or len(real_features) < 2:
        raise ValueError(f"real_features must be (M >= 2, D) classifier features, got {real_features.shape}")
    scale = float(preset.guidance_scale if guidance_scale is None else guidance_scale)
    labels = np.arange(int(num_samples)) % pipeline.null_label(preset)  # (N,) 0..K-1 repeated
    kid_m = max(2, min(int(kid_subset_size), int(num_samples), len(real_features)))

    def score(images, intended):
        feats, logits = metrics.features_and_logits(classifier, np.clip(images, -1.0, 1.0))
        if feats.shape[1] != real_features.shape[1]:
            raise ValueError(f"real_features have D = {real_features.shape[1]} but the classifier gives "
                             f"D = {feats.shape[1]}")
        kid_mean, _ = metrics.kid(jax.random.key(0), feats, real_features, 50, kid_m)
        return {"fid": metrics.fid(feats, real_features), "kid": kid_mean,
                "accuracy": metrics.class_accuracy(logits, intended)}

    rows = sampler_study(key, pipeline.denoiser(state, preset, scale), pipeline.model_input_shape(preset), labels,
                         score, samplers=samplers, steps=steps,
                         schedule=None if preset.is_flow else schedules.make_schedule(preset.schedule),
                         predictions_per_step=1 if scale == 1.0 or preset.guidance_input else 2,
                         batch_size=batch_size,
                         decode=pipeline.codec(preset).decode if preset.is_latent else None, progress=progress)
    for row in rows:
        row["guidance_scale"] = scale
    return rows


def fid_floor(key, classifier, images, real_features, num_samples: int, *, repeats: int = 5, labels=None) -> dict:
    """FID of ``num_samples`` real ``images`` against ``real_features``, over ``repeats`` random draws.

    ``images``: real images that are not the reference set (e.g. the training split), drawn
    without replacement with ``key``. With ``labels`` (the images' classes) every draw has
    the class counts of :func:`quality_vs_steps`' samples (labels 0, 1, ..., K-1, 0, ...),
    so the floor compares like with like. Returns ``mean``, ``std`` (ddof=1; 0 for one
    draw) and ``values``. Two sample sets whose FIDs differ by less than a few ``std`` cannot
    be told apart at this N. The ``mean`` is what data-like samples score at this N (FID's
    small-N bias); samples less diverse than the data (strong guidance) can score below it.
    """
    n = int(num_samples)
    if not 2 <= n <= len(images):
        raise ValueError(f"num_samples must lie in 2..{len(images)} (the real images given), got {num_samples!r}")
    if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(images),):
            raise ValueError(f"labels must give one class per image, shape ({len(images)},), got {labels.shape}")
        k = int(labels.max()) + 1
        want = np.bincount(np.arange(n) % k, minlength=k)  # (K,) class counts of the samples
        if np.any(np.bincount(labels, minlength=k) < want):
            raise ValueError(f"too few real images of some class for {n} class-balanced draws")
    real_features = np.asarray(real_features, np.float64)
    values = []
    for r in range(int(repeats)):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, r), len(images)))
        if labels is None:
            rows = order[:n]
        else:  # the first want[c] rows of class c in this random order
            rows = np.concatenate([order[labels[order] == c][:want[c]] for c in range(len(want))])
        feats, _ = metrics.features_and_logits(classifier, np.asarray(images)[np.sort(rows)])
        values.append(metrics.fid(feats, real_features))
    values = np.asarray(values)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": [float(v) for v in values], "num_samples": n, "class_balanced": labels is not None}
