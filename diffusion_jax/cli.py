"""Command line: ``diffusion-jax <command> [options]`` (or ``python -m diffusion_jax``).

The shell is thin: flags become the library's frozen configs and presets, then one
library function runs. Every flag and input file is checked before any work starts, and
a problem is reported as one line on stderr that names the flag:

* exit status 0: done; 2: a usage error (a bad flag, value, path or input file);
  1: a failure while working (no trained weights yet, a data set not found, a full
  disk). Expected failures never print a traceback; ``--debug`` (or
  ``DIFFUSION_JAX_DEBUG=1``) shows it for any failure.
* One flag scheme for every command: ``--preset``, ``--steps`` (training steps, 0 = the
  preset's), ``--per-class``, ``--grid-columns``, ``--sampler``, ``--sampler-steps``,
  ``--guidance-scale``, ``--eta``, ``--seed``, ``--out-dir`` (a folder; file names inside
  are fixed), ``--dataset``. Old spellings still work, hidden: ``sample --scale`` and
  ``--out PREFIX``, ``data --name``.

Commands live in :data:`COMMANDS` (name -> :class:`Command`); a command's flags are added
only when that command runs, so ``diffusion-jax eval`` never imports the models. Before
JAX starts, the CPU is split into one XLA device per core so training shards its batch
over all of them (set ``XLA_FLAGS`` yourself to override).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable

from diffusion_jax._version import __version__

DEBUG_ENV = "DIFFUSION_JAX_DEBUG"
PROG = "diffusion-jax"
#: The highest seed: seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1


class UsageError(Exception):
    """A bad flag, value, path or input file: exit status 2, one line, no traceback."""


@dataclasses.dataclass(frozen=True)
class Command:
    summary: str  # one line for `diffusion-jax --help`
    flags: Callable[[argparse.ArgumentParser], None]  # adds the command's flags
    run: Callable[[argparse.Namespace], int | None]  # checks its flags first, then works
    description: str = ""  # more text for `diffusion-jax COMMAND --help`


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (the flag and what is wrong), status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text) -> str:
    return " ".join(str(text).split())


@contextlib.contextmanager
def _usage():
    """Inside: a ValueError/TypeError from a check is the user's input, so a usage error."""
    try:
        yield
    except (ValueError, TypeError) as err:
        raise UsageError(_one_line(err)) from err


def _use_all_cores():
    if "XLA_FLAGS" not in os.environ and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"


# ------------------------------------------------------------------------------ shared flags


def _preset_flag(p):
    from diffusion_jax.presets import PRESETS

    p.add_argument("--preset", default="mnist-unet", choices=sorted(PRESETS), metavar="NAME",
                   help="what to train or sample: data set, network and recipe; one of "
                        f"{', '.join(sorted(PRESETS))} (default: %(default)s)")


def _steps_flag(p, what):
    p.add_argument("--steps", type=int, default=0, metavar="N",
                   help=f"training steps {what}; 0 = the preset's own count (default: %(default)s)")


def _seed_flag(p, what):
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help=f"seed of the random key that {what}; 0..2**32-1, same seed, same result "
                        "(default: %(default)s)")


def _out_dir_flag(p, default, files):
    p.add_argument("--out-dir", default=default, metavar="DIR",
                   help=f"folder to write {', '.join(files)} into; created if missing, files of these "
                        "names are replaced (default: %(default)s)")


def _guidance_flag(p, default, alias=False):
    shown = "the preset's" if default is None else "%(default)s"
    p.add_argument("--guidance-scale", type=float, default=default, metavar="S",
                   help="classifier-free guidance scale s (diffusers' convention): 1 = the plain conditional "
                        f"model, 0 = unconditional, larger = closer to the class; the paper's w = s - 1 "
                        f"(default: {shown})")
    if alias:  # the old spelling, kept working but not advertised
        p.add_argument("--scale", type=float, dest="guidance_scale", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)


def _grid_flags(p, per_class):
    p.add_argument("--per-class", type=int, default=per_class, metavar="N",
                   help="samples drawn for every class; all of them go into the .npz (default: %(default)s)")
    p.add_argument("--grid-columns", type=int, default=10, metavar="N",
                   help="samples per class shown in the PNG, one row per class (at most --per-class; "
                        "default: %(default)s)")


def _check_seed(seed):
    from diffusion_jax._checks import check_int

    with _usage():
        check_int(seed, name="--seed", min=0, max=MAX_SEED)


