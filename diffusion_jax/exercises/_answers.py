"""Short answers: a number or letter(s) instead of a function.

``register_answer`` / ``check_answer`` grade short answers (interview questions, quick
numeric checks) with the same one-line ✔/✘ output as ``check``. They live in their own
registry, so ``exercise_names`` and ``check`` are unaffected. In a notebook the answer is
returned by a small function, so the build tool can strip it like any solution::

    def q_snr():
        ### BEGIN SOLUTION
        return 0.9 / 0.1
        ### END SOLUTION

    check_answer("q_snr", q_snr)     # ✔ q_snr: correct — <explanation>

A wrong answer gets a diagnosis that never contains the answer or its formula: "close —
give more precision" when the number is the answer rounded too coarsely, "k of n letters
right, one extra" for multi-letter answers, and a pointer to ``hint("q_snr")``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from diffusion_jax.exercises._core import FAIL, PASS, Result, _REGISTRY, _short, _tiers, report

ANSWER_KINDS = ("numeric", "choice", "multi")
CLOSE_FACTOR = 5.0  # "close" band: within this many tolerances of the answer
_ANSWERS: dict[str, "AnswerQuestion"] = {}


@dataclasses.dataclass(frozen=True)
class AnswerQuestion:
    name: str
    lesson: str
    answer: Any  # a float, a letter, a frozenset of letters, or a callable returning one
    kind: str
    hints: tuple[str, ...]
    teaches: str | None = None  # the lesson that teaches it ("06"), shown as "→ lesson 06"
    explanation: str = ""
    choices: str = "abcd"
    rtol: float = 1e-3
    atol: float = 0.0
    sig_figs: int | None = None  # numeric: accept within one unit of this significant figure

    @property
    def hint(self) -> str:
        return self.hints[0]

    def expected(self):
        """The reference answer, normalised (computed now if it was given as a callable)."""
        value = self.answer() if callable(self.answer) else self.answer
        return _normalise_reference(self, value)

    def tolerance(self, expected: np.ndarray) -> np.ndarray:
        """Allowed absolute error per entry."""
        if self.sig_figs:
            return _unit(expected, self.sig_figs)
        return self.atol + self.rtol * np.abs(expected)

    def precision(self) -> str:
        if self.sig_figs:
            return f"{self.sig_figs} significant figure{'s' if self.sig_figs > 1 else ''}"
        return "more digits"


def _unit(x: np.ndarray, sig: int) -> np.ndarray:
    """One unit of the ``sig``-th significant figure of each entry of ``x``."""
    mag = np.floor(np.log10(np.where(x == 0, 1.0, np.abs(x))))
    return np.where(x == 0, 10.0 ** (-sig), 10.0 ** (mag - sig + 1))


def _given_sig_figs(v: float) -> int:
    """Significant figures in a number as written (0.08 -> 1, 0.078 -> 2, 1200.0 -> 2)."""
    s = np.format_float_positional(abs(v), unique=True, trim="-")  # "0.08", "1200", "12.5"
    digits = s.replace(".", "").lstrip("0") if "." in s else s.strip("0")
    return max(len(digits), 1)


def _rounded_ok(got: np.ndarray, expected: np.ndarray) -> bool:
    """Is every entry the answer rounded to the significant figures it was given with?"""
    for g, e in zip(got.reshape(-1), expected.reshape(-1)):
        if e == 0 or g == 0:
            return False
        k = _given_sig_figs(float(g))
        if not math.isclose(float(f"{e:.{k - 1}e}"), float(g), rel_tol=1e-9):
            return False
    return True


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


def register_answer(name: str, *, lesson, answer, kind: str, hint=None, hints=None, teaches=None,
                    explanation: str = "", choices: str = "abcd", rtol: float = 1e-3,
                    atol: float = 0.0, sig_figs: int | None = None) -> AnswerQuestion:
    """Register a short-answer question; the learner answers with :func:`check_answer`.

    ``kind``: ``"numeric"`` (a number, or a short list of numbers), ``"choice"`` (one letter
    of ``choices``) or ``"multi"`` (a set of letters, all required, order and case ignored).
    A numeric answer is right within ``rtol``/``atol`` or, with ``sig_figs``, within one
    unit of that significant figure (say so in the question). ``answer`` may be a callable
    that computes the reference with the library when checked (preferred for numbers).
    ``hint``/``hints`` are the tiers ``hint(name)`` shows; ``teaches`` names the lesson that
    teaches the topic; the ``explanation`` is shown only after a correct answer.
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
    if sig_figs is not None and (not isinstance(sig_figs, int) or sig_figs < 1):
        raise ValueError(f"answer question {name!r}: sig_figs must be a positive int, got {sig_figs!r}")
    if kind == "numeric" and rtol == 0 and atol == 0 and not sig_figs:
        raise ValueError(f"answer question {name!r}: a numeric answer needs rtol > 0 or atol > 0")
    tiers = _tiers(hint, hints, f"answer question {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"{name!r} is already an exercise (lesson {_REGISTRY[name].lesson}); "
                         f"pick another name for the answer question")
    lesson = str(lesson).zfill(2)
    teaches = None if teaches is None else str(teaches).zfill(2)
    old = _ANSWERS.get(name)
    if old is not None and old.lesson != lesson:
        raise ValueError(f"answer question {name!r} is already registered by lesson {old.lesson}; "
                         f"lesson {lesson} must pick another name")
    if not callable(answer) and isinstance(answer, (set, frozenset, list, tuple)) and kind != "numeric":
        answer = frozenset(_letters(answer, where=name))
    q = AnswerQuestion(name, lesson, answer, kind, tiers, teaches, str(explanation), choices,
                       float(rtol), float(atol), sig_figs)
    if not callable(answer):
        q.expected()  # validate a fixed answer now, not when a learner hits it
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


