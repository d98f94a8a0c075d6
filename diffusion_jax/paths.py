"""Where the trained-model cache lives: ``data/checkpoints`` and ``data/cache``.

Both sit under one root, the repository's ``data/`` folder (the current directory's when
the package is installed elsewhere). Setting ``DIFFUSION_JAX_CACHE`` moves that root, for
example to an empty temporary folder to see what a fresh clone sees; ``data/pretrained``
and the data sets are not affected.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "REPO_ROOT", "cache_root", "resolve"]

ENV_VAR = "DIFFUSION_JAX_CACHE"
REPO_ROOT = Path(__file__).resolve().parent.parent
_CACHED = ("checkpoints", "cache")  # the subfolders of data/ that ENV_VAR moves


def _base() -> Path:
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else Path.cwd()


def cache_root() -> Path:
    """The folder holding ``checkpoints/`` and ``cache/``: ``$DIFFUSION_JAX_CACHE``, else ``data/``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else _base() / "data"


def resolve(path) -> Path:
    """A cache path as the library uses it: absolute paths stay; ``data/checkpoints/...`` and
    ``data/cache/...`` go under :func:`cache_root`; other relative paths are taken from the
    repository root (else the current directory)."""
    path = Path(path)
    if path.is_absolute():
        return path
    if len(path.parts) >= 2 and path.parts[0] == "data" and path.parts[1] in _CACHED:
        return cache_root().joinpath(*path.parts[1:])
    return _base() / path
