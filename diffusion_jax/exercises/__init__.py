"""Graded exercises for the lessons.

In a notebook::

    from diffusion_jax.exercises import check
    check("q_sample", q_sample)   # prints "✔ q_sample: passed (4 cases)" or raises ExerciseFailed
    check_answer("q_snr", 9.0)    # short answers (a number or letters): "✔ q_snr: correct — ..."

Each lesson registers its exercises in its own module ``lessonNN.py`` in this package;
every such module is imported here automatically. A lesson module that fails to import
does not take the others down: it is reported with a warning, and ``check`` on one of
its names says which module failed.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import warnings

from diffusion_jax.exercises._core import (
    AnswerQuestion,
    Exercise,
    ExerciseFailed,
    _IMPORT_ERRORS,
    answer_names,
    check,
    check_answer,
    exercise_names,
    get_answer_question,
    get_exercise,
    import_errors,
    register,
    register_answer,
)

__all__ = [
    "AnswerQuestion",
    "Exercise",
    "ExerciseFailed",
    "answer_names",
    "check",
    "check_answer",
    "exercise_names",
    "get_answer_question",
    "get_exercise",
    "import_errors",
    "lesson_modules",
    "register",
    "register_answer",
]

_LESSON_MODULE = re.compile(r"lesson\d+$")


def lesson_modules() -> list[str]:
    """Names (``lesson01``, ...) of the lesson exercise modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if _LESSON_MODULE.match(m.name))


def _import_lessons() -> None:
    for mod in lesson_modules():
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except Exception as err:  # keep the other lessons' exercises usable
            _IMPORT_ERRORS[mod] = f"{type(err).__name__}: {err}"
            warnings.warn(f"diffusion_jax.exercises.{mod} failed to import: {err}", stacklevel=2)


_import_lessons()