def _wrong(q: AnswerQuestion, text: str, diagnosis: str, given: str = "") -> Result:
    lesson = f" (→ lesson {q.teaches})" if q.teaches else ""
    return Result(q.name, "wrong", f'{FAIL} {q.name}: {text}{lesson}; hint("{q.name}") gives a hint',
                  diagnosis, given)


def _grade_numeric(q: AnswerQuestion, value, expected) -> Result:
    if isinstance(value, (str, bytes)) or value is None:
        return _wrong(q, f"expected a number, got {type(value).__name__}", "not a number")
    try:
        got = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return _wrong(q, f"expected a number, got {type(value).__name__}", "not a number")
    if got.shape != expected.shape:
        want = "one number" if expected.ndim == 0 else f"{expected.size} numbers"
        return _wrong(q, f"expected {want}, got shape {got.shape}", "wrong shape")
    shown = _short(np.array2string(got, precision=6) if got.ndim else f"{float(got):.6g}", 60)
    if not np.all(np.isfinite(got)):
        return _wrong(q, f"{shown} is not a finite number", "not finite", shown)
    err, tol = np.abs(got - expected), q.tolerance(expected)
    if np.all(err <= tol * (1 + 1e-9)):
        return Result(q.name, "solved", f"{PASS} {q.name}: correct" + (f" — {q.explanation}" if q.explanation else ""),
                      "correct", shown)
    if _rounded_ok(got, expected):
        return _wrong(q, f"close — {shown} is rounded too coarsely; give {q.precision()}", "too few digits", shown)
    if np.all(err <= CLOSE_FACTOR * tol):
        return _wrong(q, f"close — {shown} is near the answer but not within the tolerance "
                      f"({q.precision() if q.sig_figs else 'check the arithmetic'})", "close", shown)
    return _wrong(q, f"{shown} is not right", "wrong", shown)


def _grade_letters(q: AnswerQuestion, value, expected) -> Result:
    try:
        got = _letters(value, where=q.name)
    except TypeError:
        return _wrong(q, "expected letter(s) such as 'b'" + (" or 'a, c'" if q.kind == "multi" else "")
                      + f", got {type(value).__name__}", "not letters")
    shown = ", ".join(got)
    bad = [ch for ch in got if ch not in q.choices]
    if bad or not got:
        return _wrong(q, f"answer with letter(s) among {', '.join(q.choices)}, got {_short(repr(value), 40)}",
                      "not a choice", shown)
    if q.kind == "choice" and len(got) != 1:
        return _wrong(q, f"pick exactly one letter, got {shown}", "several letters", shown)
    if got == expected:
        return Result(q.name, "solved", f"{PASS} {q.name}: correct" + (f" — {q.explanation}" if q.explanation else ""),
                      "correct", shown)
    if q.kind == "choice":
        return _wrong(q, f"'{got[0]}' is not right", shown, shown)
    right = len(set(got) & set(expected))
    extra = len(set(got) - set(expected))
    parts = [f"{right} of {len(expected)} letters right"]
    if extra:
        parts.append(f"{extra} extra")
    if right < len(expected) and not extra:
        parts.append(f"{len(expected) - right} missing")
    text = ("partly right: " if right else "") + ", ".join(parts)
    return _wrong(q, text, shown, shown)


def grade_answer(name: str, value) -> Result:
    """Grade a short answer silently; see :func:`check_answer`."""
    q = get_answer_question(name)
    if callable(value):
        try:
            value = value()
        except NotImplementedError:
            return Result(name, "not_implemented",
                          f"{FAIL} {name}: not implemented yet — return your answer from the function, "
                          f'then run the cell again; hint("{name}") gives a first hint', "not implemented")
        except Exception as err:
            return Result(name, "crashed", f"{FAIL} {name}: crashed: {type(err).__name__}: {_short(err)}",
                          f"crashed ({type(err).__name__})")
    try:
        expected = q.expected()
    except Exception as err:  # a bug in the question, not the learner's fault
        raise RuntimeError(f"reference answer of {name!r} failed: {err}") from err
    if q.kind == "numeric":
        return _grade_numeric(q, value, expected)
    return _grade_letters(q, value, expected)


def check_answer(name: str, value) -> bool:
    """Grade a short answer: print one line, truthy on success, :class:`ExerciseFailed` if not.

    ``value`` is the answer itself or a function of no arguments that returns it (a
    function that raises ``NotImplementedError`` counts as "not implemented yet").
    Letters are normalised: ``" b "``, ``"B"`` and ``"b"`` are the same answer; for
    ``multi``, ``"a, c"``, ``"CA"`` and ``["a", "c"]`` are too.
    """
    return report(grade_answer(name, value))
