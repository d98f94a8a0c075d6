"""Exercises that make a learner think, and feedback that diagnoses.

For every registered exercise:
  * its cases have names, it has at least two hint tiers and at least two known wrong
    variants, and feeding each variant to the grader produces that variant's own message;
  * its reference passes its own grader (the cases run);
  * nothing a learner sees before asking for the last hint contains the formula: the stub
    in the learner notebook, the "not implemented yet" line, the message for a wrong
    answer, the known-mistake messages and the earlier hint tiers are compared with the
    solution block of the lesson source (its formula-bearing expressions, with module
    prefixes dropped and variable names abstracted, so ``sqrt(alpha_bar) * x0`` in a
    docstring matches ``jnp.sqrt(ab) * x0`` in the solution).
The same holds for the short-answer questions of lesson 11 (stub, messages, early hints).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from diffusion_jax import exercises
from diffusion_jax.exercises import _answers, _core

REPO = Path(__file__).resolve().parents[1]
LESSONS = sorted(p for p in (REPO / "lessons").glob("*.py") if re.match(r"^\d{2}_\w+\.py$", p.name))

# function names kept by the canonical form (everything else becomes "v")
FUNCS = {"sqrt", "exp", "log", "log1p", "log10", "cumprod", "cumsum", "prod", "sum", "mean", "std", "var",
         "median", "min", "max", "minimum", "maximum", "clip", "where", "abs", "cos", "sin", "arctan",
         "concatenate", "stack", "transpose", "reshape", "sqrtm", "trace", "norm", "logical_or",
         "logical_and", "round", "arange", "linspace", "floor", "ceil", "sigmoid", "tanh", "einsum",
         "dot", "matmul", "tuple", "range", "argmax", "argmin", "full", "ones", "zeros", "split",
         "swapaxes", "moveaxis", "grad", "value_and_grad", "tile", "repeat", "flip"}
# calls whose mere name (np.cumprod, "cumprod(") in a stub or a first message gives the game away
TELLING = {"cumprod", "cumsum", "sqrtm", "logical_or", "concatenate", "transpose", "std", "median",
           "norm", "clip", "minimum", "maximum", "einsum", "trace", "log1p", "swapaxes", "moveaxis"}
MODULES = {"jnp", "np", "jax", "numpy", "math", "scipy", "linalg", "random", "lax"}
ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.FloorDiv, ast.MatMult)
UNICODE = {"√": " sqrt ", "−": "-", "·": "*", "×": "*", "²": "**2", "ᾱ": "ab", "β": "beta", "ε": "eps",
           "₀": "0", "ₜ": "t", "σ": "sigma", "η": "eta", "φ": "phi", "γ": "gamma"}
TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|\d+\.\d*(?:e[-+]?\d+)?|\d*\.\d+(?:e[-+]?\d+)?|\d+(?:e[-+]?\d+)?"
                   r"|\*\*|//|\.\.\.|[-+*/()\[\],=<>:@.]")


def canonical(text: str) -> str:
    """Tokens of ``text`` with module prefixes dropped, names other than known functions and
    attributes replaced by ``v``, numbers normalised and no spaces."""
    for a, b in UNICODE.items():
        text = text.replace(a, b)
    toks = TOKEN.findall(text)
    out: list[str] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok in MODULES and i + 1 < len(toks) and toks[i + 1] == ".":
            i += 2
            continue
        if re.match(r"[A-Za-z_]", tok):
            after_dot = bool(out) and out[-1] == "."
            out.append(tok if (tok in FUNCS or after_dot) else "v")
        elif re.match(r"[\d.]", tok) and tok != "." and tok != "...":
            try:
                f = float(tok)
                out.append(str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f))
            except ValueError:
                out.append(tok)
        else:
            out.append(tok)
        i += 1
    return "".join(out)


class _StripArray(ast.NodeTransformer):
    """``jnp.asarray(x)`` / ``np.asarray(x, float)`` -> ``x``: a conversion is not a formula."""

    def visit_Call(self, node):
        self.generic_visit(node)
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        if name in ("asarray", "array", "float", "int") and node.args:
            return node.args[0]
        return node


def formula_fragments(code: str, min_size: int = 2) -> set[str]:
    """Canonical forms of the formula-bearing expressions in a solution block: two or more
    operations (arithmetic or known functions) when ``min_size`` is 2; hints before the
    last may name a single coefficient such as ``sqrt(1 - ab)``, so for them it is 3."""
    tree = _StripArray().visit(ast.parse(textwrap.dedent(code)))
    frags = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.expr):
            continue
        binops = sum(isinstance(n, ast.BinOp) and isinstance(n.op, ARITH) for n in ast.walk(node))
        calls = sum(isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", "")) in FUNCS
                    for n in ast.walk(node))
        if binops + calls >= min_size:
            frag = canonical(ast.unparse(node))
            if len(frag) >= 7:
                frags.add(frag)
    return frags


def telling_calls(code: str) -> set[str]:
    tree = ast.parse(textwrap.dedent(code))
    return {n.func.attr if isinstance(n.func, ast.Attribute) else n.func.id
            for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "attr", getattr(n.func, "id", "")) in TELLING}


def leaks(code: str, texts: dict[str, str], *, calls_in=()) -> list[str]:
    """Which of ``texts`` (what -> text) contain a formula fragment of ``code`` (or, for the
    texts named in ``calls_in``, a telling function name). Texts named "hint ..." are
    checked for fragments of three or more operations only."""
    frags, big = formula_fragments(code), formula_fragments(code, min_size=3)
    names = telling_calls(code)
    found = []
    for what, text in texts.items():
        canon = canonical(text)
        found += [f"{what} contains {f!r}" for f in (big if what.startswith("hint") else frags) if f in canon]
        if what in calls_in:
            found += [f"{what} names {n}()" for n in names
                      if re.search(rf"\b(?:jnp|np|numpy|jax\.numpy|scipy\.linalg)\.{n}\b|\b{n}\(", text)]
    return found


def _load_build_tool():
    spec = importlib.util.spec_from_file_location("build_lessons", REPO / "tools" / "build_lessons.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_lessons", module)
    spec.loader.exec_module(module)
    return module


def _graded_cells(path: Path):
    """(names checked, solution block code, learner cell source) for each graded cell."""
    pytest.importorskip("jupytext")
    build = _load_build_tool()
    nb = build.read_lesson(path)
    learner, _ = build.learner_notebook(nb, where=path.name)
    for sol, lrn in zip(nb.cells, learner.cells):
        if sol.cell_type != "code" or build.BEGIN not in sol.source:
            continue
        names = build.CHECKED_NAME.findall(sol.source)
        blocks = re.findall(r"### BEGIN SOLUTION\n(.*?)\n\s*### END SOLUTION", sol.source, re.DOTALL)
        yield names, "\n".join(textwrap.dedent(b) for b in blocks), lrn.source


# ----------------------------------------------------------------------------------------
# the detector itself


def test_the_leak_detector_finds_a_formula_written_differently():
    solution = "ab = schedule.alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1))\n" \
               "return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps"
    leaky = '"""returns x_t = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * eps"""'
    assert leaks(solution, {"stub": leaky})
    assert leaks("return jnp.cumprod(1.0 - jnp.asarray(betas))", {"stub": "use jnp.cumprod(1 - betas)"})
    assert leaks(solution, {"hint 1 of 3": "it is sqrt(ab) * x0 + sqrt(1 - ab) * eps"})
    assert not leaks(solution, {"hint 1 of 3": "one coefficient is sqrt(1 - ab)"})
    assert leaks("return jnp.cumprod(1.0 - betas)", {"stub": "(jnp.cumprod)"}, calls_in=("stub",))
    assert leaks("return ab / (1.0 - ab)", {"stub": "SNR = ᾱ / (1 − ᾱ)"})
    clean = '"""returns: x_t, same shape as x0; row b is noised to timestep t[b]"""'
    assert not leaks(solution, {"stub": clean}, calls_in=("stub",))


# ----------------------------------------------------------------------------------------
# every exercise: cases, hints, variants


EXERCISES = exercises.exercise_names()


@pytest.mark.parametrize("name", EXERCISES)
def test_exercise_has_named_cases_tiers_and_variants(name):
    ex = exercises.get_exercise(name)
    cases = ex.cases()
    assert all(isinstance(c, exercises.Case) for c in cases), f"{name}: use case(label, ...) for every case"
    labels = [c.label for c in cases]
    assert len(set(labels)) == len(labels) and not any(re.fullmatch(r"case \d+", lb) for lb in labels), labels
    assert len(ex.hints) >= 2, f"{name}: hints come in tiers (at least two)"
    assert len(ex.variants) >= 2, f"{name}: at least two known wrong variants"
    assert len({v.label for v in ex.variants}) == len(ex.variants)


@pytest.mark.parametrize("name", EXERCISES)
def test_each_known_mistake_gets_its_own_message(name):
    ex = exercises.get_exercise(name)
    assert exercises.grade(name, ex.reference).solved, f"{name}: the reference fails its own cases"
    for v in ex.variants:
        r = exercises.grade(name, v.fn)
        assert r.status == "wrong", f"{name}: variant {v.label!r} passes the grader ({r.message})"
        assert r.diagnosis == v.label and r.message.endswith(f"this looks like {v.message}"), \
            f"{name}: variant {v.label!r} is reported as: {r.message}"


def _perturbed(fn):
    def wrong(*args, **kwargs):
        return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64) * 1.37 + 0.11, fn(*args, **kwargs))
    return wrong


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_no_stub_message_or_early_hint_gives_the_formula(lesson):
    problems = []
    for names, code, stub in _graded_cells(lesson):
        for name in names:
            texts = {"stub": stub}
            if name in _core._REGISTRY:
                ex = exercises.get_exercise(name)
                texts["not-implemented message"] = _core.not_implemented_message(name)
                texts["wrong-answer message"] = exercises.grade(name, _perturbed(ex.reference)).message
                texts.update({f"variant {v.label!r}": v.message for v in ex.variants})
                hints = ex.hints
            else:
                q = _answers.get_answer_question(name)

                def stub_fn():
                    raise NotImplementedError

                texts["not-implemented message"] = exercises.grade_answer(name, stub_fn).message
                wrong = {"numeric": -12345.0, "choice": "z", "multi": "z"}[q.kind]
                texts["wrong-answer message"] = exercises.grade_answer(name, wrong).message
                hints = q.hints
            texts.update({f"hint {i + 1} of {len(hints)}": h for i, h in enumerate(hints[:-1])})
            problems += [f"{name}: {p}" for p in
                         leaks(code, texts, calls_in=("stub", "not-implemented message", "wrong-answer message"))]
    assert not problems, f"{lesson.name}:\n" + "\n".join(problems)


def test_every_exercise_and_question_has_a_solution_in_its_lesson():
    seen = set()
    for lesson in LESSONS:
        for names, code, _ in _graded_cells(lesson):
            assert code.strip(), f"{lesson.name}: an empty solution block for {names}"
            seen.update(names)
    missing = set(exercises.exercise_names()) | set(exercises.answer_names())
    missing -= seen
    assert not missing, f"registered but without a solution block in any lesson: {sorted(missing)}"