def _check_cache_root():
    """The trained-model cache must be a writable folder before training starts."""
    from diffusion_jax import paths
    from diffusion_jax._checks import check_output_dir

    where = f"the model cache ({'$' + paths.ENV_VAR if os.environ.get(paths.ENV_VAR) else 'data/'})"
    with _usage():
        check_output_dir(paths.cache_root(), name=where)


# ------------------------------------------------------------------------------------- toy


def _toy_flags(p):
    from diffusion_jax.schedules import SCHEDULE_NAMES
    from diffusion_jax.toy import DEFAULT_MIXTURE
    from diffusion_jax.toy_demo import MAX_SAMPLES, OUTPUT_FILES, ToyDemoConfig

    d = ToyDemoConfig()
    K = len(DEFAULT_MIXTURE["weights"])
    p.add_argument("--num-samples", type=int, default=d.num_samples, metavar="N",
                   help=f"points drawn by each sampler, 1..{MAX_SAMPLES:,}; the weight errors shrink like "
                        "1/sqrt(N) (default: %(default)s)")
    _seed_flag(p, "draws x_T (the same for every sampler) and the noise")
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULE_NAMES, metavar="NAME",
                   help=f"noise schedule of the diffusion samplers: {', '.join(SCHEDULE_NAMES)} "
                        "(default: %(default)s)")
    _guidance_flag(p, d.guidance_scale)
    p.add_argument("--guided-label", type=int, default=d.guided_label, metavar="K",
                   help=f"mixture component (0..{K - 1}) that the guided panel asks for (default: %(default)s)")
    _out_dir_flag(p, d.out_dir, OUTPUT_FILES)


def _toy(args):
    from diffusion_jax import toy_demo

    cfg = toy_demo.ToyDemoConfig(num_samples=args.num_samples, seed=args.seed, schedule=args.schedule,
                                 guidance_scale=args.guidance_scale, guided_label=args.guided_label,
                                 out_dir=args.out_dir)
    with _usage():
        toy_demo.check_config(cfg, as_flags=True)
    stats = toy_demo.run(cfg)
    for name, s in stats["samplers"].items():
        print(f"{name:28s} weights {s['weights']}  ({s['denoiser_evaluations']} evals, {s['run_s']} s)")
    print(f"true weights {stats['truth']['weights']}; wrote {cfg.out_dir}/samplers.png, trajectories.png, stats.json")


# ------------------------------------------------------------------------------------ demo


def _demo_flags(p):
    from diffusion_jax.demo import OUTPUT_FILES, DemoConfig

    d = DemoConfig()
    _preset_flag(p)
    _steps_flag(p, "when the model is trained here")
    _grid_flags(p, d.per_class)
    p.add_argument("--sampler-steps", type=int, default=d.sampler_steps, metavar="N",
                   help="DDIM steps (eta = 0) per sample, 1..1000 (default: %(default)s)")
    _guidance_flag(p, d.guidance_scale)
    p.add_argument("--train", action=argparse.BooleanOptionalAction, default=d.train,
                   help="train the model here (or load this machine's finished run from the cache); "
                        "--no-train samples the shipped reference weights instead (default: train)")
    _seed_flag(p, "draws the samples")
    _out_dir_flag(p, d.out_dir, OUTPUT_FILES)
    p.add_argument("--fast", action="store_true", default=d.fast,
                   help="a smoke run of about a minute: 30 training steps, 4 samples per class, 5 sampler "
                        "steps (also on with DIFFUSION_JAX_FAST=1 or CI=true)")


def _demo(args):
    from diffusion_jax import demo

    cfg = demo.DemoConfig(preset=args.preset, steps=args.steps, per_class=args.per_class,
                          grid_columns=args.grid_columns, sampler_steps=args.sampler_steps,
                          guidance_scale=args.guidance_scale, train=args.train, seed=args.seed,
                          out_dir=args.out_dir, fast=args.fast or demo.fast_mode())
    with _usage():
        demo.check_config(cfg, as_flags=True)
    if cfg.train:
        _check_cache_root()
    result = demo.run(cfg)
    keys = ("fid", "kid_mean", "accuracy", "nn_ratio", "param_count", "timings_s")
    print(json.dumps({k: result[k] for k in keys if k in result}, indent=1))
    print(f"wrote {cfg.out_dir}/samples.png, quality.png, samples.npz, metrics.json")


