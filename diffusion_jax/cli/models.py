"""The commands that run models: toy, demo, train, sample."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import tempfile

from diffusion_jax.cli._common import (UsageError, check_cache_root, check_seed, get_preset, grid_flags,
                                       guidance_flag, out_dir_flag, preset_flag, seed_flag, steps_flag, usage)

# ------------------------------------------------------------------------------------- toy


def toy_flags(p):
    from diffusion_jax.schedules import SCHEDULE_NAMES
    from diffusion_jax.toy import DEFAULT_MIXTURE
    from diffusion_jax.toy_demo import MAX_SAMPLES, OUTPUT_FILES, ToyDemoConfig

    d = ToyDemoConfig()
    K = len(DEFAULT_MIXTURE["weights"])
    p.add_argument("--num-samples", type=int, default=d.num_samples, metavar="N",
                   help=f"points drawn by each sampler, 1..{MAX_SAMPLES:,}; the weight errors shrink like "
                        "1/sqrt(N) (default: %(default)s)")
    seed_flag(p, "draws x_T (the same for every sampler) and the noise")
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULE_NAMES, metavar="NAME",
                   help=f"noise schedule of the diffusion samplers: {', '.join(SCHEDULE_NAMES)} "
                        "(default: %(default)s)")
    guidance_flag(p, d.guidance_scale)
    p.add_argument("--guided-label", type=int, default=d.guided_label, metavar="K",
                   help=f"mixture component (0..{K - 1}) that the guided panel asks for (default: %(default)s)")
    out_dir_flag(p, d.out_dir, OUTPUT_FILES)


def run_toy(args):
    from diffusion_jax import toy_demo

    cfg = toy_demo.ToyDemoConfig(num_samples=args.num_samples, seed=args.seed, schedule=args.schedule,
                                 guidance_scale=args.guidance_scale, guided_label=args.guided_label,
                                 out_dir=args.out_dir)
    with usage():
        toy_demo.check_config(cfg, as_flags=True)
    stats = toy_demo.run(cfg)
    for name, s in stats["samplers"].items():
        print(f"{name:28s} weights {s['weights']}  ({s['denoiser_evaluations']} evals, {s['run_s']} s)")
    print(f"true weights {stats['truth']['weights']}; wrote {cfg.out_dir}/samplers.png, trajectories.png, stats.json")


# ------------------------------------------------------------------------------------ demo


def demo_flags(p):
    from diffusion_jax.demo import OUTPUT_FILES, DemoConfig

    d = DemoConfig()
    preset_flag(p)
    steps_flag(p, "when the model is trained here")
    grid_flags(p, d.per_class)
    from diffusion_jax.sampling import SAMPLERS

    p.add_argument("--sampler", choices=sorted(SAMPLERS), default=d.sampler,
                   help="the sampler that draws the demo's images (default: %(default)s)")
    p.add_argument("--sampler-steps", type=int, default=d.sampler_steps, metavar="N",
                   help="sampler steps per image, 1..1000 (default: %(default)s)")
    guidance_flag(p, d.guidance_scale)
    p.add_argument("--toy", action=argparse.BooleanOptionalAction, default=d.toy,
                   help="draw the exact-toy sampler figure first, into --toy-out-dir (default: on)")
    p.add_argument("--toy-out-dir", default=d.toy_out_dir, metavar="DIR",
                   help="folder for the toy figure's samplers.png, trajectories.png, stats.json "
                        "(default: %(default)s)")
    p.add_argument("--train", action=argparse.BooleanOptionalAction, default=d.train,
                   help="train the model here (or load this machine's finished run from the cache); "
                        "--no-train samples the shipped reference weights instead (default: train)")
    seed_flag(p, "draws the samples")
    out_dir_flag(p, d.out_dir, OUTPUT_FILES)
    p.add_argument("--fast", action="store_true", default=d.fast,
                   help="a smoke run of about a minute: 30 training steps, 4 samples per class, 5 sampler "
                        "steps (also on with DIFFUSION_JAX_FAST=1 or CI=true)")


def run_demo(args):
    from diffusion_jax import demo

    cfg = demo.DemoConfig(preset=args.preset, steps=args.steps, per_class=args.per_class,
                          grid_columns=args.grid_columns, sampler=args.sampler, sampler_steps=args.sampler_steps,
                          guidance_scale=args.guidance_scale, toy=args.toy, toy_out_dir=args.toy_out_dir,
                          train=args.train, seed=args.seed,
                          out_dir=args.out_dir, fast=args.fast or demo.fast_mode())
    with usage():
        demo.check_config(cfg, as_flags=True)
    if cfg.train:
        check_cache_root()
    result = demo.run(cfg)
    keys = ("fid", "kid_mean", "accuracy", "nn_ratio", "param_count", "timings_s")
    print(json.dumps({k: result[k] for k in keys if k in result}, indent=1))
    print(f"wrote {cfg.out_dir}/samples.png, quality.png, samples.npz, metrics.json")


# ----------------------------------------------------------------------------------- train


def train_flags(p):
    preset_flag(p)
    steps_flag(p, "to run")
    p.add_argument("--retrain", action="store_true",
                   help="train this machine's own model even when shipped weights for the preset exist "
                        "(a finished run in the cache is still loaded, not repeated)")
    g = p.add_argument_group("multi-process training (JAX's distributed runtime; start one process per id)")
    g.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                   help="address of process 0 (default: $JAX_COORDINATOR_ADDRESS; none = one process)")
    g.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="processes in the run (default: $JAX_NUM_PROCESSES, else 1)")
    g.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process's id, 0..N-1 (default: $JAX_PROCESS_ID, else 0)")



def finished_in_cache(preset) -> bool:
    from diffusion_jax import checkpoint, pipeline

    last = checkpoint.latest_checkpoint(pipeline.run_dir(preset) / "checkpoints")
    return last is not None and checkpoint.read_metadata(last).get("step") == preset.train.steps


def run_train(args):
    from diffusion_jax import distributed

    preset = get_preset(args)
    with usage():
        distributed.cluster_spec(args.coordinator_address, args.num_processes, args.process_id)
    check_cache_root()
    # Before anything touches a JAX device; a no-op unless a cluster is asked for.
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    import jax

    from diffusion_jax import pipeline, pretrained

    cached = finished_in_cache(preset)
    state = pipeline.train(preset, retrain=args.retrain, progress=distributed.is_main_process())
    if not distributed.is_main_process():
        return
    if state.opt_state is None:  # only shipped weights come without an optimizer state
        print(f"{preset.name}: loaded the shipped weights ({pretrained.directory() / pretrained.find(preset.name)['file']}, "
              f"{int(state.step)} steps); nothing was trained. `--retrain` trains this machine's own model.")
    elif cached:
        print(f"{preset.name}: already trained here ({preset.train.steps} steps), loaded from the cache: "
              f"{pipeline.run_dir(preset)}; delete that folder to train it again")
    else:
        procs = f", {jax.process_count()} processes" if jax.process_count() > 1 else ""
        print(f"trained {preset.name} ({preset.train.steps} steps{procs}): {pipeline.run_dir(preset)}")


# ---------------------------------------------------------------------------------- sample

SAMPLE_FILES = ("samples.png", "samples.npz")


def sample_flags(p):
    from diffusion_jax.pipeline import SOURCES
    from diffusion_jax.sampling import SAMPLERS

    preset_flag(p)
    steps_flag(p, "of the model to sample (one trained with `train --steps N`)")
    p.add_argument("--source", default="auto", choices=SOURCES,
                   help="where the weights come from: shipped (data/pretrained/), cache (a model trained on "
                        "this machine), auto = shipped, else the cache (default: %(default)s)")
    grid_flags(p, 8)
    p.add_argument("--sampler", default=None, choices=sorted(SAMPLERS), metavar="NAME",
                   help=f"one of {', '.join(sorted(SAMPLERS))}, if it runs on the preset's model "
                        "(default: ddim for diffusion presets, euler for flow presets)")
    p.add_argument("--sampler-steps", type=int, default=None, metavar="N",
                   help="steps of the sampler, 1..1000 on a diffusion model (default: the preset's, 50; "
                        "ddpm: all 1000)")
    guidance_flag(p, None, alias=True)
    p.add_argument("--eta", type=float, default=0.0, metavar="ETA",
                   help="DDIM's noise level in [0, 1]: 0 deterministic, 1 like DDPM; --sampler ddim only "
                        "(default: %(default)s)")
    seed_flag(p, "draws the samples")
    out_dir_flag(p, "outputs/sample", SAMPLE_FILES)
    p.add_argument("--out", dest="out_prefix", default=None, help=argparse.SUPPRESS)  # old: PREFIX.png/.npz


def sample_outputs(args) -> tuple[pathlib.Path, dict[str, str]]:
    """(folder, {kind: file name}) from --out-dir, or from the old --out PREFIX."""
    from diffusion_jax._checks import check_output_dir

    if args.out_prefix is None:
        with usage():
            folder = check_output_dir(args.out_dir, name="--out-dir", files=SAMPLE_FILES)
        return folder, {"png": SAMPLE_FILES[0], "npz": SAMPLE_FILES[1]}
    if args.out_dir != "outputs/sample":
        raise UsageError("give --out-dir DIR or the old --out PREFIX, not both")
    prefix = str(args.out_prefix)
    base = os.path.basename(prefix)
    if not base or base in (".", "..") or prefix.endswith(os.sep) or os.path.isdir(prefix):
        raise UsageError(f"--out is a file prefix (it writes PREFIX.png and PREFIX.npz), got the folder "
                         f"{prefix!r}; use --out-dir {prefix}")
    names = {"png": base + ".png", "npz": base + ".npz"}
    with usage():
        folder = check_output_dir(os.path.dirname(prefix) or ".", name="--out", files=tuple(names.values()))
    return folder, names


def check_sample(args, preset):
    from diffusion_jax import sampling, schedules
    from diffusion_jax._checks import check_int, check_number

    with usage():
        check_int(args.per_class, name="--per-class", min=1)
        check_int(args.grid_columns, name="--grid-columns", min=1)
        if args.guidance_scale is not None:
            check_number(args.guidance_scale, name="--guidance-scale")
        check_number(args.eta, name="--eta", min=0.0, max=1.0)
    check_seed(args.seed)
    name = args.sampler or preset.samplers[0]
    if preset.path not in sampling.SAMPLERS[name].paths:
        kind = "rectified-flow" if preset.is_flow else "diffusion"
        raise UsageError(f"--sampler {name} does not run on {preset.name}, a {kind} model; choose one of "
                         f"{', '.join(preset.samplers)}")
    if args.eta and name != "ddim":
        raise UsageError(f"--eta applies to --sampler ddim only, got --sampler {name}")
    if args.eta and preset.is_flow:
        raise UsageError(f"--eta does not apply to {preset.name}: a flow model is sampled as a deterministic ODE")
    if args.sampler_steps is not None:
        import jax

        # eval_shape reads T without building the schedule on a device.
        top = None if preset.is_flow else jax.eval_shape(lambda: schedules.make_schedule(preset.schedule)).num_timesteps
        with usage():
            check_int(args.sampler_steps, name="--sampler-steps", min=1, max=top)
    return name


def run_sample(args):
    preset = get_preset(args)
    sampler = check_sample(args, preset)
    folder, names = sample_outputs(args)

    import jax
    import numpy as np

    from diffusion_jax import pipeline, provenance, viz

    state = pipeline.load_trained(preset, source=args.source)
    num_classes = pipeline.null_label(preset)
    labels = np.repeat(np.arange(num_classes), args.per_class)  # (N,) 0,0,...,1,1,...
    grid_opts = {"eta": args.eta} if args.eta else {}
    images = pipeline.sample(jax.random.key(args.seed), state, preset, labels, sampler=sampler,
                             num_steps=args.sampler_steps, guidance_scale=args.guidance_scale, **grid_opts)
    scale = preset.guidance_scale if args.guidance_scale is None else args.guidance_scale
    rec = provenance.record(command="sample", preset=preset.name, fingerprint=preset.fingerprint(),
                            dataset=preset.dataset, seed=args.seed, sampler=sampler,
                            num_steps=args.sampler_steps, eta=args.eta, guidance_scale=scale)
    cols = min(args.grid_columns, args.per_class)
    viz.use_headless_backend()
    import matplotlib.pyplot as plt

    shown = viz.class_rows(images, labels, num_classes, cols)  # (K * cols, H, W, C)
    fig, ax = plt.subplots(figsize=(cols * 0.6 + 0.6, num_classes * 0.6 + 0.5))
    viz.show_images(shown, cols, ax, row_labels=range(num_classes), fontsize=8)
    ax.set_ylabel("class")
    ax.set_title(f"{preset.name}, {sampler}, s = {scale:g} (synthetic; first {cols} of {args.per_class} per class)",
                 fontsize=8)
    fig.tight_layout()
    with staged(folder) as tmp:  # both files appear together, or neither does
        provenance.savez(tmp / names["npz"], rec, images=images.astype(np.float32), labels=labels.astype(np.int32))
        viz.save_figure(fig, tmp / names["png"], rec, dpi=120)
    plt.close(fig)
    print(f"wrote {folder / names['png']} ({cols} of {args.per_class} per class shown) and "
          f"{folder / names['npz']} (all {len(images)} images)")


@contextlib.contextmanager
def staged(folder: pathlib.Path):
    """A temporary folder inside ``folder``; on success its files are moved in, else deleted."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=folder, prefix=".partial-"))
    try:
        yield tmp
        for f in sorted(tmp.iterdir()):
            os.replace(f, folder / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


