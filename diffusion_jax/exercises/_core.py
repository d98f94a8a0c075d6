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


# ----------------------------------------------------------------------------------------
# answer questions: a number or letter(s) instead of a function
#
# ``register_answer`` / ``check_answer`` grade short answers (interview questions, quick
# numeric checks) with the same one-line ✔/✘ output as ``check``. They live in their own
# registry, so ``exercise_names`` and ``check`` are unchanged. In a notebook the answer is
# returned by a small function, so the build tool can strip it like any solution:
#
#     def q_snr():
#         ### BEGIN SOLUTION
#         # HINT: SNR = alpha_bar / (1 - alpha_bar)
#         return 0.9 / 0.1
#         ### END SOLUTION
#
#     check_answer("q_snr", q_snr)     # ✔ q_snr: correct — <explanation>
#
# A wrong answer gets the hint (and the lesson that teaches it), never the answer.

ANSWER_KINDS = ("numeric", "choice", "multi")
_ANSWERS: dict[str, AnswerQuestion] = {}


@dataclasses.dataclass(frozen=True)
class AnswerQuestion:
    name: str
    lesson: str
    answer: Any  # a float, a letter, a frozenset of letters, or a callable returning one
    kind: str
    hint: str
    teaches: str | None = None  # the lesson that teaches it ("06"), shown as "→ lesson 06"
    explanation: str = ""
    choices: str = "abcd"
    rtol: float = 1e-3
    atol: float = 0.0

    def expected(self):
        """The reference answer, normalised (computed now if it was given as a callable)."""
        value = self.answer() if callable(self.answer) else self.answer
        return _normalise_reference(self, value)


def _letters(value, *, where: str) -> list[str]:
    """``"b"``, ``" B "``, ``"a, c"``, ``"AC"``, ``["a", "c"]`` -> sorted lower-case letters."""
    if isinstance(value, str):
        items = [ch for ch in value.lower() if not (ch.isspace() or ch in ",;/+&")]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = []
        for v in value:
            if not isinstance(v, str):
                raise TypeError(f"{where}: letters must be strings, got {type(v).__name__}")
            items += _letters(v, where=where)
    else:
        raise TypeError(f"{where}: expected letter(s) as a string such as 'b' or 'a, c', "
                        f"got {type(value).__name__}")
    return sorted(set(items))


def _normalise_reference(q: AnswerQuestion, value):
    where = f"answer question {q.name!r}"
    if q.kind == "numeric":
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: a numeric answer must be a number, got {value!r}") from None
        if arr.ndim > 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError(f"{where}: a numeric answer must be a finite number (or a short "
                             f"1-D list of them), got {value!r}")
        return arr
    letters = _letters(value, where=where)
    bad = [ch for ch in letters if ch not in q.choices]
    if bad or not letters:
        raise ValueError(f"{where}: answer letters must be among {', '.join(q.choices)}, got {value!r}")
    if q.kind == "choice" and len(letters) != 1:
        raise ValueError(f"{where}: a 'choice' answer is exactly one letter, got {value!r}; "
                         f"use kind='multi' for several")
    return letters


