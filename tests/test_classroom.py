"""Progress for a learner, and the instructor's quiz and class report, end to end.

A learner folder built from lessons 01 and 11 is graded by ``diffusion-jax progress``;
a quiz is built from the same lessons, three fake participants answer it (all right,
nothing, known mistakes), and ``diffusion-jax report`` turns their notebooks into a CSV
and a figure whose numbers are checked against what each participant wrote.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_jax import cli
from diffusion_jax.exercises import _answers, get_exercise, grading, progress, quiz

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("jupytext")
import jupytext  # noqa: E402
import nbformat  # noqa: E402


def _build_tool():
    spec = importlib.util.spec_from_file_location("build_lessons", REPO / "tools" / "build_lessons.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_lessons", module)
    spec.loader.exec_module(module)
    return module


def _solution_sources() -> dict[str, str]:
    """name -> the lesson cell that checks it, solution included (lessons 01 and 11)."""
    out = {}
    for path in sorted((REPO / "lessons").glob("*.py")):
        if path.name[:2] not in ("01", "11"):
            continue
        for cell in jupytext.read(str(path), fmt="py:percent").cells:
            for name in re.findall(r"""check(?:_answer)?\(\s*"(\w+)\"""", cell.source):
                out[name] = cell.source
    return out


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "diffusion_jax.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


def _replace_cell(nb, name, source):
    for cell in nb.cells:
        if cell.cell_type == "code" and re.search(rf"""check(?:_answer)?\(\s*"{name}\"""", cell.source):
            cell.source = source
            return
    raise KeyError(name)


def _mistake(name: str) -> tuple[str, str]:
    """A cell that answers ``name`` wrongly, and what the report should show for it."""
    if name in _answers._ANSWERS:
        q = _answers._ANSWERS[name]
        if q.kind == "numeric":
            return f'check_answer("{name}", -123.0)\n', "-123"
        wrong = next(c for c in q.choices if [c] != q.expected())
        return f'check_answer("{name}", "{wrong}")\n', wrong
    variant = get_exercise(name).variants[0]
    src = (f"from diffusion_jax.exercises import get_exercise\n"
           f'fn = get_exercise("{name}").variants[0].fn\ncheck("{name}", fn)\n')
    return src, variant.label


# ----------------------------------------------------------------------------------------


