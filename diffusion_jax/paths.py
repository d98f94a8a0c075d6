"""The trained-model cache: where it lives (``data/checkpoints``, ``data/cache``) and how it is used.

Both sit under one root, the repository's ``data/`` folder (the current directory's when
the package is installed elsewhere). Setting ``DIFFUSION_JAX_CACHE`` moves that root, for
example to an empty temporary folder to see what a fresh clone sees; ``data/pretrained``
and the data sets are not affected.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["ENV_VAR", "REPO_ROOT", "UNUSABLE", "cache_root", "resolve", "keyed_path", "cached"]

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


def keyed_path(folder, name: str, key: dict, suffix: str = "") -> Path:
    """``<folder>/<name>-<16 hex digits of SHA-256(key)><suffix>`` under :func:`resolve`.

    ``key`` (JSON-able) holds everything the cached object depends on: configs, data
    digests, seeds, a format number. Another key, another file: a stale entry is never read.
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return resolve(folder) / f"{name}-{digest}{suffix}"


#: What an unreadable or mismatched cache entry raises; anything else is a real error.
UNUSABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def cached(path: Path, load: Callable, build: Callable, *, what: str, present: Callable | None = None):
    """``load(path)`` when the entry is ``present`` (default: the path exists) and usable, else
    ``build(path)``, which computes the object and saves it. An unusable entry is reported with
    one warning and rebuilt over. The one train-or-load rule of the VAE, latent and classifier
    caches (the training runs in ``data/checkpoints/<preset>-<fingerprint>`` resume instead)."""
    if (present or Path.exists)(path):
        try:
            return load(path)
        except UNUSABLE as err:
            warnings.warn(f"{what} cache {path} is unusable ({err}); rebuilding it", stacklevel=3)
    return build(path)