def register_answer(name: str, *, lesson, answer, kind: str, hint: str, teaches=None,
                    explanation: str = "", choices: str = "abcd", rtol: float = 1e-3,
                    atol: float = 0.0) -> AnswerQuestion:
    """Register a short-answer question; the learner answers with :func:`check_answer`.

    ``kind``: ``"numeric"`` (a number, or a short list of numbers, compared with
    ``np.isclose(rtol, atol)``), ``"choice"`` (one letter of ``choices``) or ``"multi"``
    (a set of letters, all required, order and case ignored). ``answer`` may be a
    callable that computes the reference with the library when the question is checked
    (preferred for numbers). ``hint`` is shown on a wrong answer, so it must not give
    the answer away; ``teaches`` names the lesson that teaches the topic; the
    ``explanation`` is shown only after a correct answer.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"answer question name must be an identifier-like string, got {name!r}")
    if kind not in ANSWER_KINDS:
        raise ValueError(f"answer question {name!r}: kind must be one of {ANSWER_KINDS}, got {kind!r}")
    if not isinstance(choices, str) or not choices or len(set(choices)) != len(choices) \
            or not all(ch.isalpha() and ch.islower() for ch in choices):
        raise ValueError(f"answer question {name!r}: choices must be distinct lower-case letters "
                         f"such as 'abcd', got {choices!r}")
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"answer question {name!r}: rtol and atol must be >= 0, got {rtol}, {atol}")
    if kind == "numeric" and rtol == 0 and atol == 0:
        raise ValueError(f"answer question {name!r}: a numeric answer needs rtol > 0 or atol > 0")
    if not isinstance(hint, str) or not hint.strip():
        raise ValueError(f"answer question {name!r}: a hint is required (shown on a wrong answer)")
    if name in _REGISTRY:
        raise ValueError(f"{name!r} is already an exercise (lesson {_REGISTRY[name].lesson}); "
                         f"pick another name for the answer question")
    lesson = str(lesson).zfill(2)
    teaches = None if teaches is None else str(teaches).zfill(2)
    old = _ANSWERS.get(name)
    if old is not None and old.lesson != lesson:
        raise ValueError(f"answer question {name!r} is already registered by lesson {old.lesson}; "
                         f"lesson {lesson} must pick another name")
    if not callable(answer):
        if isinstance(answer, (set, frozenset, list, tuple)) and kind in ("choice", "multi"):
            answer = frozenset(_letters(answer, where=name))
        q = AnswerQuestion(name, lesson, answer, kind, hint, teaches, str(explanation), choices,
                           float(rtol), float(atol))
        q.expected()  # validate a fixed answer now, not when a learner hits it
    else:
        q = AnswerQuestion(name, lesson, answer, kind, hint, teaches, str(explanation), choices,
                           float(rtol), float(atol))
    _ANSWERS[name] = q
    return q


def answer_names(lesson: str | int | None = None) -> list[str]:
    """Sorted names of registered answer questions, optionally only one lesson's."""
    if lesson is None:
        return sorted(_ANSWERS)
    lesson = str(lesson).zfill(2)
    return sorted(n for n, q in _ANSWERS.items() if q.lesson == lesson)


def get_answer_question(name: str) -> AnswerQuestion:
    try:
        return _ANSWERS[name]
    except KeyError:
        known = ", ".join(sorted(_ANSWERS)) or "(none)"
        raise ValueError(f"unknown answer question {name!r}; registered: {known}") from None


def _hint_text(q: AnswerQuestion) -> str:
    return q.hint + (f" (→ lesson {q.teaches})" if q.teaches else "")


def check_answer(name: str, value) -> bool:
    """Grade a short answer: print one line, truthy on success, :class:`ExerciseFailed` if not.

    ``value`` is the answer itself or a function of no arguments that returns it (a
    function that raises ``NotImplementedError`` counts as "not implemented yet").
    Letters are normalised: ``" b "``, ``"B"`` and ``"b"`` are the same answer; for
    ``multi``, ``"a, c"``, ``"CA"`` and ``["a", "c"]`` are too.
    """
    q = get_answer_question(name)
    if callable(value):
        try:
            value = value()
        except NotImplementedError:
            _fail(name, f"not implemented yet — {_hint_text(q)}")
        except ExerciseFailed:
            raise
        except Exception as err:
            _fail(name, f"crashed: {type(err).__name__}: {_short(err)}")
    try:
        expected = q.expected()
    except Exception as err:  # a bug in the question, not the learner's fault
        raise RuntimeError(f"reference answer of {name!r} failed: {err}") from err
    if q.kind == "numeric":
        if isinstance(value, (str, bytes)) or value is None:
            _fail(name, f"expected a number, got {type(value).__name__}")
        try:
            got = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            _fail(name, f"expected a number, got {type(value).__name__}")
        if got.shape != expected.shape:
            want = "one number" if expected.ndim == 0 else f"{expected.size} numbers"
            _fail(name, f"expected {want}, got shape {got.shape}")
        if not np.all(np.isclose(got, expected, rtol=q.rtol, atol=q.atol)):
            shown = _short(np.array2string(got, precision=6) if got.ndim else f"{float(got):.6g}", 60)
            _fail(name, f"{shown} is not right — hint: {_hint_text(q)}")
    else:
        try:
            got = _letters(value, where=name)
        except TypeError:
            _fail(name, "expected letter(s) such as 'b'" + (" or 'a, c'" if q.kind == "multi" else "")
                  + f", got {type(value).__name__}")
        bad = [ch for ch in got if ch not in q.choices]
        if bad or not got:
            _fail(name, f"answer with letter(s) among {', '.join(q.choices)}, got {_short(repr(value), 40)}")
        if q.kind == "choice" and len(got) != 1:
            _fail(name, f"pick exactly one letter, got {', '.join(got)}")
        if got != expected:
            what = "that set of letters" if q.kind == "multi" else f"'{got[0]}'"
            _fail(name, f"{what} is not right — hint: {_hint_text(q)}")
    print(f"{PASS} {name}: correct" + (f" — {q.explanation}" if q.explanation else ""))
    return Passed()
