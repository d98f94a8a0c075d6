"""Time to quality: how many training seconds until a preset's samples are right-class digits?

The main job is judged by time to quality, not by step speed alone. This bench trains a
preset's recipe from scratch (optionally overridden: steps, batch, lr, EMA warm-up) with
a checkpoint every ``--eval-every`` steps, then scores every checkpoint:
  * guided samples, ``--per-class`` of each class (default 50, so 500 images), through
    ``pipeline.sample`` with the preset's sampler, steps and CFG scale;
  * class accuracy under a classifier (the share of samples classified as the class
    they were asked for) and domain FID against the held-out test digits.
The x axes are training wall-clock seconds and images seen. The clock is ``fit``'s own
(``wall_s`` in its log at each checkpoint step): first-step compile and checkpoint
writes are in, data loading, model set-up and all evaluation are out (scoring runs
after training). The bench prints the first evaluated point with at least ``--target``
(98%) right-class samples; the true crossing lies within one evaluation interval before.

    python bench/time_to_quality.py                  # mnist-unet recipe, ~10 min training + ~2 min per point
    python bench/time_to_quality.py --ema-warmup 10 --eval-every 100
    python bench/time_to_quality.py --quick          # smoke run: 6 tiny steps, 30 samples per point

Writes outputs/bench/time_to_quality.json and .png (accuracy and FID against seconds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="mnist-unet", help="a pipeline preset (default mnist-unet)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="global batch (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.add_argument("--ema-warmup", type=int, default=None, help="TrainConfig.ema_warmup (default: the preset's)")
    p.add_argument("--eval-every", type=int, default=200, help="steps between scored checkpoints (default 200)")
    p.add_argument("--per-class", type=int, default=50, help="samples per class per point (default 50)")
    p.add_argument("--sampler-steps", type=int, default=None, help="sampler steps (default: the preset's)")
    p.add_argument("--scale", type=float, default=None, help="CFG scale s (default: the preset's)")
    p.add_argument("--target", type=float, default=0.98, help="class accuracy to reach (default 0.98)")
    p.add_argument("--seed", type=int, default=0, help="sampling key (default 0)")
    p.add_argument("--run-root", default=str(C.OUT_DIR / "time_to_quality"), help="where the run's checkpoints go")
    p.add_argument("--reuse", action="store_true", help="score an earlier run of the same recipe instead of "
                                                         "training again (its clock is the earlier one's)")
    p.add_argument("--quick", action="store_true", help="smoke run: 6 steps of batch 32, 2 points, 30 samples "
                                                        "each with 4 sampler steps, a 30-step classifier")
    p.add_argument("--no-peer", action="store_true", help="accepted for `make bench`; no peer column here")
    p.add_argument("--out", default=None, help="JSON path (default outputs/bench/time_to_quality.json); "
                                               "the plot goes beside it as .png")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size, args.eval_every = 6, 32, 3
        args.per_class, args.sampler_steps = 3, 4
    for name in ("steps", "batch_size", "eval_every", "per_class", "sampler_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not 0.0 < args.target <= 1.0:
        p.error(f"--target must lie in (0, 1], got {args.target}")
    return args


def reference_classifier(dataset: str, quick: bool):
    """The classifier that judges the samples: the ONE place to swap in a shipped reference."""
    import jax

    from diffusion_jax import metrics

    if quick:  # a smoke run checks the code path; a 30-step classifier trains in seconds
        return metrics.train_classifier(jax.random.key(2), dataset, steps=30)
    return metrics.train_classifier(jax.random.key(2), dataset)


def recipe(args):
    """The preset with the command line's overrides of its training recipe."""
    from diffusion_jax import pipeline

    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr),
                                   ("ema_warmup", args.ema_warmup)) if v is not None}
    preset = pipeline.get_preset(args.preset, **overrides)
    steps = preset.train.steps
    if args.eval_every > steps:
        raise SystemExit(f"--eval-every {args.eval_every} is more than the {steps} training steps")
    # a checkpoint (and a log record) at every evaluation point, all of them kept
    return pipeline.get_preset(args.preset, **overrides, checkpoint_every=args.eval_every,
                               log_every=min(preset.train.log_every, args.eval_every),
                               keep_checkpoints=steps // args.eval_every + 1)


def train_run(preset, run_dir: Path, reuse: bool) -> dict[int, float]:
    """Train (or, with ``reuse``, find) the run; ``{step: training seconds}`` from fit's log."""
    import json

    import jax

    from diffusion_jax import checkpoint as ckpt
    from diffusion_jax import pipeline, schedules, train

    done = ckpt.latest_checkpoint(run_dir / "checkpoints")
    if not (reuse and done is not None and ckpt.read_metadata(done)["step"] == preset.train.steps):
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh clock: never resume someone's half run
        x, labels = pipeline.training_data(preset)
        batch_fn = train.epoch_batch_fn(jax.random.key(preset.train.seed), x, labels, preset.train.batch_size)
        state = train.create_train_state(pipeline.build_model(preset, preset.train.seed), preset.train)
        train.fit(state, preset.train, schedules.make_schedule(preset.schedule), batch_fn, out_dir=run_dir,
                  null_label=pipeline.null_label(preset))
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["wall_s"] for r in log}


