"""Command line: ``diffusion-jax <command> [options]``; ``--help`` on each command.

The shell is thin: flags are converted at the edge into the library's frozen config
dataclasses and presets, then one library function runs. Before JAX starts, the CPU is
split into one XLA device per core so training shards its batch over all of them
(set ``XLA_FLAGS`` yourself to override).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys

COMMANDS = {
    "toy": "every sampler on an exact 2-D toy (no training): samplers.png, stats.json",
    "demo": "train a class-conditional model on MNIST, sample every digit, score it",
    "train": "train a preset (or load it from the checkpoint cache)",
    "sample": "sample a trained preset to a PNG grid and an .npz",
    "eval": "score an .npz of samples: domain FID/KID, class accuracy, memorisation",
    "data": "show where each data set is found, or how to get it",
    "progress": "grade your saved lesson notebooks: solved / attempted / not started per lesson",
    "quiz": "build a closed-book quiz notebook from chosen lessons (for a class)",
    "report": "grade a folder of participants' quiz notebooks into a class report (CSV + figure)",
}
# commands whose flags and logic live in a library module with add_arguments(parser) and run(args)
MODULE_COMMANDS = {
    "progress": "diffusion_jax.exercises.progress",
    "quiz": "diffusion_jax.exercises.quiz",
    "report": "diffusion_jax.exercises.report",
}


def _use_all_cores():
    if "XLA_FLAGS" not in os.environ and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"


def _add_dataclass_flags(parser, cls, skip=()):
    """One ``--flag`` per field, typed from its default (bool fields become switches)."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action="store_true", default=f.default, help="(switch)")
        elif f.default is None:
            parser.add_argument(flag, default=None, help="(default: none)")
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, help=f"(default: {f.default})")


def _from_args(cls, args, **extra):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names}, **extra)


def _preset_flags(parser):
    from diffusion_jax.pipeline import PRESETS

    parser.add_argument("--preset", default="mnist-unet", choices=sorted(PRESETS), help="(default: mnist-unet)")
    parser.add_argument("--steps", type=int, default=0, help="training steps (default: the preset's)")


