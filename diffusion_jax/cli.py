"""Command line: ``diffusion-jax <command> [options]``.

The shell is thin: it parses flags into the frozen config dataclasses of the library
and calls one function. Run ``diffusion-jax <command> --help`` for each command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def _add_config_flags(parser: argparse.ArgumentParser, config_cls) -> None:
    """One ``--flag`` per dataclass field, typed from its default."""
    for field in dataclasses.fields(config_cls):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        kind = type(default) if default is not None else str
        parser.add_argument(flag, type=kind, default=default, help=f"(default: {default})")


def _config_from_args(config_cls, args):
    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})


def build_parser() -> argparse.ArgumentParser:
    from diffusion_jax.toy_demo import ToyDemoConfig

    parser = argparse.ArgumentParser(
        prog="diffusion-jax",
        description="Diffusion models in JAX: run the course's demos and tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    toy = sub.add_parser(
        "toy",
        help="sample a 2-D Gaussian mixture with every sampler and the exact denoiser",
        description=(
            "Sample a 2-D Gaussian mixture with DDPM, DDIM, rectified flow and CFG, using the "
            "analytically optimal denoiser (no training). Writes samplers.png, "
            "trajectories.png and stats.json to --out-dir."
        ),
    )
    _add_config_flags(toy, ToyDemoConfig)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "toy":
        from diffusion_jax import toy_demo

        try:
            cfg = _config_from_args(toy_demo.ToyDemoConfig, args)
            if cfg.num_samples < 1:
                raise ValueError(f"--num-samples must be positive, got {cfg.num_samples}")
            stats = toy_demo.run(cfg)
        except ValueError as err:
            parser.error(str(err))
        summary = {name: {"weights": s["weights"], "evals": s["denoiser_evaluations"], "run_s": s["run_s"]}
                   for name, s in stats["samplers"].items()}
        print(json.dumps({"true_weights": stats["truth"]["weights"], "samplers": summary}, indent=1))
        print(f"wrote {cfg.out_dir}/samplers.png, trajectories.png, stats.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