# ----------------------------------------------------------------------------------- train


def _train_flags(p):
    _preset_flag(p)
    _steps_flag(p, "to run")
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


def _get_preset(args):
    from diffusion_jax import pipeline
    from diffusion_jax._checks import check_int

    with _usage():
        steps = check_int(args.steps, name="--steps", min=0)
        return pipeline.get_preset(args.preset, **({"steps": steps} if steps else {}))


def _finished_in_cache(preset) -> bool:
    from diffusion_jax import checkpoint, pipeline

    last = checkpoint.latest_checkpoint(pipeline.run_dir(preset) / "checkpoints")
    return last is not None and checkpoint.read_metadata(last).get("step") == preset.train.steps


def _train(args):
    from diffusion_jax import distributed

    preset = _get_preset(args)
    with _usage():
        distributed.cluster_spec(args.coordinator_address, args.num_processes, args.process_id)
    _check_cache_root()
    # Before anything touches a JAX device; a no-op unless a cluster is asked for.
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    import jax

    from diffusion_jax import pipeline, pretrained

    cached = _finished_in_cache(preset)
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


def _sample_flags(p):
    from diffusion_jax.pipeline import SOURCES
    from diffusion_jax.sampling import SAMPLERS

    _preset_flag(p)
    _steps_flag(p, "of the model to sample (one trained with `train --steps N`)")
    p.add_argument("--source", default="auto", choices=SOURCES,
                   help="where the weights come from: shipped (data/pretrained/), cache (a model trained on "
                        "this machine), auto = shipped, else the cache (default: %(default)s)")
    _grid_flags(p, 8)
    p.add_argument("--sampler", default=None, choices=sorted(SAMPLERS), metavar="NAME",
                   help=f"one of {', '.join(sorted(SAMPLERS))}, if it runs on the preset's model "
                        "(default: ddim for diffusion presets, euler for flow presets)")
    p.add_argument("--sampler-steps", type=int, default=None, metavar="N",
                   help="steps of the sampler, 1..1000 on a diffusion model (default: the preset's, 50; "
                        "ddpm: all 1000)")
    _guidance_flag(p, None, alias=True)
    p.add_argument("--eta", type=float, default=0.0, metavar="ETA",
                   help="DDIM's noise level in [0, 1]: 0 deterministic, 1 like DDPM; --sampler ddim only "
                        "(default: %(default)s)")
    _seed_flag(p, "draws the samples")
    _out_dir_flag(p, "outputs/sample", SAMPLE_FILES)
    p.add_argument("--out", dest="out_prefix", default=None, help=argparse.SUPPRESS)  # old: PREFIX.png/.npz


def _sample_outputs(args) -> tuple[pathlib.Path, dict[str, str]]:
    """(folder, {kind: file name}) from --out-dir, or from the old --out PREFIX."""
    from diffusion_jax._checks import check_output_dir

    if args.out_prefix is None:
        with _usage():
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
    with _usage():
        folder = check_output_dir(os.path.dirname(prefix) or ".", name="--out", files=tuple(names.values()))
    return folder, names


def _check_sample(args, preset):
    from diffusion_jax import sampling, schedules
    from diffusion_jax._checks import check_int, check_number

    with _usage():
        check_int(args.per_class, name="--per-class", min=1)
        check_int(args.grid_columns, name="--grid-columns", min=1)
        if args.guidance_scale is not None:
            check_number(args.guidance_scale, name="--guidance-scale")
        check_number(args.eta, name="--eta", min=0.0, max=1.0)
    _check_seed(args.seed)
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
        with _usage():
            check_int(args.sampler_steps, name="--sampler-steps", min=1, max=top)
    return name


def _sample(args):
    preset = _get_preset(args)
    sampler = _check_sample(args, preset)
    folder, names = _sample_outputs(args)

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

    shown = np.concatenate([images[labels == k][:cols] for k in range(num_classes)])  # (K * cols, H, W, C)
    fig, ax = plt.subplots(figsize=(cols * 0.6 + 0.6, num_classes * 0.6 + 0.5))
    viz.show_images(shown, cols, ax, row_labels=range(num_classes), fontsize=8)
    ax.set_ylabel("class")
    ax.set_title(f"{preset.name}, {sampler}, s = {scale:g} (synthetic; first {cols} of {args.per_class} per class)",
                 fontsize=8)
    fig.tight_layout()
    with _staged(folder) as tmp:  # both files appear together, or neither does
        provenance.savez(tmp / names["npz"], rec, images=images.astype(np.float32), labels=labels.astype(np.int32))
        viz.save_figure(fig, tmp / names["png"], rec, dpi=120)
    plt.close(fig)
    print(f"wrote {folder / names['png']} ({cols} of {args.per_class} per class shown) and "
          f"{folder / names['npz']} (all {len(images)} images)")


