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
    _answers,
    _core,
    answer_names,
    check,
    check_answer,
    exercise_names,
    grade_answer,
    hint,
    register,
    register_answer,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def questions():
    names = []

    def add(name, **kw):
        kw.setdefault("lesson", "99")
        if "hints" not in kw:
            kw.setdefault("hint", "think about it")
        register_answer(name, **kw)
        names.append(name)
        return name

    yield add
    for n in names:
        _answers._ANSWERS.pop(n, None)


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
    assert _fails(q, 7.0) == '✘ _q_num: 7 is not right (→ lesson 01); hint("_q_num") gives a hint'
    # within five tolerances: close, but the message says neither the answer nor the direction
    msg = _fails(q, 9.2)
    assert msg.startswith("✘ _q_num: close — 9.2 is near the answer") and "9.0" not in msg
    assert "expected a number" in _fails(q, "9")
    assert "expected one number" in _fails(q, [9.0, 9.0])


def test_significant_figures_and_too_coarse_rounding(questions):
    # the question asks for two significant figures of 0.07859
    q = questions("_q_sig", answer=0.0785872, kind="numeric", sig_figs=2)
    for ok in (0.079, 0.0786, 0.078, 0.0795):  # within one unit of the second figure
        assert check_answer(q, ok)
    msg = _fails(q, 0.08)  # the answer, rounded to one figure: "close, give more precision"
    assert "close — 0.08 is rounded too coarsely; give 2 significant figures" in msg
    assert "not right" in _fails(q, 0.06)
    assert "0.0786" not in _fails(q, 0.08) and "0.079" not in _fails(q, 0.08)
    assert "near the answer but not within the tolerance" in _fails(q, 0.0805)
    with pytest.raises(ValueError, match="sig_figs must be a positive int"):
        register_answer("_q_bad_sig", lesson="99", answer=1.0, kind="numeric", hint="h", sig_figs=0)


def test_given_significant_figures():
    assert [_answers._given_sig_figs(v) for v in (0.08, 0.078, 9.0, 1200.0, 12.5, 0.000405)] == [1, 2, 1, 2, 3, 3]


def test_numeric_atol_and_vectors(questions):
    q = questions("_q_vec", answer=lambda: np.array([0.0, 1.5]), kind="numeric", rtol=0, atol=1e-3)
    assert check_answer(q, (0.0005, 1.5))
    assert "expected 2 numbers" in _fails(q, 0.0)
    assert "is not right" in _fails(q, [0.1, 1.5])


def test_choice_normalisation(questions):
    q = questions("_q_choice", answer="b", kind="choice")
    for ok in ("b", " b ", "B", " B", lambda: "b"):
        assert check_answer(q, ok)
    assert _fails(q, "c") == """✘ _q_choice: 'c' is not right; hint("_q_choice") gives a hint"""
    assert "pick exactly one letter" in _fails(q, "b, c")
    assert "among a, b, c, d" in _fails(q, "e")
    assert "among a, b, c, d" in _fails(q, "")
    assert "expected letter(s)" in _fails(q, 2)


def test_multi_normalisation_and_partial_credit(questions):
    q = questions("_q_multi", answer={"a", "c", "d"}, kind="multi", choices="abcde")
    for ok in ("a, c, d", "DCA", ["c", "a", "d"], "a c d", "a;c;d", {"A", "C", "D"}):
        assert check_answer(q, ok)
    assert "partly right: 1 of 3 letters right, 2 missing" in _fails(q, "a")
    assert "partly right: 3 of 3 letters right, 1 extra" in _fails(q, "a, c, d, e")
    assert "partly right: 2 of 3 letters right, 1 extra" in _fails(q, "a, c, b")
    assert "0 of 3 letters right, 2 extra" in _fails(q, "b, e") and "partly" not in _fails(q, "b, e")


@pytest.mark.parametrize("answer,kind", [(3.0, "numeric"), ("d", "choice"), ("b, d", "multi")])
def test_a_wrong_answer_never_reveals_the_answer_or_the_hint(questions, answer, kind):
    q = questions(f"_q_secret_{kind}", answer=answer, kind=kind, hint="the secret formula")
    wrong = {"numeric": 2.0, "choice": "a", "multi": "a, b"}[kind]
    msg = _fails(q, wrong)
    assert "secret formula" not in msg
    shown = msg.split(":", 1)[1]
    if kind == "numeric":
        assert "3" not in shown
    else:
        assert "d" not in shown.replace("hint", "")


def test_hint_tiers_in_order(questions, capsys):
    q = questions("_q_tiers", answer=1.0, kind="numeric", hints=("first nudge", "second", "the formula"))
    hint(q)
    assert "hint 1 of 3: first nudge" in capsys.readouterr().out
    hint(q)
    hint(q)
    out = capsys.readouterr().out
    assert "hint 2 of 3: second" in out and "hint 3 of 3: the formula" in out and "last hint" in out
    hint(q, 1)
    assert "hint 1 of 3" in capsys.readouterr().out
    with pytest.raises(ValueError, match="tier must be an int in 1..3"):
        hint(q, 4)
    with pytest.raises(ValueError, match="no exercise or question named"):
        hint("_no_such_name")


def test_not_implemented_and_crash(questions):
    q = questions("_q_stub", answer=1.0, kind="numeric", hint="the secret")

    def stub():
        raise NotImplementedError("the notebook's hint")

    msg = _fails(q, stub)
    assert msg.startswith("✘ _q_stub: not implemented yet — ") and "secret" not in msg
    assert 'hint("_q_stub")' in msg
    assert "crashed: ZeroDivisionError" in _fails(q, lambda: 1 / 0)
    assert grade_answer(q, stub).status == "not_implemented"
    assert grade_answer(q, 1.0).status == "solved" and grade_answer(q, 5.0).status == "wrong"


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
    (dict(kind="choice", answer="a", hint=" "), "non-empty hint is required"),
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
        q = _answers.get_answer_question(name)
        assert q.teaches is not None and "01" <= q.teaches <= "10", name
        q.expected()  # every reference answer computes


@pytest.mark.skipif(not LESSON11, reason="lesson 11 not written yet")
def test_lesson11_learner_build_strips_every_answer():
    pytest.importorskip("jupytext")
    build = _load_build_tool()
    nb = build.read_lesson(LESSON11[0])
    learner, _ = build.learner_notebook(nb, where="11")
    by_name = {}
    for sol, lrn in zip(nb.cells, learner.cells):
        if sol.cell_type != "code":
            continue
        for name in _answer_calls(sol.source):
            by_name[name] = (sol.source, lrn.source)
    assert set(by_name) == set(answer_names(lesson="11"))
    for name, (sol, lrn) in by_name.items():
        assert "### BEGIN SOLUTION" in sol, f"{name}: its answer is not inside a solution block"
        assert "raise NotImplementedError" in lrn and "SOLUTION" not in lrn, name
        body = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", sol, re.DOTALL)[0]
        for line in body.splitlines():
            if line.strip() and not line.strip().startswith("# HINT"):
                assert line not in lrn.splitlines(), f"{name}: solution line leaked: {line!r}"
