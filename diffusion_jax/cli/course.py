"""The course commands: ``progress`` (a learner's own notebooks), ``quiz`` and ``report``
(an instructor's closed-book session). Their flags and work live in
:mod:`diffusion_jax.exercises`; each module checks its flags before any work and raises
``ValueError`` naming the flag, which this shell reports as a usage error (status 2)."""

from __future__ import annotations

import importlib

from diffusion_jax.cli._common import Command, UsageError

__all__ = ["course_command"]


def course_command(module: str, summary: str, description: str = "") -> Command:
    """A :class:`Command` running ``diffusion_jax.exercises.<module>``'s ``add_arguments``/``run``."""

    def load():
        return importlib.import_module(f"diffusion_jax.exercises.{module}")

    def flags(parser):
        load().add_arguments(parser)

    def run(args):
        try:
            return load().run(args)
        except ValueError as err:  # the modules validate their flags first: a usage error
            raise UsageError(str(err)) from err

    return Command(summary, flags, run, description)