@contextlib.contextmanager
def _staged(folder: pathlib.Path):
    """A temporary folder inside ``folder``; on success its files are moved in, else deleted."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=folder, prefix=".partial-"))
    try:
        yield tmp
        for f in sorted(tmp.iterdir()):
            os.replace(f, folder / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------ eval

VALUE_RANGE_CHOICES = ("auto", "signed", "unit", "byte")


def _eval_flags(p):
    from diffusion_jax.data import NAMES

    p.add_argument("samples", metavar="SAMPLES",
                   help="an .npz holding 'images' (N, H, W, C) and optionally 'labels' (N,), the intended "
                        "classes (what `diffusion-jax sample` and `demo` write)")
    p.add_argument("--dataset", default="mnist", choices=NAMES,
                   help="the data set the samples imitate; scored against its held-out split with its "
                        "reference classifier (default: %(default)s)")
    p.add_argument("--value-range", default="auto", choices=VALUE_RANGE_CHOICES,
                   help="pixel range of float images: signed = [-1, 1] (what the models produce), unit = "
                        "[0, 1], byte = [0, 255]; auto = signed, or unit/byte with a note when no value is "
                        "negative. Integer images are always byte (default: %(default)s)")


def _load_samples(path_text: str, dataset: str, value_range: str):
    """``(images in [-1, 1], labels or None)`` from the user's .npz, every problem a UsageError."""
    import zipfile

    import numpy as np

    from diffusion_jax import data
    from diffusion_jax._checks import check_labels

    path = pathlib.Path(path_text)
    what = f"SAMPLES {path_text!r}"
    if not path.exists():
        raise UsageError(f"{what}: no such file")
    if path.is_dir():
        raise UsageError(f"{what} is a folder; expected an .npz file such as outputs/sample/samples.npz")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{what} cannot be read (permission denied)")
    if not zipfile.is_zipfile(path):
        kind = "a .npy array" if path.read_bytes()[:6] == b"\x93NUMPY" else "not an .npz archive"
        raise UsageError(f"{what} is {kind}; expected an .npz with an 'images' array "
                         "(np.savez(path, images=..., labels=...))")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f.files:
                raise UsageError(f"{what} has no 'images' array (it holds {sorted(f.files)})")
            images = f["images"]
            labels = f["labels"] if "labels" in f.files else None
    except UsageError:
        raise
    except ValueError as err:  # object (pickled) arrays are refused by allow_pickle=False
        raise UsageError(f"{what} holds an array that needs unpickling, which is never done here ({_one_line(err)})") from err
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise UsageError(f"{what} is a damaged .npz ({_one_line(err)})") from err
    guessed = value_range == "auto" and np.issubdtype(np.asarray(images).dtype, np.floating)
    chosen = data.guess_value_range(images) if value_range == "auto" else value_range
    with _usage():
        images = data.check_images(images, name=f"{path_text}: images", value_range=chosen,
                                   shape=data.IMAGE_SHAPES[dataset], min_count=2, range_name="--value-range")
        if labels is not None:
            labels = check_labels(labels, data.num_classes(dataset), name=f"{path_text}: labels", allow_null=False,
                                  length=len(images))
    if guessed and chosen != "signed":
        lo, hi = data.VALUE_RANGES[chosen]
        print(f"{PROG} eval: note: {path_text}: the float images have no negative value, so they are taken as "
              f"{chosen} pixels ({lo:g}..{hi:g}) and mapped to [-1, 1]; --value-range signed scores them as they are",
              file=sys.stderr)
    return images, labels


def _eval(args):
    images, labels = _load_samples(args.samples, args.dataset, args.value_range)
    import numpy as np

    from diffusion_jax import metrics
    from diffusion_jax.demo import EVAL_KEY

    scores = metrics.score(EVAL_KEY, images, labels, args.dataset, value_range="signed")
    print(json.dumps({k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in scores.items()}, indent=1))