def _cluster_flags(parser):
    g = parser.add_argument_group("multi-process training (JAX's distributed runtime; start one process per id)")
    g.add_argument("--coordinator-address", default=None,
                   help="host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS; none = one process)")
    g.add_argument("--num-processes", type=int, default=None, help="processes in the run (default: $JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, default=None, help="this process, 0..N-1 (default: $JAX_PROCESS_ID)")


def build_parser() -> argparse.ArgumentParser:
    from diffusion_jax.demo import DemoConfig
    from diffusion_jax.sampling import SAMPLERS
    from diffusion_jax.toy_demo import ToyDemoConfig

    parser = argparse.ArgumentParser(prog="diffusion-jax", description="Diffusion models in JAX: the course's tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cmd = {name: sub.add_parser(name, help=text, description=text) for name, text in COMMANDS.items()}
    _add_dataclass_flags(cmd["toy"], ToyDemoConfig)
    _add_dataclass_flags(cmd["demo"], DemoConfig)
    _preset_flags(cmd["train"])
    _cluster_flags(cmd["train"])
    _preset_flags(cmd["sample"])
    s = cmd["sample"]
    s.add_argument("--per-class", type=int, default=8, help="samples per class (default: 8)")
    s.add_argument("--sampler", choices=sorted(SAMPLERS), default=None,
                   help="a sampler of diffusion_jax.sampling.SAMPLERS that runs on the preset's path "
                        "(default: ddim for diffusion presets, euler for flow presets)")
    s.add_argument("--sampler-steps", type=int, default=50,
                   help="DDIM / Euler / Heun steps (default: 50; DDPM uses all T)")
    s.add_argument("--scale", type=float, default=None, help="CFG scale s, 1 = conditional (default: preset's)")
    s.add_argument("--eta", type=float, default=0.0, help="DDIM eta in [0, 1] (default: 0)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="outputs/samples", help="output prefix: writes PREFIX.png and PREFIX.npz")
    e = cmd["eval"]
    e.add_argument("samples", help="an .npz with 'images' (N, H, W, C) in [-1, 1] and 'labels' (N,)")
    e.add_argument("--dataset", default="mnist", help="data set the samples imitate (default: mnist)")
    cmd["data"].add_argument("--name", default=None, help="only this data set")
    for name, module in MODULE_COMMANDS.items():
        importlib.import_module(module).add_arguments(cmd[name])
    return parser


def _train(args):
    from diffusion_jax import distributed

    # Before anything touches a JAX device; a no-op unless a cluster is asked for.
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    import jax

    from diffusion_jax import pipeline

    preset = pipeline.get_preset(args.preset, **({"steps": args.steps} if args.steps else {}))
    pipeline.train(preset, progress=distributed.is_main_process())
    if distributed.is_main_process():
        procs = f", {jax.process_count()} processes" if jax.process_count() > 1 else ""
        print(f"trained {preset.name} ({preset.train.steps} steps{procs}): {pipeline.run_dir(preset)}")


def _sample(args):
    import jax
    import numpy as np

    from diffusion_jax import pipeline, provenance, viz

    viz.use_headless_backend()
    import matplotlib.pyplot as plt

    if args.per_class < 1:
        raise ValueError(f"--per-class must be >= 1, got {args.per_class}")
    preset = pipeline.get_preset(args.preset, **({"steps": args.steps} if args.steps else {}))
    state = pipeline.load_trained(preset)
    labels = np.repeat(np.arange(pipeline.null_label(preset)), args.per_class)
    grid_opts = {"eta": args.eta} if args.eta else {}
    images = pipeline.sample(jax.random.key(args.seed), state, preset, labels, sampler=args.sampler,
                             num_steps=args.sampler_steps, guidance_scale=args.scale, **grid_opts)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    rec = provenance.record(command="sample", preset=preset.name, fingerprint=preset.fingerprint(),
                            dataset=preset.dataset, seed=args.seed, sampler=args.sampler or preset.samplers[0],
                            num_steps=args.sampler_steps, eta=args.eta,
                            guidance_scale=preset.guidance_scale if args.scale is None else args.scale)
    provenance.savez(args.out + ".npz", rec, images=images, labels=labels)
    fig, ax = plt.subplots(figsize=(args.per_class * 0.6, len(set(labels)) * 0.6))
    viz.show_images(images, args.per_class, ax, title=f"{preset.name} (synthetic)")
    viz.save_figure(fig, args.out + ".png", rec, dpi=120)
    print(f"wrote {args.out}.png and {args.out}.npz ({len(images)} images)")


def _eval(args):
    import numpy as np

    from diffusion_jax import metrics

    with np.load(args.samples, allow_pickle=False) as f:
        if "images" not in f:
            raise ValueError(f"{args.samples} has no 'images' array (found {sorted(f.files)})")
        images, labels = f["images"], (f["labels"] if "labels" in f else None)
    from diffusion_jax.demo import EVAL_KEY

    scores = metrics.score(EVAL_KEY, images, labels, args.dataset)
    print(json.dumps({k: float(v) if isinstance(v, float) else v for k, v in scores.items()}, indent=1))


def _data(args):
    from diffusion_jax import data

    for name in [args.name] if args.name else data.NAMES:
        for split in data.SPLITS:
            try:
                ds = data.load_dataset(name, split)
                print(f"{name:14s} {split:5s} {len(ds):6d} images {ds.images.shape[1:]}  from {ds.source}")
            except FileNotFoundError as err:
                print(f"{name:14s} {split:5s} NOT FOUND\n{err}\n")


def main(argv=None) -> int:
    _use_all_cores()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "toy":
            from diffusion_jax import toy_demo

            cfg = _from_args(toy_demo.ToyDemoConfig, args)
            if cfg.num_samples < 1:
                raise ValueError(f"--num-samples must be positive, got {cfg.num_samples}")
            stats = toy_demo.run(cfg)
            for name, s in stats["samplers"].items():
                print(f"{name:28s} weights {s['weights']}  ({s['denoiser_evaluations']} evals, {s['run_s']} s)")
            print(f"true weights {stats['truth']['weights']}; wrote {cfg.out_dir}/samplers.png, trajectories.png, stats.json")
        elif args.command == "demo":
            from diffusion_jax import demo

            cfg = _from_args(demo.DemoConfig, args)
            if demo.fast_mode() and not cfg.fast:
                cfg = dataclasses.replace(cfg, fast=True)
            result = demo.run(cfg)
            keys = ("fid", "kid_mean", "accuracy", "nn_ratio", "param_count", "timings_s")
            print(json.dumps({k: result[k] for k in keys}, indent=1))
            print(f"wrote {cfg.out_dir}/samples.png, quality.png, samples.npz, metrics.json")
        elif args.command in MODULE_COMMANDS:
            importlib.import_module(MODULE_COMMANDS[args.command]).run(args)
        else:
            {"train": _train, "sample": _sample, "eval": _eval, "data": _data}[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"diffusion-jax {args.command}: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
