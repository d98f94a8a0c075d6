"""The main job: train a class-conditional model on real MNIST, sample every digit, score it.

Writes to ``out_dir``:
  * ``samples.png``: one row per digit 0-9 (DDIM with classifier-free guidance);
  * ``samples.npz``: ``images`` (N, 28, 28, 1) float32 in [-1, 1] and intended ``labels``;
  * ``quality.png``: the training loss curve and the per-digit accuracy of the samples;
  * ``metrics.json``: domain-feature FID/KID against held-out digits, class accuracy,
    nearest-neighbour memorisation check, timings, parameter count and FLOPs.
Every file is labelled as synthetic with one provenance record (tool, version, time,
preset and weight fingerprint, seed, sampler settings): PNG text chunks, a ``provenance``
entry in the .npz and the ``provenance`` field of metrics.json (see
:mod:`diffusion_jax.provenance`; ``provenance.read(path)`` reads it back).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax import data, metrics, pipeline, pretrained, provenance, viz
from diffusion_jax.models import forward_flops, param_count

__all__ = ["FAST_ENV", "OUTPUT_FILES", "fast_mode", "DemoConfig", "check_config", "run",
           "provenance_record"]

FAST_ENV = "DIFFUSION_JAX_FAST"
#: What :func:`run` writes into ``out_dir``.
OUTPUT_FILES = ("samples.png", "samples.npz", "quality.png", "metrics.json")


def fast_mode() -> bool:
    """True when ``DIFFUSION_JAX_FAST=1`` or under CI (``CI=true``)."""
    return os.environ.get(FAST_ENV, "") not in ("", "0") or os.environ.get("CI", "").lower() == "true"


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the main job does; every field is a ``diffusion-jax demo`` flag of the same name
    (``per_class`` is ``--per-class``). :func:`check_config` says what each accepts."""

    preset: str = "mnist-unet"  # a name in pipeline.PRESETS
    steps: int = 0  # training steps; 0 = the preset's (1,200 for mnist-unet)
    per_class: int = 50  # samples per digit: 10 x 50 = 500, the size of the held-out set
    grid_columns: int = 10  # samples per digit shown in samples.png (at most per_class); the .npz has all
    # DPM-Solver++(2M), 10 steps: on the shipped mnist-unet (500 guided samples, same key) it
    # scored 99.4% / FID 4.92 in 32 s where DDIM-50 scored 99.4% / FID 4.86 in 136 s; FID's
    # draw-to-draw spread at N = 500 is larger than that gap (README, "How long").
    sampler_steps: int = 10  # sampler steps, 1..T
    guidance_scale: float = 3.0  # diffusers' s (1 = plain conditional, 0 = unconditional); paper's w = s - 1
    train: bool = True  # False: sample the shipped reference weights instead of training
    sampler: str = "dpmpp_2m"  # a sampler of diffusion_jax.sampling.SAMPLERS ("ddim" = DDIM, eta = 0)
    toy: bool = True  # also draw the exact-toy sampler figure first (a phase of the demo's clock)
    toy_out_dir: str = "outputs/toy"  # where the toy figure goes
    seed: int = 0  # 0 <= seed < 2**32
    out_dir: str = "outputs/demo"
    fast: bool = False  # a minutes-free smoke run: tiny training, few samples

    def resolved(self) -> DemoConfig:
        cfg = dataclasses.replace(self, grid_columns=min(self.grid_columns, self.per_class))
        if not self.fast:
            return cfg
        return dataclasses.replace(cfg, steps=self.steps or (30 if self.train else 0), per_class=min(self.per_class, 4),
                                   grid_columns=min(cfg.grid_columns, 4), sampler_steps=min(self.sampler_steps, 5))


