"""What every command shares: the error types, the one-line parser, and the common flags."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from collections.abc import Callable

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


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (the flag and what is wrong), status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text) -> str:
    return " ".join(str(text).split())


@contextlib.contextmanager
def usage():
    """Inside: a ValueError/TypeError from a check is the user's input, so a usage error."""
    try:
        yield
    except (ValueError, TypeError) as err:
        raise UsageError(one_line(err)) from err


def use_all_cores():
    if "XLA_FLAGS" not in os.environ and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"


# ------------------------------------------------------------------------------ shared flags


def preset_flag(p):
    from diffusion_jax.presets import PRESETS

    p.add_argument("--preset", default="mnist-unet", choices=sorted(PRESETS), metavar="NAME",
                   help="what to train or sample: data set, network and recipe; one of "
                        f"{', '.join(sorted(PRESETS))} (default: %(default)s)")


def steps_flag(p, what):
    p.add_argument("--steps", type=int, default=0, metavar="N",
                   help=f"training steps {what}; 0 = the preset's own count (default: %(default)s)")


def seed_flag(p, what):
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help=f"seed of the random key that {what}; 0..2**32-1, same seed, same result "
                        "(default: %(default)s)")


def out_dir_flag(p, default, files):
    p.add_argument("--out-dir", default=default, metavar="DIR",
                   help=f"folder to write {', '.join(files)} into; created if missing, files of these "
                        "names are replaced (default: %(default)s)")


def guidance_flag(p, default, alias=False):
    shown = "the preset's" if default is None else "%(default)s"
    p.add_argument("--guidance-scale", type=float, default=default, metavar="S",
                   help="classifier-free guidance scale s (diffusers' convention): 1 = the plain conditional "
                        f"model, 0 = unconditional, larger = closer to the class; the paper's w = s - 1 "
                        f"(default: {shown})")
    if alias:  # the old spelling, kept working but not advertised
        p.add_argument("--scale", type=float, dest="guidance_scale", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)


def grid_flags(p, per_class):
    p.add_argument("--per-class", type=int, default=per_class, metavar="N",
                   help="samples drawn for every class; all of them go into the .npz (default: %(default)s)")
    p.add_argument("--grid-columns", type=int, default=10, metavar="N",
                   help="samples per class shown in the PNG, one row per class (at most --per-class; "
                        "default: %(default)s)")


def check_seed(seed):
    from diffusion_jax._checks import check_int

    with usage():
        check_int(seed, name="--seed", min=0, max=MAX_SEED)


def check_cache_root():
    """The trained-model cache must be a writable folder before training starts."""
    from diffusion_jax import paths
    from diffusion_jax._checks import check_output_dir

    where = f"the model cache ({'$' + paths.ENV_VAR if os.environ.get(paths.ENV_VAR) else 'data/'})"
    with usage():
        check_output_dir(paths.cache_root(), name=where)


def get_preset(args):
    from diffusion_jax import pipeline
    from diffusion_jax._checks import check_int

    with usage():
        steps = check_int(args.steps, name="--steps", min=0)
        return pipeline.get_preset(args.preset, **({"steps": steps} if steps else {}))


