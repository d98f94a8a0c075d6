"""Short-answer questions: register_answer / check_answer, and lesson 11's use of them."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from diffusion_jax.exercises import (
    ExerciseFailed,
    _core,
    answer_names,
    check,
    check_answer,
    exercise_names,
    register,
    register_answer,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def questions():
    names = []

    def add(name, **kw):
        kw.setdefault("lesson", "99")
        kw.setdefault("hint", "think about it")
        register_answer(name, **kw)
        names.append(name)
        return name

    yield add
    for n in names:
        _core._ANSWERS.pop(n, None)


def _fails(name, value) -> str:
    with pytest.raises(ExerciseFailed) as info:
        check_answer(name, value)
    msg = str(info.value)
    assert info.value._render_traceback_() == [msg] and "\n" not in msg
    assert msg.startswith(f"✘ {name}: ")
    return msg


def test_numeric_tolerance(questions, capsys):
    q = questions("_q_num", answer=9.0, kind="numeric", rtol=1e-2, teaches="01", explanation="0.9/0.1")
    assert check_answer(q, 9.05)
    assert capsys.readouterr().out == "✔ _q_num: correct — 0.9/0.1\n"
    assert check_answer(q, np.float32(8.95)) and check_answer(q, lambda: 9)
    msg = _fails(q, 9.2)
    assert msg == "✘ _q_num: 9.2 is not right — hint: think about it (→ lesson 01)"
    assert "expected a number" in _fails(q, "9")
    assert "expected one number" in _fails(q, [9.0, 9.0])


def test_numeric_atol_and_vectors(questions):
    q = questions("_q_vec", answer=lambda: np.array([0.0, 1.5]), kind="numeric", rtol=0, atol=1e-3)
    assert check_answer(q, (0.0005, 1.5))
    assert "expected 2 numbers" in _fails(q, 0.0)
    assert "is not right" in _fails(q, [0.01, 1.5])


def test_choice_normalisation(questions):
    q = questions("_q_choice", answer="b", kind="choice")
    for ok in ("b", " b ", "B", " B", lambda: "b"):
        assert check_answer(q, ok)
    assert _fails(q, "c") == "✘ _q_choice: 'c' is not right — hint: think about it"
    assert "pick exactly one letter" in _fails(q, "b, c")
    assert "among a, b, c, d" in _fails(q, "e")
    assert "among a, b, c, d" in _fails(q, "")
    assert "expected letter(s)" in _fails(q, 2)


def test_multi_normalisation(questions):
    q = questions("_q_multi", answer={"a", "c"}, kind="multi", choices="abcde")
    for ok in ("a, c", "CA", ["c", "a"], "a c", "a;c", {"A", "C"}):
        assert check_answer(q, ok)
    assert _fails(q, "a") == "✘ _q_multi: that set of letters is not right — hint: think about it"
    assert "is not right" in _fails(q, "a, c, e")


@pytest.mark.parametrize("answer,kind", [(3.0, "numeric"), ("d", "choice"), ("b, d", "multi")])
def test_a_wrong_answer_never_reveals_the_answer(questions, answer, kind):
    q = questions(f"_q_secret_{kind}", answer=answer, kind=kind, hint="no spoilers")
    wrong = {"numeric": 2.0, "choice": "a", "multi": "a, b"}[kind]
    msg = _fails(q, wrong)
    shown = msg.split(":", 1)[1]
    if kind == "numeric":
        assert "3" not in shown
    else:
        assert "d" not in shown.replace("no spoilers", "")  # the hint is the question author's text


def test_not_implemented_and_crash(questions):
    q = questions("_q_stub", answer=1.0, kind="numeric")

    def stub():
        raise NotImplementedError("the notebook's hint")

    assert _fails(q, stub) == "✘ _q_stub: not implemented yet — think about it"
    assert "crashed: ZeroDivisionError" in _fails(q, lambda: 1 / 0)


@pytest.mark.parametrize("kw,match", [
    (dict(kind="numbers", answer=1.0), "kind must be one of"),
    (dict(kind="numeric", answer="x"), "must be a number"),
    (dict(kind="numeric", answer=float("inf")), "finite"),
    (dict(kind="numeric", answer=1.0, rtol=0, atol=0), "rtol > 0 or atol > 0"),
    (dict(kind="numeric", answer=1.0, rtol=-1), "must be >= 0"),
    (dict(kind="choice", answer="e"), "among a, b, c, d"),
    (dict(kind="choice", answer="a, b"), "exactly one letter"),
    (dict(kind="multi", answer=""), "among a, b, c, d"),
    (dict(kind="choice", answer="a", choices="aab"), "distinct lower-case"),
    (dict(kind="choice", answer="a", hint=" "), "hint is required"),
])
def test_register_answer_validation(kw, match):
    kw.setdefault("hint", "h")
    with pytest.raises(ValueError, match=match):
        register_answer("_q_bad", lesson="99", **kw)
    assert "_q_bad" not in answer_names()


def test_name_clashes_and_unknown_names(questions):
    with pytest.raises(ValueError, match="identifier"):
        register_answer("not a name", lesson="99", answer=1.0, kind="numeric", hint="h")
    ex = "_test_answer_clash"
    register(ex, lesson="99", reference=abs, cases=lambda: [((1.0,), {})], hint="h")
    try:
        with pytest.raises(ValueError, match="already an exercise"):
            register_answer(ex, lesson="99", answer=1.0, kind="numeric", hint="h")
    finally:
        _core._REGISTRY.pop(ex, None)
    q = questions("_q_owned", answer=1.0, kind="numeric")
    with pytest.raises(ValueError, match="already registered by lesson 99"):
        register_answer(q, lesson="98", answer=1.0, kind="numeric", hint="h")
    with pytest.raises(ValueError, match="unknown answer question"):
        check_answer("_no_such_question", 1.0)


def test_check_is_unchanged_and_answers_stay_out_of_exercise_names(questions):
    q = questions("_q_separate", answer=1.0, kind="numeric")
    assert q in answer_names(lesson=99) and q not in exercise_names()
    name = "_test_still_works"
    register(name, lesson="99", reference=lambda x: 2 * x, cases=lambda: [((np.arange(3.0),), {})], hint="h")
    try:
        assert check(name, lambda x: x + x)
    finally:
        _core._REGISTRY.pop(name, None)


# ---------------------------------------------------------------------------- lesson 11


def _load_build_tool():
    spec = importlib.util.spec_from_file_location("build_lessons", REPO / "tools" / "build_lessons.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_lessons", module)
    spec.loader.exec_module(module)
    return module


def _answer_calls(source: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_answer"
                and node.args and isinstance(node.args[0], ast.Constant)):
            names.append(node.args[0].value)
    return names


LESSON11 = sorted((REPO / "lessons").glob("11_*.py"))


@pytest.mark.skipif(not LESSON11, reason="lesson 11 not written yet")
def test_lesson11_answer_questions_are_all_checked_once():
    pytest.importorskip("jupytext")
    nb = _load_build_tool().read_lesson(LESSON11[0])  # code cells as the notebook sees them
    used = [n for c in nb.cells if c.cell_type == "code" for n in _answer_calls(c.source)]
    assert len(used) == len(set(used)), "a question is checked twice"
    registered = set(answer_names(lesson="11"))
    assert set(used) == registered, (sorted(registered - set(used)), sorted(set(used) - registered))
    total = len(registered) + len(exercise_names(lesson="11"))
    assert total >= 40, f"lesson 11 has {total} questions; it promises at least 40"
    for name in registered:  # every question points to the lesson that teaches it
        q = _core.get_answer_question(name)
        assert q.teaches is not None and "01" <= q.teaches <= "10", name
        q.expected()  # every reference answer computes


@pytest.mark.skipif(not LESSON11, reason="lesson 11 not written yet")
def test_lesson11_learner_build_strips_every_answer():
    pytest.importorskip("jupytext")
    build = _load_build_tool()
    nb = build.read_lesson(LESSON11[0])
    learner, stats = build.learner_notebook(nb, where="11")
    assert stats["missing_hints"] == 0
    by_name = {}
    for sol, lrn in zip(nb.cells, learner.cells):
        if sol.cell_type != "code":
            continue
        for name in _answer_calls(sol.source):
            by_name[name] = (sol.source, lrn.source)
    assert set(by_name) == set(answer_names(lesson="11"))
    for name, (sol, lrn) in by_name.items():
        assert "### BEGIN SOLUTION" in sol, f"{name}: its answer is not inside a solution block"
        assert "raise NotImplementedError(" in lrn and "SOLUTION" not in lrn, name
        body = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", sol, re.DOTALL)[0]
        for line in body.splitlines():
            if line.strip() and not line.strip().startswith("# HINT"):
                assert line not in lrn.splitlines(), f"{name}: solution line leaked: {line!r}"
