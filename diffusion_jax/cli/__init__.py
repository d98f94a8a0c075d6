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

Commands live in :data:`COMMANDS` (name -> :class:`Command`: a summary, a function that
adds its flags, a function that runs it); a command's flags are added only when that
command runs, so ``diffusion-jax eval`` never imports the models. The commands that run
models are in :mod:`.models`, those that read files in :mod:`.files`, what they share in
:mod:`._common`. Before JAX starts, the CPU is split into one XLA device per core so
training shards its batch over all of them (set ``XLA_FLAGS`` yourself to override).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from diffusion_jax._version import __version__
from diffusion_jax.cli._common import DEBUG_ENV, MAX_SEED, PROG, Command, Parser, UsageError, one_line, use_all_cores
from diffusion_jax.cli.course import course_command
from diffusion_jax.cli.files import data_flags, eval_flags, run_data, run_eval
from diffusion_jax.cli.models import (demo_flags, run_demo, run_sample, run_toy, run_train, sample_flags, toy_flags,
                                      train_flags)

__all__ = ["COMMANDS", "Command", "UsageError", "build_parser", "main", "PROG", "DEBUG_ENV", "MAX_SEED"]

# ------------------------------------------------------------------------------- the table

#: Every command: name -> Command. A new command is one entry here.
COMMANDS: dict[str, Command] = {
    "toy": Command("every sampler on an exact 2-D toy (no training, ~20 s): samplers.png, stats.json",
                   toy_flags, run_toy),
    "demo": Command("the main job: train a class-conditional model on MNIST, sample every digit, score it",
                    demo_flags, run_demo,
                    "Trains (or loads this machine's finished run from the cache), samples --per-class "
                    "images of every class with DDIM and guidance, scores them against held-out digits, "
                    "and writes samples.png, samples.npz, quality.png and metrics.json to --out-dir."),
    "train": Command("train a preset, or load it: shipped weights, then this machine's cache", train_flags, run_train,
                     "Without --retrain a preset with shipped weights (data/pretrained/) is loaded, not "
                     "trained. A finished run in the cache (data/checkpoints/, or $DIFFUSION_JAX_CACHE) is "
                     "loaded; an interrupted one resumes."),
    "sample": Command("sample a trained preset: samples.png (a grid, one row per class) and samples.npz (all)",
                      sample_flags, run_sample),
    "eval": Command("score an .npz of samples: domain FID/KID, class accuracy, memorisation", eval_flags, run_eval,
                    "Prints the scores as JSON. The reference classifier is the shipped one (trained and "
                    "cached on first use if missing), so the same file always gets the same numbers."),
    "data": Command("show where each data set is found, or how to get it", data_flags, run_data),
    "progress": course_command("progress", "grade your saved lesson notebooks: solved / attempted / not started "
                                           "per lesson"),
    "quiz": course_command("quiz", "build a closed-book quiz notebook from chosen lessons (for a class)"),
    "report": course_command("report", "grade a folder of participants' quiz notebooks into a class report "
                                       "(CSV + figure)"),
}

_EPILOG = f"""\
exit status: 0 done, 2 bad flags or input (one line on stderr), 1 a failure while working.
--debug or {DEBUG_ENV}=1 prints the traceback of any failure.
Also runs as `python -m diffusion_jax`. Each command has its own --help.
environment: DIFFUSION_JAX_CACHE (trained-model cache root, default data/), DIFFUSION_JAX_DATA
(data sets), DIFFUSION_JAX_FAST=1 (tiny demo), XLA_FLAGS (default: one XLA device per core)."""


def build_parser(only=None) -> argparse.ArgumentParser:
    """The parser; ``only`` (a set of command names) limits which commands get their flags."""
    parser = Parser(prog=PROG, description="Diffusion models in JAX: the course's tools.", epilog=_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (also {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
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
        use_all_cores()
        return int(COMMANDS[args.command].run(args) or 0)
    except UsageError as err:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
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
