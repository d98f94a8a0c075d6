"""The lesson system: the grader, the build tool, and every lesson in lessons/.

For every ``lessons/NN_topic.py`` (picked up automatically):
  (a) the solution notebook runs top to bottom without errors in fast mode;
  (b) the learner notebook (solutions stripped) fails only in cells tagged ``exercise``,
      every such cell fails, each with the one-line "not implemented yet" ExerciseFailed;
  (c) no solution text survives in the learner notebook;
  (d) the lesson's registered exercises and its ``check("name", ...)`` calls match.

Notebook tests need jupytext, nbformat, nbclient and ipykernel (the dev extra) and are
skipped with a reason when one is missing.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from diffusion_jax import exercises
from diffusion_jax.exercises import ExerciseFailed, Variant, case, check, closed_book, grade, hint, register
from diffusion_jax.exercises import _core

REPO = Path(__file__).resolve().parents[1]
LESSONS = sorted(p for p in (REPO / "lessons").glob("*.py") if re.match(r"^\d{2}_\w+\.py$", p.name))
CELL_TIMEOUT = 300  # seconds per cell
NOTEBOOK_TOOLS = ("jupytext", "nbformat", "nbclient", "ipykernel")


def _load_build_tool():
    spec = importlib.util.spec_from_file_location("build_lessons", REPO / "tools" / "build_lessons.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_lessons", module)
    spec.loader.exec_module(module)
    return module


build_lessons = _load_build_tool()


def _need_notebook_tools():
    missing = [m for m in NOTEBOOK_TOOLS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"lesson notebooks need {', '.join(missing)} (install the dev extra: pip install -e '.[dev]')")


# ----------------------------------------------------------------------------------------
# check() itself, on a throwaway exercise


@pytest.fixture
def toy_exercise():
    name = "_test_double"
    register(
        name,
        lesson="99",
        reference=lambda x: 2.0 * x,
        cases=lambda: [((jnp.arange(6.0).reshape(2, 3),), {}), ((jnp.ones((2, 3)),), {})],
        hint="multiply by two",
    )
    yield name
    _core._REGISTRY.pop(name, None)


def _fails(name, fn) -> str:
    with pytest.raises(ExerciseFailed) as info:
        check(name, fn)
    msg = str(info.value)
    assert info.value._render_traceback_() == [msg]  # Jupyter shows exactly one line
    assert "\n" not in msg and msg.startswith(f"✘ {name}: ")
    return msg


def test_check_pass(toy_exercise, capsys):
    result = check(toy_exercise, lambda x: x + x)
    assert result and result == True  # noqa: E712 - the documented return value
    assert capsys.readouterr().out == f"✔ {toy_exercise}: passed (2 cases)\n"


def test_check_wrong_shape(toy_exercise):
    msg = _fails(toy_exercise, lambda x: (2 * x)[0])
    assert "wrong shape on case 1 of 2 [case 1]: expected (2, 3), got (3,)" in msg


def test_check_wrong_values_reports_max_abs_error(toy_exercise):
    msg = _fails(toy_exercise, lambda x: 2 * x + jnp.array([0.0, 0.0, 0.31]))
    assert "wrong values on case 1 of 2 [case 1]" in msg and "(max abs error 0.31)" in msg
    assert "multiply by two" not in msg  # the hint is shown on request only
    assert msg.endswith(f'— hint("{toy_exercise}") if you are stuck')


def test_check_crash(toy_exercise):
    def crashes(x):
        if float(x.sum()) == 6.0:  # the second case: all ones
            raise KeyError("boom")
        return 2 * x

    msg = _fails(toy_exercise, crashes)
    assert "crashed on case 2 of 2 [case 2]: KeyError: 'boom'" in msg


def test_check_not_implemented(toy_exercise):
    def stub(x):
        raise NotImplementedError("the notebook's hint")

    msg = _fails(toy_exercise, stub)
    assert msg.startswith(f"✘ {toy_exercise}: not implemented yet — ") and "multiply" not in msg
    assert f'hint("{toy_exercise}")' in msg


def test_check_nan_is_wrong(toy_exercise):
    msg = _fails(toy_exercise, lambda x: 2 * x * jnp.where(x > 4, jnp.nan, 1.0))
    assert "NaN in your output on case 1 of 2 [case 1]: at 1 of 6 entries" in msg


def test_check_tuple_outputs_leafwise():
    name = "_test_pair"
    register(name, lesson="99", reference=lambda x: (x, {"sq": x**2}),
             cases=lambda: [((jnp.arange(3.0),), {})], hint="return (x, {'sq': x**2})")
    try:
        assert check(name, lambda x: (x, {"sq": x * x}))
        assert "wrong shape for output 2 of 2" in _fails(name, lambda x: (x, {"sq": x[:2]}))
        assert "wrong output structure" in _fails(name, lambda x: x)
        assert "max abs error 1" in _fails(name, lambda x: (x, {"sq": x * x + 1}))
    finally:
        _core._REGISTRY.pop(name, None)


@pytest.fixture
def diagnosed_exercise():
    """Rows labelled by t, named outputs and two known mistakes."""
    name = "_test_rows"
    t = jnp.array([0, 3, 7, 0])

    def reference(x, t):
        return x * (t[:, None] + 1.0), x.sum(axis=1)

    register(
        name, lesson="99", reference=reference,
        cases=lambda: [case("four rows, t = 0 twice", jnp.ones((4, 2)), t, rows=[f"t = {v}" for v in t]),
                       case("t = 5 only", jnp.full((1, 2), 2.0), jnp.array([5]))],
        hints=("think about rows", "the formula"), outputs=("scaled", "total"),
        variants=(Variant("off by one", lambda x, t: (x * t[:, None], x.sum(axis=1)), "forgetting the +1"),
                  Variant("wrong total", lambda x, t: (x * (t[:, None] + 1.0), x.mean(axis=1)), "a mean, not a sum"),
                  Variant("fails on t = 5", lambda x, t: (x * jnp.where(t == 5, 1.0, t + 1.0)[:, None], x.sum(axis=1)),
                          "a special case for t = 5")))
    yield name
    _core._REGISTRY.pop(name, None)


def test_failure_names_the_case_the_output_and_the_rows(diagnosed_exercise):
    name = diagnosed_exercise
    msg = _fails(name, lambda x, t: (x * (t[:, None] + 1.0) * jnp.where(t == 0, 2.0, 1.0)[:, None], x.sum(axis=1)))
    assert "wrong values for output 1 of 2 (scaled) on case 1 of 2 [four rows, t = 0 twice]" in msg
    assert "rows with t = 0 are wrong (2 of 4 rows)" in msg
    msg = _fails(name, lambda x, t: (x * (t[:, None] + 1.0), x.sum(axis=1) + (t == 7)))
    assert "(total)" in msg and "row with t = 7 is wrong (1 of 4 rows)" in msg
    msg = _fails(name, lambda x, t: (x * (t[:, None] + 1.0), x.sum(axis=1).at[0].add(1.0)))
    assert "row with t = 0 is wrong (1 of 4 rows)" in msg


def test_known_mistakes_are_named(diagnosed_exercise):
    name = diagnosed_exercise
    for label, message in [("off by one", "forgetting the +1"), ("wrong total", "a mean, not a sum")]:
        variant = next(v for v in _core.get_exercise(name).variants if v.label == label)
        result = grade(name, variant.fn)
        assert result.status == "wrong" and result.diagnosis == label
        assert result.message.endswith(f"this looks like {message}")
    # the third mistake differs from the reference only on case 2; a function that is right
    # on case 1 and makes that mistake on case 2 gets the partial match
    third = _core.get_exercise(name).variants[2]
    result = grade(name, third.fn)
    assert "on case 2 of 2 [t = 5 only]" in result.message and "this looks like a special case" in result.message


def test_hints_come_in_tiers_and_closed_book_turns_them_off(diagnosed_exercise, capsys):
    name = diagnosed_exercise
    hint(name)
    assert f"{name}, hint 1 of 2: think about rows" in capsys.readouterr().out
    closed_book(minutes=90)
    try:
        out = capsys.readouterr().out
        assert "time limit 90 minutes" in out
        hint(name)
        assert "closed-book quiz; no hints" in capsys.readouterr().out
        # a finished answer is recorded, right or wrong, without saying which
        assert check(name, lambda x, t: (x, x)) is None
        assert "answer recorded" in capsys.readouterr().out
        with pytest.raises(ExerciseFailed, match="not implemented yet"):
            check(name, lambda x, t: (_ for _ in ()).throw(NotImplementedError()))
    finally:
        closed_book(on=False)
    hint(name)
    assert "hint 2 of 2: the formula" in capsys.readouterr().out


def test_check_unknown_name_lists_names():
    with pytest.raises(ValueError, match="unknown exercise 'no_such_exercise'.*registered exercises"):
        check("no_such_exercise", lambda: None)


def test_register_rejects_a_name_taken_by_another_lesson(toy_exercise):
    with pytest.raises(ValueError, match="already registered by lesson 99"):
        register(toy_exercise, lesson="98", reference=abs, cases=lambda: [], hint="h")
    with pytest.raises(ValueError, match="non-empty hint is required"):
        register("_test_no_hint", lesson="98", reference=abs, cases=lambda: [], hint="")


def test_exercise_modules_import_cleanly():
    assert exercises.import_errors() == {}, exercises.import_errors()


# ----------------------------------------------------------------------------------------
# the build tool


LESSON_SRC = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Test lesson

# %% tags=["exercise"]
def double(x):
    """Return 2 x."""
    if True:
        ### BEGIN SOLUTION
        # HINT: add x to itself
        secret_answer = x + x
        return secret_answer
        ### END SOLUTION
'''


def test_strip_solutions_keeps_indentation_and_drops_the_hint():
    res = build_lessons.strip_solutions(LESSON_SRC + '\n\ncheck("double", double)\n')
    lines = res.source.splitlines()
    assert "        raise NotImplementedError" in lines
    assert '        # your code here  (hint("double") if you are stuck)' in lines
    assert "secret_answer" not in res.source and "SOLUTION" not in res.source
    assert "add x to itself" not in res.source  # a "# HINT:" line never reaches the stub
    assert res.blocks == 1
    with pytest.raises(build_lessons.BuildError, match="never closed"):
        build_lessons.strip_solutions("x = 1\n### BEGIN SOLUTION\ny = 2\n")


def test_build_never_overwrites_an_edited_learner_notebook(tmp_path):
    _need_notebook_tools()
    src, learner, sols = tmp_path / "lessons", tmp_path / "learner", tmp_path / "sols"
    src.mkdir()
    (src / "07_test.py").write_text(LESSON_SRC)
    quiet = lambda msg: None  # noqa: E731
    report = build_lessons.build(src, learner, sols, log=quiet)
    nb_path = learner / "07_test.ipynb"
    assert report[str(nb_path)] == "written"
    assert json.loads((learner / ".generated.json").read_text())["07_test.ipynb"]
    assert "secret_answer" in (sols / "07_test.ipynb").read_text()
    assert "secret_answer" not in nb_path.read_text()
    assert all(not c.get("outputs") for c in json.loads(nb_path.read_text())["cells"])

    # unchanged source, untouched notebook: rebuilding is a no-op
    assert build_lessons.build(src, learner, sols, log=quiet)[str(nb_path)] == "unchanged"
    # the source changes and the notebook is untouched: the notebook follows the source
    (src / "07_test.py").write_text(LESSON_SRC + "\n# %%\nprint('new cell')\n")
    assert build_lessons.build(src, learner, sols, log=quiet)[str(nb_path)] == "written"

    # the learner edits the notebook; the source changes again: the edit is kept
    edited = nb_path.read_text().replace("Test lesson", "Test lesson (my notes)")
    nb_path.write_text(edited)
    (src / "07_test.py").write_text(LESSON_SRC + "\n# %%\nprint('another cell')\n")
    notices = []
    assert build_lessons.build(src, learner, sols, log=notices.append)[str(nb_path)] == "kept"
    assert nb_path.read_text() == edited
    assert any("kept" in n and "--force" in n for n in notices)

    # --force replaces it and keeps a backup
    assert build_lessons.build(src, learner, sols, force=True, log=quiet)[str(nb_path)] == "forced"
    assert "another cell" in nb_path.read_text()
    assert (learner / "07_test.ipynb.bak").read_text() == edited


def test_kept_notice_does_not_claim_a_backup_that_does_not_exist(tmp_path):
    _need_notebook_tools()
    src, learner = tmp_path / "lessons", tmp_path / "learner"
    src.mkdir()
    (src / "07_test.py").write_text(LESSON_SRC)
    build_lessons.build(src, learner, tmp_path / "s", log=lambda m: None)
    (learner / "07_test.ipynb").write_text("edited")
    notices = []
    build_lessons.build(src, learner, tmp_path / "s", log=notices.append)
    kept = next(n for n in notices if n.startswith("kept"))
    assert not (learner / "07_test.ipynb.bak").exists() and "is then saved as 07_test.ipynb.bak" in kept


def test_build_cli_help_and_only(tmp_path, capsys):
    _need_notebook_tools()
    with pytest.raises(SystemExit) as info:
        build_lessons.main(["--help"])
    assert info.value.code == 0
    assert "--solutions-only" in capsys.readouterr().out
    src = tmp_path / "lessons"
    src.mkdir()
    (src / "07_test.py").write_text(LESSON_SRC)
    (src / "08_other.py").write_text(LESSON_SRC)
    rc = build_lessons.main(["--lessons-dir", str(src), "--learner-dir", str(tmp_path / "l"),
                             "--solutions-dir", str(tmp_path / "s"), "--only", "08", "--solutions-only"])
    assert rc == 0
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["08_other.ipynb"]
    assert not (tmp_path / "l").exists()


def test_build_cli_builds_learner_notebooks_only_unless_asked(tmp_path):
    _need_notebook_tools()
    src = tmp_path / "lessons"
    src.mkdir()
    (src / "07_test.py").write_text(LESSON_SRC)
    dirs = ["--lessons-dir", str(src), "--learner-dir", str(tmp_path / "l"), "--solutions-dir", str(tmp_path / "s"), "-q"]
    assert build_lessons.main(dirs) == 0
    assert (tmp_path / "l" / "07_test.ipynb").exists() and not (tmp_path / "s").exists()
    assert build_lessons.main(dirs + ["--solutions"]) == 0
    assert "secret_answer" in (tmp_path / "s" / "07_test.ipynb").read_text()


# ----------------------------------------------------------------------------------------
# every lesson


_BUILT: dict = {}
_EXECUTED: dict = {}


def _built(path: Path):
    if path not in _BUILT:
        nb = build_lessons.read_lesson(path)
        learner, stats = build_lessons.learner_notebook(nb, where=path.name)
        _BUILT[path] = (nb, learner, stats)
    return _BUILT[path]


def _execute(path: Path, which: str, monkeypatch):
    """Execute the solution or learner notebook once per session (cwd = repo root)."""
    key = (path, which)
    if key not in _EXECUTED:
        import copy

        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError

        monkeypatch.setenv("DIFFUSION_JAX_FAST", "1")
        monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        solution, learner, _ = _built(path)
        nb = copy.deepcopy(solution if which == "solution" else learner)
        client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                allow_errors=(which == "learner"),
                                resources={"metadata": {"path": str(REPO)}})
        start = time.perf_counter()
        try:
            client.execute()
            error = None
        except CellExecutionError as err:
            error = str(err)
        _EXECUTED[key] = (nb, error, time.perf_counter() - start)
    return _EXECUTED[key]


def _is_exercise(cell) -> bool:
    return cell.cell_type == "code" and "exercise" in cell.metadata.get("tags", [])


def _errors(cell):
    return [o for o in cell.get("outputs", []) if o.output_type == "error"]


def _lesson_id(path):
    return path.stem


lesson_params = pytest.mark.parametrize("lesson", LESSONS, ids=_lesson_id)
# executing a notebook takes 20-60 s on 2 cores: `make test-fast` (-m "not slow") skips these
notebook_params = pytest.mark.parametrize(
    "lesson", [pytest.param(p, marks=pytest.mark.slow) for p in LESSONS], ids=_lesson_id
)
# The learner runs of the longest lessons repeat their solution run's minute or more of
# compute; `make test` (CI) leaves them to `make test-all` to stay inside CI's budget.
HEAVY_LEARNER_RUNS = ("07", "08", "09", "12")
learner_params = pytest.mark.parametrize(
    "lesson", [pytest.param(p, marks=[pytest.mark.slow] + [pytest.mark.heavy] * p.name.startswith(HEAVY_LEARNER_RUNS))
               for p in LESSONS], ids=_lesson_id
)


@notebook_params
def test_solution_notebook_runs_clean(lesson, monkeypatch):
    _need_notebook_tools()
    nb, error, seconds = _execute(lesson, "solution", monkeypatch)
    assert error is None, f"{lesson.name} (solutions, fast mode) failed:\n{error[-3000:]}"
    print(f"{lesson.name}: solution notebook ran in {seconds:.1f} s")


@learner_params
def test_learner_notebook_fails_only_at_exercises(lesson, monkeypatch):
    _need_notebook_tools()
    nb, _, seconds = _execute(lesson, "learner", monkeypatch)
    exercise_cells = [c for c in nb.cells if _is_exercise(c)]
    assert len(exercise_cells) >= 2, f"{lesson.name}: a lesson needs at least two exercise cells"
    problems = []
    for n, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errs = _errors(cell)
        head = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
        if not _is_exercise(cell):
            problems += [f"cell {n} ({head!r}) is not an exercise but raised {e.ename}: {e.evalue[:200]}"
                         for e in errs]
            continue
        if not errs:
            problems.append(f"exercise cell {n} ({head!r}) did not fail in the learner notebook")
            continue
        e = errs[0]
        if e.ename != "ExerciseFailed" or "not implemented yet" not in e.evalue:
            problems.append(f"exercise cell {n} ({head!r}) raised {e.ename}: {e.evalue[:200]} "
                            "instead of the 'not implemented yet' ExerciseFailed")
        elif len(e.traceback) != 1 or "not implemented yet" not in e.traceback[0]:
            problems.append(f"exercise cell {n}: the learner sees a traceback, not one line: {e.traceback[:3]}")
    assert not problems, f"{lesson.name}:\n" + "\n".join(problems)
    print(f"{lesson.name}: learner notebook ran in {seconds:.1f} s")


@lesson_params
def test_no_solution_leaks_into_learner(lesson):
    _need_notebook_tools()
    solution, learner, stats = _built(lesson)
    assert stats["solution_lines"], f"{lesson.name} has no ### BEGIN SOLUTION blocks"
    learner_code = "\n".join(c.source for c in learner.cells if c.cell_type == "code")
    assert "### BEGIN SOLUTION" not in learner_code and "### END SOLUTION" not in learner_code
    # lines that also occur outside the solution blocks are not secrets
    outside = {ln.strip() for c in learner.cells for ln in c.source.splitlines()}
    learner_lines = {ln.strip() for c in learner.cells for ln in c.source.splitlines()}
    outside_solution = set()
    for c in solution.cells:
        inside = False
        for ln in c.source.splitlines():
            if ln.strip() == build_lessons.BEGIN:
                inside = True
            elif ln.strip() == build_lessons.END:
                inside = False
            elif not inside:
                outside_solution.add(ln.strip())
    leaked = [ln.strip() for ln in stats["solution_lines"]
              if ln.strip() and ln.strip() in learner_lines and ln.strip() not in outside_solution]
    assert not leaked, f"{lesson.name}: solution lines in the learner notebook: {leaked}"
    assert outside  # the learner notebook is not empty


@lesson_params
def test_learner_exercise_cells_let_run_all_continue(lesson):
    # JupyterLab's Run All stops at the first failing cell unless it is tagged raises-exception;
    # an unsolved exercise must not hide the rest of the lesson.
    _need_notebook_tools()
    solution, learner, _ = _built(lesson)
    exercise = [c for c in learner.cells if c.cell_type == "code" and "exercise" in c.metadata.get("tags", [])]
    assert exercise, f"{lesson.name} has no exercise cells"
    untagged = [c.source.splitlines()[0] for c in exercise if "raises-exception" not in c.metadata["tags"]]
    assert not untagged, f"{lesson.name}: exercise cells without raises-exception: {untagged}"
    assert not any("raises-exception" in c.metadata.get("tags", []) for c in solution.cells), \
        "solution notebooks must stay strict: an error there is a bug"


def _check_names(nb) -> set[str]:
    names = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse("\n".join(ln for ln in cell.source.splitlines()
                                       if not ln.lstrip().startswith(("%", "!"))))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check"
                    and node.args and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value)
    return names


@lesson_params
def test_checks_match_registered_exercises(lesson):
    _need_notebook_tools()
    number = lesson.name[:2]
    module = f"lesson{number}"
    errors = exercises.import_errors()
    assert module not in errors, f"diffusion_jax/exercises/{module}.py failed to import: {errors[module]}"
    registered = set(exercises.exercise_names(lesson=number))
    assert registered, f"no exercises registered with lesson={number!r} (diffusion_jax/exercises/{module}.py)"
    used = _check_names(_built(lesson)[0])
    all_names = set(exercises.exercise_names())
    assert not used - all_names, f"{lesson.name} checks unregistered exercises: {sorted(used - all_names)}"
    assert not registered - used, f"{lesson.name} never checks: {sorted(registered - used)}"


def test_every_lesson_file_is_named_nn_topic():
    stray = [p.name for p in (REPO / "lessons").glob("*.py") if not re.match(r"^\d{2}_\w+\.py$", p.name)]
    assert not stray, f"lesson sources must be named NN_topic.py: {stray}"