def check_config(cfg: DemoConfig, *, as_flags: bool = False) -> DemoConfig:
    """Refuse a config that cannot run, before any work, with one line naming the field
    (``as_flags``: the command-line flag) and what it accepts; returns ``cfg``."""
    from diffusion_jax._checks import arg_name, check_int, check_number, check_output_dir

    def n(field):
        return arg_name(field, as_flags)

    if cfg.preset not in pipeline.PRESETS:
        raise ValueError(f"{n('preset')} must be one of {sorted(pipeline.PRESETS)}, got {cfg.preset!r}")
    check_int(cfg.steps, name=n("steps"), min=0)
    for field in ("per_class", "grid_columns", "sampler_steps"):
        check_int(getattr(cfg, field), name=n(field), min=1)
    check_number(cfg.guidance_scale, name=n("guidance_scale"))
    check_int(cfg.seed, name=n("seed"), min=0, max=2**32 - 1)
    from diffusion_jax import sampling

    if cfg.sampler not in sampling.SAMPLERS:
        raise ValueError(f"{n('sampler')} must be one of {sorted(sampling.SAMPLERS)}, got {cfg.sampler!r}")
    preset = pipeline.PRESETS[cfg.preset]
    if not preset.is_flow:
        from diffusion_jax import schedules

        T = jax.eval_shape(lambda: schedules.make_schedule(preset.schedule)).num_timesteps  # no device work
        if cfg.sampler_steps > T:
            raise ValueError(f"{n('sampler_steps')} must be <= {T} (the schedule's T), got {cfg.sampler_steps}")
    if cfg.steps and not cfg.train:
        raise ValueError(f"{n('steps')} applies to training; {'--no-train' if as_flags else 'train=False'} "
                         "samples the shipped weights, which have their own step count")
    check_output_dir(cfg.out_dir, name=n("out_dir"), files=OUTPUT_FILES)
    if cfg.toy:
        from diffusion_jax.toy_demo import OUTPUT_FILES as TOY_FILES

        check_output_dir(cfg.toy_out_dir, name=n("toy_out_dir"), files=TOY_FILES)
    return cfg


_validate = check_config


