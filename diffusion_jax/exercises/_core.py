"""The grading core: a registry of exercises, :func:`grade` and :func:`check`.

A lesson module ``diffusion_jax/exercises/lessonNN.py`` calls :func:`register` once per
exercise with everything about it in one place: a *reference* (which calls the library),
*cases* (deterministic, named inputs), *hints* in tiers the learner asks for with
``hint("name")``, and *variants*, known wrong implementations the grader recognises and
names. In the notebook the learner writes a function and calls ``check("name", fn)``; it
runs the function and the reference on every case, compares the outputs leaf by leaf and
reports in ONE line::

    ✔ q_sample: passed (5 cases)
    ✘ q_sample: not implemented yet — write the function, then run the cell again; hint("q_sample") …
    ✘ q_sample: wrong shape on case 2 of 5 [(3, 5) vectors]: expected (3, 5), got (3, 3)
    ✘ q_sample: crashed on case 2 of 5 [(3, 5) vectors]: TypeError: <message>
    ✘ posterior_mean: wrong values on case 1 of 4 [linear, t = 0 … 999]: rows with t = 0 are wrong
      (1 of 6 rows) (max abs error 9.97e+03) — this looks like <the named mistake>

A message names the case and the rows, never the reference's values or the formula.
On failure :class:`ExerciseFailed` is raised; in Jupyter its ``_render_traceback_``
replaces the traceback with that single line.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from diffusion_jax.exercises._compare import Mismatch, compare, describe_rows, same

PASS = "✔"
FAIL = "✘"
RECORDED = "✎"


class ExerciseFailed(AssertionError):
    """An exercise check failed; ``str(err)`` (and Jupyter's rendering) is one line."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def _render_traceback_(self):  # IPython calls this instead of formatting a traceback
        return [self.message]


class Passed(int):
    """What :func:`check` returns on success: equal to ``True`` (``assert check(...)`` works),
    but Jupyter shows no ``Out[]: True`` under the printed line."""

    def __new__(cls):
        return super().__new__(cls, 1)

    def __repr__(self):
        return "True"

    def _ipython_display_(self):  # the printed "✔ ..." line is the whole output
        pass


@dataclasses.dataclass(frozen=True)
class Case:
    """One named input of an exercise: ``fn(*args, **kwargs)``.

    ``label`` says what the case exercises (``prediction="v"``, ``t = 0 and t = T-1``);
    ``rows`` optionally labels the rows (axis 0) of the output, so a failure can say
    "rows with t = 0 are wrong" instead of "rows 0, 3".
    """

    label: str
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    rows: tuple[str, ...] | None = None


def case(label: str, *args, rows=None, **kwargs) -> Case:
    """``case("prediction='v'", schedule, x0, t, eps, "v", rows=...)``."""
    return Case(str(label), tuple(args), dict(kwargs), None if rows is None else tuple(str(r) for r in rows))


def t_rows(t) -> tuple[str, ...]:
    """Row labels ``("t = 0", "t = 999", ...)`` for a batch of integer timesteps."""
    import numpy as np

    return tuple(f"t = {int(v)}" for v in np.asarray(t).reshape(-1))


@dataclasses.dataclass(frozen=True)
class Variant:
    """A known wrong implementation: ``fn`` has the exercise's signature; when the learner's
    output matches it, the grader shows ``message`` (what the mistake is and why it is one)."""

    label: str  # short, for class reports: "beta_t as variance"
    fn: Callable[..., Any]
    message: str


@dataclasses.dataclass(frozen=True)
class Exercise:
    name: str
    lesson: str
    reference: Callable[..., Any]
    cases: Callable[[], list]  # -> [Case, ...] (or legacy [(args, kwargs), ...])
    hints: tuple[str, ...]
    variants: tuple[Variant, ...] = ()
    rtol: float = 1e-5
    atol: float = 1e-6
    outputs: tuple[str, ...] = ()  # names of the output leaves, for messages

    @property
    def hint(self) -> str:
        return self.hints[0]

    def named_cases(self) -> list[Case]:
        out = []
        for i, c in enumerate(self.cases(), 1):
            if isinstance(c, Case):
                out.append(c)
            else:  # legacy (args, kwargs)
                args, kwargs = c
                out.append(Case(f"case {i}", tuple(args), dict(kwargs)))
        return out


@dataclasses.dataclass(frozen=True)
class Result:
    """What :func:`grade` found. ``status``: "solved", "not_implemented", "wrong" or "crashed";
    ``diagnosis``: a short label for reports (a variant's label, "wrong values", ...);
    ``given``: for short answers, the answer as given."""

    name: str
    status: str
    message: str
    diagnosis: str = ""
    given: str = ""

    @property
    def solved(self) -> bool:
        return self.status == "solved"


_REGISTRY: dict[str, Exercise] = {}
# lesson modules that failed to import: module name -> "ExcType: message"
_IMPORT_ERRORS: dict[str, str] = {}
_MODE = {"closed_book": False}


def _tiers(hint, hints, where: str) -> tuple[str, ...]:
    tiers: list[str] = []
    if hint is not None:
        tiers.append(hint)
    if hints is not None:
        tiers += [hints] if isinstance(hints, str) else list(hints)
    tiers = [str(h).strip() for h in tiers]
    if not tiers or not all(tiers):
        raise ValueError(f"{where}: at least one non-empty hint is required")
    return tuple(tiers)


def register(name: str, *, lesson: str, reference, cases, hint: str | None = None, hints=None,
             variants=(), rtol: float = 1e-5, atol: float = 1e-6, outputs=()) -> Exercise:
    """Register an exercise.

    ``cases()`` returns a list of :class:`Case` (see :func:`case`); ``hints`` are the tiers
    ``hint(name)`` shows one after another (``hint`` alone is a single tier; the last tier
    may give the formula, the earlier ones must not); ``variants`` are :class:`Variant`
    objects, known mistakes; ``outputs`` names the output leaves for messages.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"exercise name must be an identifier-like string, got {name!r}")
    if not callable(reference) or not callable(cases):
        raise TypeError(f"exercise {name!r}: reference and cases must be callables")
    tiers = _tiers(hint, hints, f"exercise {name!r}")
    variants = tuple(variants)
    if not all(isinstance(v, Variant) and callable(v.fn) for v in variants):
        raise TypeError(f"exercise {name!r}: variants must be Variant(label, fn, message) objects")
    lesson = str(lesson).zfill(2)
    old = _REGISTRY.get(name)
    if old is not None and old.lesson != lesson:  # same lesson = a module reload: allowed
        raise ValueError(f"exercise {name!r} is already registered by lesson {old.lesson}; "
                         f"lesson {lesson} must pick another name")
    ex = Exercise(name, lesson, reference, cases, tiers, variants, float(rtol), float(atol),
                  tuple(str(o) for o in outputs))
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
                f"{m} ({e})" for m, e in sorted(_IMPORT_ERRORS.items()))
        raise ValueError(f"unknown exercise {name!r}; registered exercises: {known}{extra}") from None


def import_errors() -> dict[str, str]:
    return dict(_IMPORT_ERRORS)


def closed_book_active() -> bool:
    return _MODE["closed_book"]


def set_closed_book(on: bool) -> None:
    """Closed-book (quiz) mode: ``check`` records instead of grading aloud, ``hint`` is off."""
    _MODE["closed_book"] = bool(on)


# ----------------------------------------------------------------------------------------
# grading


def _short(x, limit: int = 160) -> str:
    s = " ".join(str(x).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def not_implemented_message(name: str) -> str:
    return (f"{FAIL} {name}: not implemented yet — write the function, then run the cell again; "
            f'hint("{name}") gives a first hint if you need one')


def _where(i: int, n: int, c: Case) -> str:
    return f"case {i + 1} of {n} [{c.label}]"


def _failure_text(m: Mismatch, i: int, cases: list[Case]) -> str:
    text = f"{m.text} on {_where(i, len(cases), cases[i])}{m.detail}"
    rows = describe_rows(m, cases[i].rows)
    if rows:
        text += f": {rows}"
    if m.kind == "values":
        text += f" (max abs error {m.max_error:.3g})"
    return text


def _run_variant(v: Variant, cases: list[Case]):
    try:
        return [v.fn(*c.args, **c.kwargs) for c in cases]
    except Exception:  # a variant that cannot run on some case simply does not match
        return None


def _match_variant(ex: Exercise, outputs: list, first: int):
    """(variant, whole) for the first known mistake that reproduces the learner's outputs on
    every case (whole=True), else on the first failing case only (whole=False)."""
    cases = ex.named_cases()
    partial = None
    for v in ex.variants:
        vout = _run_variant(v, cases)
        if vout is None:
            continue
        if all(same(o, w, rtol=ex.rtol, atol=ex.atol) for o, w in zip(outputs, vout)):
            return v, True
        if partial is None and same(outputs[first], vout[first], rtol=ex.rtol, atol=ex.atol):
            partial = v
    return (partial, False) if partial is not None else (None, False)


def grade(name: str, fn) -> Result:
    """Grade ``fn`` against exercise ``name`` silently; see :func:`check` for the messages."""
    ex = get_exercise(name)
    if not callable(fn):
        return Result(name, "wrong", f"{FAIL} {name}: expected a function, got {type(fn).__name__}",
                      "not a function")
    ref_cases, learner_cases = ex.named_cases(), ex.named_cases()  # a learner cannot mutate the reference's inputs
    if not ref_cases:
        raise RuntimeError(f"exercise {name!r} has no cases (a bug in its lesson module)")
    n = len(ref_cases)
    outputs = []
    for i, c in enumerate(learner_cases):
        try:
            outputs.append(fn(*c.args, **c.kwargs))
        except NotImplementedError:
            return Result(name, "not_implemented", not_implemented_message(name), "not implemented")
        except Exception as err:  # the learner's code crashed: say where, briefly
            return Result(name, "crashed", f"{FAIL} {name}: crashed on {_where(i, n, c)}: "
                          f"{type(err).__name__}: {_short(err)}", f"crashed ({type(err).__name__})")
    first = None
    for i, c in enumerate(ref_cases):
        try:
            expected = ex.reference(*c.args, **c.kwargs)
        except Exception as err:  # a bug in the exercise, not the learner's fault
            raise RuntimeError(f"reference of exercise {name!r} failed on {_where(i, n, c)}: {err}") from err
        m = compare(expected, outputs[i], rtol=ex.rtol, atol=ex.atol, output_names=ex.outputs)
        if m is not None:
            first = (i, m)
            break
    if first is None:
        return Result(name, "solved", f"{PASS} {name}: passed ({n} case{'s' if n != 1 else ''})", "solved")
    i, m = first
    text = _failure_text(m, i, ref_cases)
    variant, whole = _match_variant(ex, outputs, i)
    if variant is not None:
        lead = "this looks like" if whole else "on this case your output matches"
        return Result(name, "wrong", f"{FAIL} {name}: {text} — {lead} {variant.message}", variant.label)
    return Result(name, "wrong", f'{FAIL} {name}: {text} — hint("{name}") if you are stuck',
                  {"values": "wrong values", "nan": "NaN in output"}.get(m.kind, f"wrong {m.kind}"))


def check(name: str, fn) -> bool:
    """Grade ``fn`` against exercise ``name``: print one line, truthy on success.

    On success the result is :class:`Passed`, which equals ``True`` but displays nothing.
    Raises :class:`ExerciseFailed` (one-line message) if ``fn`` is not implemented yet,
    crashes, returns the wrong shape or wrong values; ``ValueError`` for an unknown name.
    In closed-book (quiz) mode a finished answer is only recorded, right or wrong.
    """
    result = grade(name, fn)
    return report(result)


def report(result: Result):
    """Print or raise what a :class:`Result` says (shared by check and check_answer)."""
    if _MODE["closed_book"] and result.status in ("solved", "wrong"):
        print(f"{RECORDED} {result.name}: answer recorded; it is graded after the quiz")
        return None
    if result.solved:
        print(result.message)
        return Passed()
    raise ExerciseFailed(result.message)