def score_checkpoints(preset, run_dir: Path, clock: dict[int, float], args) -> list[dict]:
    import time

    import jax
    import numpy as np

    from diffusion_jax import checkpoint as ckpt
    from diffusion_jax import data, metrics, pipeline, train

    classifier = reference_classifier(preset.dataset, args.quick)
    real, _ = metrics.features_and_logits(classifier, data.load_dataset(preset.dataset, "test").images)
    labels = np.repeat(np.arange(pipeline.null_label(preset)), args.per_class)  # (N,)
    skeleton = jax.eval_shape(lambda: train.create_train_state(pipeline.build_model(preset, preset.train.seed),
                                                               preset.train))
    points = []
    for path in ckpt.list_checkpoints(run_dir / "checkpoints"):
        step = ckpt.read_metadata(path)["step"]
        state = jax.device_put(ckpt.restore_checkpoint(path, skeleton))
        t0 = time.perf_counter()
        images = pipeline.sample(jax.random.key(args.seed), state, preset, labels, num_steps=args.sampler_steps,
                                 guidance_scale=args.scale)
        sample_s = time.perf_counter() - t0
        feats, logits = metrics.features_and_logits(classifier, images)
        points.append({"step": step, "images_seen": step * preset.train.batch_size, "train_s": clock[step],
                       "accuracy": metrics.class_accuracy(logits, labels), "fid": metrics.fid(feats, real),
                       "num_samples": len(labels), "sample_s": sample_s})
        print(f"step {step:6d}  {clock[step]:8.1f} s  accuracy {points[-1]['accuracy']:.3f}  "
              f"FID {points[-1]['fid']:.2f}  (sampling {sample_s:.0f} s)", flush=True)
    return points


def plot(points: list[dict], target: float, title: str, path: Path, record: dict) -> None:
    from diffusion_jax import viz

    viz.use_headless_backend()
    import matplotlib.pyplot as plt

    secs = [p["train_s"] for p in points]
    fig, (ax_acc, ax_fid) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_acc.plot(secs, [100 * p["accuracy"] for p in points], "o-")
    ax_acc.axhline(100 * target, color="gray", ls="--", lw=1, label=f"target {100 * target:.0f}%")
    ax_acc.set(xlabel="training seconds", ylabel="right-class samples (%)", ylim=(0, 101))
    ax_acc.legend(loc="lower right")
    ax_fid.plot(secs, [p["fid"] for p in points], "o-", color="C1")
    ax_fid.set(xlabel="training seconds", ylabel="domain FID (lower is better)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    viz.save_figure(fig, path, record, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = _parse(argv)
    C.force_host_devices()  # as `diffusion-jax train` does: one XLA device per core
    import dataclasses

    import jax

    from diffusion_jax import pipeline, provenance

    preset = recipe(args)
    run_dir = Path(args.run_root) / f"{preset.name}-{preset.fingerprint()}"
    print(f"time to quality: {preset.name}, {preset.train.steps} steps of {preset.train.batch_size}, lr "
          f"{preset.train.lr}, ema_warmup {preset.train.ema_warmup}, {len(jax.devices())} devices, "
          f"{os.cpu_count()} cores; scored every {args.eval_every} steps on "
          f"{pipeline.null_label(preset) * args.per_class} guided samples")
    clock = train_run(preset, run_dir, args.reuse)
    points = score_checkpoints(preset, run_dir, clock, args)
    hit = next((p for p in points if p["accuracy"] >= args.target), None)
    C.print_table(["step", "images seen", "train s", "accuracy", "FID", "sample s"],
                  [[p["step"], p["images_seen"], p["train_s"], p["accuracy"], p["fid"], p["sample_s"]]
                   for p in points], title=f"\n{preset.name}: quality against training time")
    if hit:
        print(f"time to >= {args.target:.0%} right-class samples: {hit['train_s']:.0f} s of training "
              f"({hit['step']} steps, {hit['images_seen']:,} images seen; first scored point reaching it)")
    else:
        print(f"time to >= {args.target:.0%} right-class samples: not reached in {preset.train.steps} steps "
              f"(best {max(p['accuracy'] for p in points):.1%})")
    results = {"preset": preset.name, "fingerprint": preset.fingerprint(), "train": dataclasses.asdict(preset.train),
               "run_dir": str(run_dir), "points": points, "target": args.target,
               "time_to_target": None if hit is None else {k: hit[k] for k in ("train_s", "step", "images_seen")}}
    json_path = C.write_json("time_to_quality", results, args, out=args.out)
    plot(points, args.target, f"{preset.name}: {preset.train.steps} steps of {preset.train.batch_size}, "
         f"{points[0]['num_samples']} guided samples per point", json_path.with_suffix(".png"),
         provenance.record(kind="benchmark plot", preset=preset.name, fingerprint=preset.fingerprint()))
    print(f"wrote {json_path.with_suffix('.png')}")
    return results


if __name__ == "__main__":
    main()
