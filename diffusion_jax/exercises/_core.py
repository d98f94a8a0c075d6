"""The grading core: a registry of exercises and ``check(name, fn)``.

A lesson module ``diffusion_jax/exercises/lessonNN.py`` calls :func:`register` once per
exercise with a *reference* (which calls the library), a *cases* factory (deterministic
inputs) and a *hint*. In the notebook the learner writes a function and calls
``check("name", fn)``; it runs the learner's function and the reference on every case,
compares the outputs leaf by leaf (shapes first, then values) and reports in ONE line:

    ✔ q_sample: passed (5 cases)
    ✘ q_sample: not implemented yet — <hint>
    ✘ q_sample: wrong shape: expected (4, 8, 8, 1), got (4, 8)
    ✘ q_sample: crashed on case 2: TypeError: <message>
    ✘ q_sample: wrong values on case 1 (max abs error 0.31) — hint: <hint>

On failure :class:`ExerciseFailed` is raised; in Jupyter its ``_render_traceback_``
replaces the traceback with that single line.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

PASS = "✔"
FAIL = "✘"


class ExerciseFailed(AssertionError):
    """An exercise check failed; ``str(err)`` (and Jupyter's rendering) is one line."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def _render_traceback_(self):  # IPython calls this instead of formatting a traceback
        return [self.message]


@dataclasses.dataclass(frozen=True)
class Exercise:
    name: str
    lesson: str
    reference: Callable[..., Any]
    cases: Callable[[], list]  # -> [(args, kwargs), ...]
    hint: str
    rtol: float = 1e-5
    atol: float = 1e-6


_REGISTRY: dict[str, Exercise] = {}
# lesson modules that failed to import: module name -> "ExcType: message"
_IMPORT_ERRORS: dict[str, str] = {}


def register(name: str, *, lesson: str, reference, cases, hint: str,
             rtol: float = 1e-5, atol: float = 1e-6) -> Exercise:
    """Register an exercise. ``cases()`` returns ``[(args, kwargs), ...]``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"exercise name must be an identifier-like string, got {name!r}")
    if not callable(reference) or not callable(cases):
        raise TypeError(f"exercise {name!r}: reference and cases must be callables")
    lesson = str(lesson).zfill(2)
    old = _REGISTRY.get(name)
    if old is not None and old.lesson != lesson:  # same lesson = a module reload: allowed
        raise ValueError(
            f"exercise {name!r} is already registered by lesson {old.lesson}; "
            f"lesson {lesson} must pick another name"
        )
    ex = Exercise(name, lesson, reference, cases, str(hint), float(rtol), float(atol))
    _REGISTRY[name] = ex
    return ex


def exercise_names(lesson: str | int | None = None) -> list[str]:
    """Sorted names of registered exercises, optionally only those of one lesson."""
    if lesson is None:
        return sorted(_REGISTRY)
    lesson = str(lesson).zfill(2)
    return sorted(n for n, ex in _REGISTRY.items() if ex.lesson == lesson)


def get_exercise(name: str) -> Exercise:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        extra = ""
        if _IMPORT_ERRORS:
            extra = "; these exercise modules failed to import: " + "; ".join(
                f"{m} ({e})" for m, e in sorted(_IMPORT_ERRORS.items())
            )
        raise ValueError(f"unknown exercise {name!r}; registered exercises: {known}{extra}") from None


def import_errors() -> dict[str, str]:
    return dict(_IMPORT_ERRORS)


# ----------------------------------------------------------------------------------------
# comparison


def _flatten(tree):
    """Leaves and a structure description of a pytree (tuples, lists, dicts, arrays)."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return leaves, treedef


def _short(x, limit: int = 160) -> str:
    s = " ".join(str(x).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _leaf_array(x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == bool:
        a = a.astype(np.int8)
    return a


def _compare(expected, got, ex: Exercise, case_no: int) -> str | None:
    """None if ``got`` matches ``expected``; otherwise the failure text (without the name)."""
    exp_leaves, exp_def = _flatten(expected)
    try:
        got_leaves, got_def = _flatten(got)
    except Exception:  # pragma: no cover - flattening arbitrary objects rarely fails
        return f"wrong output type on case {case_no}: got {type(got).__name__}"
    if len(exp_leaves) != len(got_leaves):
        return (f"wrong output structure on case {case_no}: expected {len(exp_leaves)} "
                f"array(s) ({_short(exp_def, 80)}), got {len(got_leaves)} ({_short(got_def, 80)})")
    multi = len(exp_leaves) > 1
    arrays = []
    for i, (e, g) in enumerate(zip(exp_leaves, got_leaves)):
        where = f" for output {i}" if multi else ""
        try:
            g_arr = _leaf_array(g)
        except Exception:
            return f"wrong output type{where} on case {case_no}: got {type(g).__name__}"
        if g_arr.dtype == object or not (np.issubdtype(g_arr.dtype, np.number)):
            return f"wrong output type{where} on case {case_no}: got {type(g).__name__} ({g_arr.dtype})"
        e_arr = _leaf_array(e)
        if e_arr.shape != g_arr.shape:
            return f"wrong shape{where}: expected {e_arr.shape}, got {g_arr.shape}"
        arrays.append((e_arr, g_arr, where))
    for e_arr, g_arr, where in arrays:
        e64 = e_arr.astype(np.float64) if not np.iscomplexobj(e_arr) else e_arr
        g64 = g_arr.astype(np.float64) if not np.iscomplexobj(g_arr) else g_arr
        bad_nan = np.isnan(g64) & ~np.isnan(e64)
        if np.any(bad_nan):
            return (f"wrong values{where} on case {case_no} (NaN in your output at "
                    f"{int(bad_nan.sum())} of {bad_nan.size} entries) — hint: {ex.hint}")
        if not np.allclose(g64, e64, rtol=ex.rtol, atol=ex.atol, equal_nan=True):
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.abs(g64 - e64)
            same = (g64 == e64) | (np.isnan(g64) & np.isnan(e64))
            diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
            err = float(diff.max())
            return f"wrong values{where} on case {case_no} (max abs error {err:.3g}) — hint: {ex.hint}"
    return None


class Passed(int):
    """What :func:`check` returns on success: equal to ``True`` (``assert check(...)`` works),
    but Jupyter shows no ``Out[]: True`` under the printed line."""

    def __new__(cls):
        return super().__new__(cls, 1)

    def __repr__(self):
        return "True"

    def _ipython_display_(self):  # the printed "✔ ..." line is the whole output
        pass


def _fail(name: str, text: str):
    raise ExerciseFailed(f"{FAIL} {name}: {text}")


def check(name: str, fn) -> bool:
    """Grade ``fn`` against exercise ``name``: print one line, truthy on success.

    On success the result is :class:`Passed`, which equals ``True`` but displays nothing.

    Raises :class:`ExerciseFailed` (one-line message) if ``fn`` is not implemented yet,
    crashes, returns the wrong shape or wrong values; ``ValueError`` for an unknown name.
    """
    ex = get_exercise(name)
    if not callable(fn):
        _fail(name, f"expected a function, got {type(fn).__name__}")
    # build the inputs twice so a function that mutates its inputs cannot affect the other
    ref_cases = list(ex.cases())
    learner_cases = list(ex.cases())
    if not ref_cases:
        raise RuntimeError(f"exercise {name!r} has no cases (a bug in its lesson module)")
    for case_no, ((args, kwargs), (l_args, l_kwargs)) in enumerate(zip(ref_cases, learner_cases), 1):
        try:
            got = fn(*l_args, **l_kwargs)
        except NotImplementedError:
            _fail(name, f"not implemented yet — {ex.hint}")
        except ExerciseFailed:
            raise
        except Exception as err:  # the learner's code crashed: say where, briefly
            _fail(name, f"crashed on case {case_no}: {type(err).__name__}: {_short(err)}")
        try:
            expected = ex.reference(*args, **kwargs)
        except Exception as err:  # a bug in the exercise, not the learner's fault
            raise RuntimeError(f"reference of exercise {name!r} failed on case {case_no}: {err}") from err
        problem = _compare(expected, got, ex, case_no)
        if problem is not None:
            _fail(name, problem)
    n = len(ref_cases)
    print(f"{PASS} {name}: passed ({n} case{'s' if n != 1 else ''})")
    return Passed()