# ------------------------------------------------------------------------------------ data


def _data_flags(p):
    from diffusion_jax.data import NAMES

    p.add_argument("--dataset", default=None, choices=NAMES,
                   help="report only this data set (then the exit status is 1 if a split is missing; "
                        "default: all of them)")
    p.add_argument("--name", dest="dataset", choices=NAMES, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _data(args):
    from diffusion_jax import data

    missing = False
    for name in [args.dataset] if args.dataset else data.NAMES:
        for split in data.SPLITS:
            try:
                ds = data.load_dataset(name, split)
                print(f"{name:14s} {split:5s} {len(ds):6d} images {ds.images.shape[1:]}  from {ds.source}")
            except FileNotFoundError as err:
                missing = True
                print(f"{name:14s} {split:5s} NOT FOUND\n{err}\n")
    return 1 if missing and args.dataset else 0


# ------------------------------------------------------------------------------- the table

#: Every command: name -> Command. A new command is one entry here.
COMMANDS: dict[str, Command] = {
    "toy": Command("every sampler on an exact 2-D toy (no training, ~20 s): samplers.png, stats.json",
                   _toy_flags, _toy),
    "demo": Command("the main job: train a class-conditional model on MNIST, sample every digit, score it",
                    _demo_flags, _demo,
                    "Trains (or loads this machine's finished run from the cache), samples --per-class "
                    "images of every class with DDIM and guidance, scores them against held-out digits, "
                    "and writes samples.png, samples.npz, quality.png and metrics.json to --out-dir."),
    "train": Command("train a preset, or load it: shipped weights, then this machine's cache", _train_flags, _train,
                     "Without --retrain a preset with shipped weights (data/pretrained/) is loaded, not "
                     "trained. A finished run in the cache (data/checkpoints/, or $DIFFUSION_JAX_CACHE) is "
                     "loaded; an interrupted one resumes."),
    "sample": Command("sample a trained preset: samples.png (a grid, one row per class) and samples.npz (all)",
                      _sample_flags, _sample),
    "eval": Command("score an .npz of samples: domain FID/KID, class accuracy, memorisation", _eval_flags, _eval,
                    "Prints the scores as JSON. The reference classifier is the shipped one (trained and "
                    "cached on first use if missing), so the same file always gets the same numbers."),
    "data": Command("show where each data set is found, or how to get it", _data_flags, _data),
}

_EPILOG = f"""\
exit status: 0 done, 2 bad flags or input (one line on stderr), 1 a failure while working.
--debug or {DEBUG_ENV}=1 prints the traceback of any failure.
Also runs as `python -m diffusion_jax`. Each command has its own --help.
environment: DIFFUSION_JAX_CACHE (trained-model cache root, default data/), DIFFUSION_JAX_DATA
(data sets), DIFFUSION_JAX_FAST=1 (tiny demo), XLA_FLAGS (default: one XLA device per core)."""


def build_parser(only=None) -> argparse.ArgumentParser:
    """The parser; ``only`` (a set of command names) limits which commands get their flags."""
    parser = _Parser(prog=PROG, description="Diffusion models in JAX: the course's tools.", epilog=_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (also {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.summary, description=cmd.description or cmd.summary, allow_abbrev=False)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=f"show the traceback of a failure (also {DEBUG_ENV}=1)")
        if only is None or name in only:
            cmd.flags(p)
    return parser


def _command_in(argv) -> str | None:
    """The command named on the line: the first word that is not an option."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def main(argv=None) -> int:
    """Run one command; returns the exit status (0, 1 or 2, see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = _command_in(argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    prog = f"{PROG} {name}" if name else PROG
    try:
        try:
            args = build_parser(only={name} if name else set()).parse_args(argv)
        except SystemExit as done:  # --help, --version, or a usage error already printed
            return done.code if isinstance(done.code, int) else 2
        _use_all_cores()
        return int(COMMANDS[args.command].run(args) or 0)
    except UsageError as err:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a failure while working: one message, the traceback only on request
        if debug:
            traceback.print_exc()
        expected = isinstance(err, (OSError, ValueError, TypeError, RuntimeError, ImportError))
        text = str(err).strip() or type(err).__name__
        hint = "" if expected else f" [{type(err).__name__}; rerun with --debug for the traceback]"
        print(f"{prog}: error: {text}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