def test_progress_counts_solved_attempted_and_not_started(tmp_path):
    build = _build_tool()
    learner = tmp_path / "learner"
    build.build(REPO / "lessons", learner, tmp_path / "solutions", only=["01", "11"], solutions=False,
                log=lambda m: None)
    nb_path = learner / "01_forward_process.ipynb"
    nb = nbformat.read(str(nb_path), as_version=4)
    sols = _solution_sources()
    _replace_cell(nb, "alpha_bar_from_betas", sols["alpha_bar_from_betas"])  # solved
    _replace_cell(nb, "q_sample", _mistake("q_sample")[0])  # attempted: a known mistake
    _replace_cell(nb, "snr", "def snr(schedule):\n    return 1 / 0\n\ncheck('snr', snr)\n")  # attempted: crashes
    nbformat.write(nb, str(nb_path))
    # the subprocess path, as the command line uses it
    rep = progress.collect(learner, lessons=["01", "11"], isolate=True)
    one = rep["lessons"][0]
    assert (one["lesson"], one["solved"], one["attempted"], one["not_started"], one["total"]) == ("01", 1, 2, 1, 4)
    by_name = {e["name"]: e for e in one["exercises"]}
    assert by_name["q_sample"]["diagnosis"] == get_exercise("q_sample").variants[0].label
    assert by_name["snr"]["diagnosis"] == "crashed (ZeroDivisionError)"
    eleven = rep["lessons"][1]
    assert eleven["not_started"] == eleven["total"] == 56 and eleven["solved"] == 0
    # the command line: a table, and JSON with the same numbers
    res = _cli("progress", "--dir", str(learner), "--lessons", "01,11", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["totals"] == {"solved": 1, "attempted": 2, "not_started": 57, "total": 60}
    res = _cli("progress", "--dir", str(learner), "--lessons", "1")
    assert res.returncode == 0 and re.search(r"01\s+01_forward_process.ipynb\s+1\s+2\s+1\s+4", res.stdout)
    # the one-line call in a notebook: the same table
    from diffusion_jax.exercises import show_progress

    shown = show_progress(learner, lessons="01")
    assert shown["totals"] == {"solved": 1, "attempted": 2, "not_started": 1, "total": 4}


def test_progress_survives_a_cell_that_never_returns(tmp_path):
    build = _build_tool()
    build.build(REPO / "lessons", tmp_path, tmp_path / "s", only=["01"], solutions=False, log=lambda m: None)
    hang = tmp_path / "01_forward_process.ipynb"
    nb = nbformat.read(str(hang), as_version=4)
    _replace_cell(nb, "snr", "def snr(schedule):\n    while True:\n        pass\n\ncheck('snr', snr)\n")
    other = tmp_path / "other.ipynb"
    nbformat.write(nb, str(hang))
    nbformat.write(nbformat.read(str(hang), as_version=4), str(other))
    results = grading.grade_notebooks([hang, other], timeout=5)
    assert "timed out" in results[str(hang)]["error"] and "timed out" in results[str(other)]["error"]


def test_quiz_and_class_report_for_three_participants(tmp_path):
    quiz_path = tmp_path / "quiz.ipynb"
    res = _cli("quiz", "--lessons", "01:2,11:4", "--seed", "3", "--minutes", "90", "--out", str(quiz_path))
    assert res.returncode == 0, res.stderr
    nb = nbformat.read(str(quiz_path), as_version=4)
    meta = nb.metadata[quiz.META_KEY]
    names = [q["name"] for q in meta["questions"]]
    assert len(names) == 6 and [q["lesson"] for q in meta["questions"]] == ["01"] * 2 + ["11"] * 4
    assert "Time limit: 90 minutes" in nb.cells[0].source and "closed_book(minutes=90.0)" in nb.cells[1].source
    # seeded: the same seed gives the same questions, the subset comes from the lessons' pools
    again = quiz.build_quiz("01:2,11:4", seed=3, minutes=90)
    assert [q["name"] for q in again.metadata[quiz.META_KEY]["questions"]] == names
    other = {tuple(q["name"] for q in quiz.build_quiz("01:2,11:4", seed=s).metadata[quiz.META_KEY]["questions"])
             for s in range(6)}
    assert len(other) > 1
    # closed book: no solution, no hint import, no hint pointer in any cell
    text = "\n".join(c.source for c in nb.cells)
    sols = _solution_sources()
    for name in names:
        body = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", sols[name], re.DOTALL)[0]
        assert not [ln for ln in body.splitlines() if ln.strip() and ln.strip() in
                    {t.strip() for t in text.splitlines()}], name
    assert "hint(" not in text and "import check, check_answer, hint" not in text

    folder = tmp_path / "class"
    folder.mkdir()
    expected_wrong = {}
    for who in ("alice", "bob", "carol"):
        copy = nbformat.read(str(quiz_path), as_version=4)
        for name in names:
            if who == "alice":
                _replace_cell(copy, name, sols[name])
            elif who == "carol":
                src, shown = _mistake(name)
                _replace_cell(copy, name, src)
                expected_wrong[name] = shown
        nbformat.write(copy, str(folder / f"{who}.ipynb"))
    out = tmp_path / "report"
    res = _cli("report", str(folder), "--out", str(out))
    assert res.returncode == 0, res.stderr
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * len(names)
    status = {(r["participant"], r["question"]): r for r in rows}
    for name in names:
        assert status[("alice", name)]["correct"] == "1", status[("alice", name)]
        assert status[("bob", name)]["answer"] == "no answer"
        assert status[("carol", name)]["correct"] == "0" and status[("carol", name)]["answer"] == expected_wrong[name]
    with open(out / "questions.csv") as f:
        summary = {r["question"]: r for r in csv.DictReader(f)}
    for name in names:
        assert abs(float(summary[name]["share_correct"]) - 1 / 3) < 1e-9
        assert summary[name]["commonest_wrong"] == f"{expected_wrong[name]} (1)"
        assert summary[name]["no_answer"] == "1"
    png = (out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.parametrize("args,flag", [
    (["progress", "--dir", "/no/such/folder"], "--dir"),
    (["progress", "--lessons", "42"], "--lessons"),
    (["progress", "--timeout", "0"], "--timeout"),
    (["quiz", "--lessons", "01:99"], "--lessons"),
    (["quiz", "--lessons", "one"], "--lessons"),
    (["quiz", "--lessons", "01:2", "--out", "quiz.txt"], "--out"),
    (["quiz", "--lessons", "01:2", "--minutes", "-5"], "--minutes"),
    (["report", "/no/such/folder"], "folder"),
])
def test_bad_input_is_one_line_naming_the_flag(args, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err, err


def test_report_on_a_folder_without_notebooks(tmp_path, capsys):
    code = cli.main(["report", str(tmp_path)])
    assert code == 2 and "no .ipynb notebooks" in capsys.readouterr().err


def test_make_lab_builds_no_solutions():
    makefile = (REPO / "Makefile").read_text()
    lessons_rule = re.search(r"^lessons:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "--solutions" not in lessons_rule
    assert "--solutions-only" in re.search(r"^solutions:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
