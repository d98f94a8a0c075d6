"""Loading every lesson's exercise module, so the registry is complete.

The package ``__init__`` calls :func:`load_all` once; the progress and quiz tools call it
too (it is idempotent) instead of importing the package root, so no module of the package
imports the package that imports it.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import warnings
from pathlib import Path

from diffusion_jax.exercises._core import _IMPORT_ERRORS

_LESSON_MODULE = re.compile(r"lesson\d+$")
_PACKAGE = "diffusion_jax.exercises"


def lesson_modules() -> list[str]:
    """Names (``lesson01``, ...) of the lesson exercise modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if _LESSON_MODULE.match(m.name))


def load_all() -> None:
    """Import every lesson module (a failure is recorded and warned about, the rest load)."""
    for mod in lesson_modules():
        try:
            importlib.import_module(f"{_PACKAGE}.{mod}")
        except Exception as err:  # keep the other lessons' exercises usable
            _IMPORT_ERRORS[mod] = f"{type(err).__name__}: {err}"
            warnings.warn(f"{_PACKAGE}.{mod} failed to import: {err}", stacklevel=2)
