"""Graded exercises for the lessons.

In a notebook::

    from diffusion_jax.exercises import check, check_answer, hint
    check("q_sample", q_sample)   # "✔ q_sample: passed (4 cases)" or a one-line ExerciseFailed
    hint("q_sample")              # the next hint tier; the last tier may give the formula
    check_answer("q_snr", 9.0)    # short answers (a number or letters)
    show_progress()               # your solved / attempted / not started table, per lesson

Each lesson registers its exercises in its own module ``lessonNN.py`` in this package;
every such module is imported here automatically. A lesson module that fails to import
does not take the others down: it is reported with a warning, and ``check`` on one of
its names says which module failed.
"""

from __future__ import annotations


from diffusion_jax.exercises._answers import (
    AnswerQuestion,
    answer_names,
    check_answer,
    get_answer_question,
    grade_answer,
    register_answer,
)
from diffusion_jax.exercises._core import (
    Case,
    Exercise,
    ExerciseFailed,
    Result,
    Variant,
    case,
    check,
    exercise_names,
    get_exercise,
    grade,
    import_errors,
    register,
    t_rows,
)
from diffusion_jax.exercises._hints import closed_book, hint, hints_of

__all__ = [
    "AnswerQuestion",
    "Case",
    "Exercise",
    "ExerciseFailed",
    "Result",
    "Variant",
    "answer_names",
    "case",
    "check",
    "check_answer",
    "closed_book",
    "exercise_names",
    "get_answer_question",
    "get_exercise",
    "grade",
    "grade_answer",
    "hint",
    "hints_of",
    "import_errors",
    "lesson_modules",
    "register",
    "register_answer",
    "show_progress",
    "t_rows",
]

from diffusion_jax.exercises._registry import lesson_modules, load_all  # noqa: E402


def show_progress(folder=None, *, lessons=None):
    """Grade your saved learner notebooks and print solved / attempted / not started per
    lesson (save the notebook first: the file on disk is what gets graded)."""
    from diffusion_jax.exercises.progress import show

    return show(folder, lessons=lessons)


load_all()