@contextlib.contextmanager
def _phase(timings: dict, name: str, total: int):
    """Time one phase of the demo and say so on stderr as it starts and ends."""
    number = len(timings) + 1
    print(f"[{number}/{total}] {name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t0, 1)
    print(f"[{number}/{total}] {name}: {timings[name]:.1f} s", file=sys.stderr, flush=True)


def run(cfg: DemoConfig = DemoConfig()) -> dict:
    """The main job, phase by phase: toy figure, training, sampling, scoring, figures.

    ``metrics.json`` records each phase's seconds (set-up excluded: the clock starts here)
    and, when shipped weights of the same preset exist, their recorded scores next to ours.
    """
    cfg = cfg.resolved()
    _validate(cfg)
    t_start = time.perf_counter()
    viz.use_headless_backend()
    overrides = {"steps": cfg.steps, "checkpoint_every": max(cfg.steps // 4, 1)} if cfg.steps else {}
    preset = pipeline.get_preset(cfg.preset, **overrides)
    out = pathlib.Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(cfg.seed)
    timings: dict[str, float] = {}
    phases = 4 + int(cfg.toy)

    if cfg.toy:
        with _phase(timings, "toy figure", phases):
            from diffusion_jax import toy_demo

            toy_demo.run(toy_demo.ToyDemoConfig(num_samples=500 if cfg.fast else 4000, out_dir=cfg.toy_out_dir))
    with _phase(timings, "train" if cfg.train else "load shipped weights", phases):
        state = (pipeline.train(preset, retrain=True) if cfg.train
                 else pipeline.load_trained(preset, source="shipped"))
    num_classes = pipeline.null_label(preset)
    labels = np.repeat(np.arange(num_classes), cfg.per_class)  # (N,) 0,0,...,1,1,...
    with _phase(timings, "sample", phases):
        images = pipeline.sample(jax.random.fold_in(key, 1), state, preset, labels, sampler=cfg.sampler,
                                 num_steps=cfg.sampler_steps, guidance_scale=cfg.guidance_scale)
    with _phase(timings, "evaluate", phases):
        train_ds, test_ds = data.load_dataset(preset.dataset, "train"), data.load_dataset(preset.dataset, "test")
        # The reference classifier and scoring `diffusion-jax eval` uses: same file, same numbers.
        scores = metrics.score(jax.random.key(metrics.SCORE_SEED), images, labels, preset.dataset)
        _, logits = metrics.features_and_logits(metrics.reference(preset.dataset), images)
    model = state.model()
    hwc = pipeline.model_input_shape(preset)
    flops = forward_flops(model, jnp.zeros((1,) + hwc), jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32))
    per_class_acc = [float(np.mean(np.argmax(logits[labels == k], -1) == k)) for k in range(num_classes)]
    shipped = pretrained.find(preset.name)
    result = {
        "preset": preset.name,
        "fingerprint": preset.fingerprint(),
        "dataset": f"{preset.dataset} ({train_ds.source})",
        "trained_here": cfg.train,
        "train_steps": preset.train.steps,
        "images_seen": preset.train.steps * preset.train.batch_size,
        "sampler": f"{cfg.sampler}-{cfg.sampler_steps}, CFG scale {cfg.guidance_scale:g} (w={cfg.guidance_scale - 1:g})",
        "num_generated": int(len(images)),
        "num_held_out": int(len(test_ds.images)),
        **{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in scores.items()},
        "per_class_accuracy": per_class_acc,
        "param_count": param_count(model),
        "forward_gflops_per_image": flops / 1e9,
        "timings_s": timings,
        "devices": [str(d) for d in jax.devices()],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "fast_mode": cfg.fast,
        "note": "FID/KID use features of the project's reference MNIST classifier: comparable only within this "
                "project, at equal N.",
        # The shipped model of the same preset, as measured when it was made (its sampler settings).
        "shipped_reference": ({k: shipped[k] for k in ("scores", "steps", "wall_s", "machine")}
                              if shipped and shipped.get("fingerprint") == preset.fingerprint() else None),
        "provenance": provenance_record(cfg, preset),
    }
    rec = result["provenance"]
    with _phase(timings, "figures", phases):
        provenance.savez(out / "samples.npz", rec, images=images.astype(np.float32), labels=labels.astype(np.int32))
        _figures(out, cfg, preset, images, labels, result)
    timings["total"] = round(time.perf_counter() - t_start, 1)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def provenance_record(cfg: DemoConfig, preset) -> dict:
    """The label every file of a demo run carries (see :mod:`diffusion_jax.provenance`)."""
    return provenance.record(
        command="demo", preset=preset.name, fingerprint=preset.fingerprint(),
        dataset=preset.dataset, seed=cfg.seed, sampler=cfg.sampler, num_steps=cfg.sampler_steps, eta=0.0,
        guidance_scale=cfg.guidance_scale, prediction=preset.train.prediction, fast=cfg.fast,
    )


def _figures(out, cfg, preset, images, labels, result):
    import matplotlib.pyplot as plt

    num_classes = pipeline.null_label(preset)
    grid = viz.class_rows(images, labels, num_classes, cfg.grid_columns)
    fig, ax = plt.subplots(figsize=(cfg.grid_columns * 0.6 + 0.6, num_classes * 0.6 + 0.5))
    viz.show_images(grid, cfg.grid_columns, ax, row_labels=range(num_classes), fontsize=10)
    ax.set_ylabel("intended digit")
    ax.set_title(f"{preset.name}: {result['sampler']}\nsynthetic samples", fontsize=8)
    fig.tight_layout()
    viz.save_figure(fig, out / "samples.png", result["provenance"], dpi=120)
    plt.close(fig)

    log = pipeline.run_dir(preset) / "log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if rows:
        axes[0].plot([r["step"] for r in rows], [r["loss"] for r in rows])
    axes[0].set_xlabel("step")
    axes[0].set_ylabel(f"training loss ({preset.train.prediction}-MSE)")
    axes[0].set_title(f"{preset.name}: {result['param_count']:,} params", fontsize=9)
    axes[1].bar(range(num_classes), result["per_class_accuracy"], color="C2")
    axes[1].set_ylim(0, 1)
    axes[1].set_xticks(range(num_classes))
    axes[1].set_xlabel("intended digit")
    axes[1].set_ylabel("classifier agrees")
    axes[1].set_title(f"accuracy {result['accuracy']:.1%}, domain FID {result['fid']:.2f}, "
                      f"KID {result['kid_mean']:.4f} (N={result['num_generated']})", fontsize=9)
    fig.tight_layout()
    viz.save_figure(fig, out / "quality.png", result["provenance"], dpi=110)
    plt.close(fig)
