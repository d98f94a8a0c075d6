"""Demo-recipe sweep: sample quality against images seen, one training recipe per run.

Time to quality on a given machine = images needed to reach the quality (this sweep,
hardware-independent up to float rounding) x seconds per image (the train step's
throughput on that machine, `bench/train_throughput.py`). This script measures the first
factor for variants of the `mnist-unet` recipe: it trains a variant in chunks and after
each chunk samples guided images (DDIM, s = 3, 50 per class) from the EMA weights and
scores them with the project's MNIST classifier (class accuracy, domain FID against the
held-out digits). One JSON line per evaluation goes to ``--out``.

    python bench/recipe_sweep.py --list
    python bench/recipe_sweep.py --variant emaw_lr2 --images 192000 --every 19200 --out sweep.jsonl

It was run on a GPU for the whole table (each variant in its own process); on 2 CPU cores
one variant takes about as long as the demo's training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# name -> (TrainConfig overrides, UNetConfig overrides, schedule)
VARIANTS = {
    "base": ({}, {}, None),
    "emaw": ({"ema_warmup": 10}, {}, None),
    "emaw_lr2": ({"ema_warmup": 10, "lr": 2e-3}, {}, None),
    "emaw_lr3": ({"ema_warmup": 10, "lr": 3e-3}, {}, None),
    "emaw_lr2_bs64": ({"ema_warmup": 10, "lr": 2e-3, "batch_size": 64}, {}, None),
    "emaw_lr2_bs256": ({"ema_warmup": 10, "lr": 2e-3, "batch_size": 256}, {}, None),
    "emaw_lr2_minsnr": ({"ema_warmup": 10, "lr": 2e-3, "weighting": "min_snr"}, {}, None),
    "emaw_lr2_ema99": ({"ema_warmup": 10, "lr": 2e-3, "ema_decay": 0.99}, {}, None),
    "emaw_lr2_noattn": ({"ema_warmup": 10, "lr": 2e-3}, {"attention_levels": ()}, None),
    "emaw_lr2_narrow": ({"ema_warmup": 10, "lr": 2e-3}, {"channels": (16, 32, 32), "num_heads": 4}, None),
    "emaw_lr2_cosine": ({"ema_warmup": 10, "lr": 2e-3}, {}, "cosine"),
    "emaw_lr2_wu20": ({"ema_warmup": 10, "lr": 2e-3, "warmup_steps": 20}, {}, None),
}


def variant_preset(name: str):
    from diffusion_jax import pipeline

    train_kw, model_kw, schedule = VARIANTS[name]
    base = pipeline.PRESETS["mnist-unet"]
    return dataclasses.replace(base, name=f"sweep-{name}", train=dataclasses.replace(base.train, **train_kw),
                               model=dataclasses.replace(base.model, **model_kw),
                               schedule=schedule or base.schedule)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", choices=sorted(VARIANTS))
    p.add_argument("--list", action="store_true", help="print the variants and exit")
    p.add_argument("--images", type=int, default=192_000, help="images seen at the end (default 192,000)")
    p.add_argument("--every", type=int, default=19_200, help="images seen between evaluations")
    p.add_argument("--num", type=int, default=500, help="guided samples per evaluation (50 per digit)")
    p.add_argument("--sampler-steps", type=int, nargs="+", default=[50], help="DDIM steps to score")
    p.add_argument("--out", default="outputs/bench/recipe_sweep.jsonl")
    p.add_argument("--deadline", type=float, default=None, help="stop evaluating after this many seconds")
    p.add_argument("--plot", metavar="JSONL", default=None,
                   help="draw accuracy and FID against images seen from a results file, then exit")
    p.add_argument("--plot-out", default="docs/recipe_sweep.png", help="where --plot writes its figure")
    args = p.parse_args(argv)
    if args.list:
        for k, v in VARIANTS.items():
            print(f"{k:20s} {v}")
        return 0
    if args.plot:
        return plot(args.plot, args.plot_out)
    if not args.variant:
        p.error("--variant is required (or --list)")

    import jax
    import numpy as np

    from diffusion_jax import data, metrics, pipeline, schedules
    from diffusion_jax.train import create_train_state, epoch_batch_fn, fit

    t_start = time.perf_counter()
    preset = variant_preset(args.variant)
    bs = preset.train.batch_size
    test = data.load_dataset("mnist", "test")
    clf = metrics.train_classifier(jax.random.key(2), "mnist", progress=False)
    real_f, _ = metrics.features_and_logits(clf, test.images)
    x, labels = pipeline.training_data(preset)
    batch_fn = epoch_batch_fn(jax.random.key(preset.train.seed), x, labels, bs)
    schedule = schedules.make_schedule(preset.schedule)
    state = create_train_state(pipeline.build_model(preset, preset.train.seed), preset.train)
    out_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"sweep-{args.variant}-"))
    sample_labels = np.arange(args.num) % 10
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    train_s, every = 0.0, max(args.every // bs, 1)
    for k in range(every, args.images // bs + 1, every):
        t0 = time.perf_counter()
        state = fit(state, dataclasses.replace(preset.train, steps=k, checkpoint_every=0, keep_checkpoints=1),
                    schedule, batch_fn, out_dir=out_dir, null_label=10, progress=False)
        jax.block_until_ready(state.params)
        train_s += time.perf_counter() - t0
        for steps in args.sampler_steps:
            imgs = pipeline.sample(jax.random.key(5), state, preset, sample_labels, num_steps=steps,
                                   guidance_scale=3.0)
            f, lg = metrics.features_and_logits(clf, imgs)
            row = {"variant": args.variant, "step": k, "images_seen": k * bs, "sampler_steps": steps,
                   "accuracy": metrics.class_accuracy(lg, sample_labels), "fid": metrics.fid(f, real_f),
                   "train_s_this_machine": train_s, "wall_s": time.perf_counter() - t_start}
            print(json.dumps(row), flush=True)
            with open(out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        if args.deadline and time.perf_counter() - t_start > args.deadline:
            break
    return 0


def plot(jsonl: str, out: str) -> int:
    """Accuracy and FID against images seen, one line per variant, with images to >= 98%."""
    import collections

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in pathlib.Path(jsonl).read_text().splitlines() if line.strip()]
    by = collections.defaultdict(list)
    for r in rows:
        by[r["variant"]].append(r)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    highlight = {"base": ("k", 2.2), "emaw_lr2_bs64": ("C3", 2.6)}
    print(f"{'variant':20s} images seen to >= 98% right class")
    for name, rs in sorted(by.items()):
        rs.sort(key=lambda r: r["images_seen"])
        x = [r["images_seen"] / 1000 for r in rs]
        color, width = highlight.get(name, (None, 1.0))
        kw = {"color": color, "lw": width, "alpha": 1.0 if name in highlight else 0.55, "label": name}
        axes[0].plot(x, [r["accuracy"] for r in rs], "o-", ms=3, **kw)
        axes[1].plot(x, [r["fid"] for r in rs], "o-", ms=3, **kw)
        hit = next((r["images_seen"] for r in rs if r["accuracy"] >= 0.98), None)
        print(f"{name:20s} {hit if hit else 'not reached'}")
    axes[0].axhline(0.98, color="0.5", ls=":", lw=1)
    axes[0].set_ylabel("right-class share of 500 guided samples")
    axes[1].set_ylabel("domain FID (N = 500)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("thousands of training images seen")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("mnist-unet recipe variants: quality against images seen (DDIM-50, s = 3)", fontsize=10)
    fig.tight_layout()
    pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
