"""The pure parts of tools/browser_test.py and tools/build_book.py (no browser, no kernel)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


bt = _load("browser_test")
bb = _load("build_book")


# ----------------------------------------------------------------------------------------
# browser_test: arguments and the server command


def test_help_and_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        bt.parse_args(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--lessons", "--out-dir", "--notebook-timeout", "--server-timeout", "--chromium"):
        assert option in out
    args = bt.parse_args([])
    assert args.lessons == ["01", "06"] and args.out_dir == REPO / "outputs" / "browser"


def test_lesson_numbers():
    assert bt.lesson_numbers(["6,1", "3"]) == ["01", "03", "06"]
    assert bt.lesson_numbers(None) == ["01", "06"]
    assert bt.lesson_numbers(["none"]) == []
    with pytest.raises(SystemExit, match="two-digit"):
        bt.lesson_numbers(["abc"])


def test_find_lesson(tmp_path):
    (tmp_path / "01_intro.py").write_text("")
    (tmp_path / "01notes.py").write_text("")
    assert bt.find_lesson(tmp_path, "01") == tmp_path / "01_intro.py"
    assert bt.find_lesson(tmp_path, "06") is None


def test_lab_command_and_env(tmp_path):
    cmd = bt.lab_command("py", tmp_path, 8123, "tok", tmp_path / "s", as_root=True)
    assert cmd[:3] == ["py", "-m", "jupyterlab"]
    assert "--ip=127.0.0.1" in cmd and "--port=8123" in cmd and "--allow-root" in cmd
    assert "--IdentityProvider.token=tok" in cmd and "--no-browser" in cmd
    assert "--LabApp.expose_app_in_browser=True" in cmd  # run_all reads the page's own notebook model
    assert "--allow-root" not in bt.lab_command("py", tmp_path, 1, "t", tmp_path, as_root=False)
    env = bt.lab_env({"MPLBACKEND": "Agg", "HOME": "/h"}, tmp_path)
    assert env["DIFFUSION_JAX_FAST"] == "1" and env["HOME"] == "/h"
    assert env["MPLBACKEND"] == bt.INLINE_BACKEND  # Agg would hide every figure
    assert env["JUPYTERLAB_SETTINGS_DIR"].startswith(str(tmp_path))
    assert bt.LAB_OVERRIDES["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"


def test_free_port_is_bindable():
    import socket

    port = bt.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


# ----------------------------------------------------------------------------------------
# browser_test: judging a saved notebook


def _code(n, tags=(), outputs=(), source="x = 1"):
    return {"cell_type": "code", "id": f"c{n}", "execution_count": n, "source": source,
            "metadata": {"tags": list(tags)}, "outputs": list(outputs)}


def _err(ename="ExerciseFailed", evalue="✘ f: not implemented yet — add one", lines=1):
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [evalue] * lines}


def _learner(*cells):
    return {"cells": list(cells)}


def test_learner_notebook_as_expected():
    nb = _learner(_code(1), _code(2, ["exercise"], [_err()]), _code(3, ["exercise"], [_err()]), _code(4))
    assert bt.learner_problems(nb) == []


def test_learner_notebook_problems():
    nb = _learner(
        _code(1, outputs=[_err("NameError", "x")]),            # error outside an exercise
        _code(2, ["exercise"]),                                # exercise that did not fail
        _code(3, ["exercise"], [_err(lines=7)]),               # a traceback
        _code(4, ["exercise"], [_err("TypeError", "boom")]),   # the wrong error
        {**_code(5), "execution_count": None},                 # never ran
    )
    problems = "\n".join(bt.learner_problems(nb))
    assert "cell 0" in problems and "not an exercise but raised NameError" in problems
    assert "exercise cell 1" in problems and "did not fail" in problems
    assert "7-line traceback" in problems
    assert "raised TypeError: boom" in problems
    assert "cell 4" in problems and "never ran" in problems


def test_solution_notebook_problems():
    assert bt.solution_problems(_learner(_code(1), _code(2))) == []
    # JupyterLab never numbers a blank code cell: not a cell that "never ran"
    assert bt.solution_problems(_learner(_code(1), {**_code(2, source="  \n"), "execution_count": None})) == []
    problems = bt.solution_problems(_learner(_code(1, outputs=[_err("ValueError", "bad")])))
    assert problems == ["cell 0 ('x = 1') raised ValueError: bad"]


def test_run_all_stopped_hint():
    stopped = _learner(_code(1), _code(2, ["exercise"], [_err()]), {**_code(3), "execution_count": None})
    assert "raises-exception" in bt.run_all_stopped_hint(stopped)
    tagged = _learner(_code(1), _code(2, ["exercise", "raises-exception"], [_err()]), _code(3))
    assert bt.run_all_stopped_hint(tagged) == ""


def test_visible_error_problems():
    line = "✘ q_sample: not implemented yet — reshape alpha_bar"
    assert bt.visible_error_problems([{"index": 3, "exercise": True, "errors": [line + "\n"]}]) == []
    tb = "Traceback (most recent call last):\n  ...\nExerciseFailed: " + line
    assert "instead of the one line" in bt.visible_error_problems([{"index": 3, "exercise": True, "errors": [tb]}])[0]
    assert "shows an error" in bt.visible_error_problems([{"index": 1, "exercise": False, "errors": ["oops"]}])[0]


def test_stderr_notes_are_not_errors_but_error_outputs_are():
    note = "loaded the shipped weights of mnist-unet (6be2b9f0a09c)\n"
    nb = {"cells": [{"cell_type": "markdown"},
                    {"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stderr", "text": [note]}]},
                    {"cell_type": "code", "outputs": [{"output_type": "error", "ename": "ValueError",
                                                       "evalue": "bad", "traceback": ["ValueError: bad"]}]}]}
    dom = [{"index": 1, "errors": [note.strip()]}, {"index": 2, "errors": ["ValueError: bad"]}]
    kept = bt.without_stderr_notes(dom, nb)
    assert kept[0]["errors"] == [] and kept[1]["errors"] == ["ValueError: bad"]
    problems = bt.visible_error_problems([{**c, "exercise": False} for c in kept])
    assert len(problems) == 1 and "ValueError: bad" in problems[0]


# ----------------------------------------------------------------------------------------
# browser_test: when has Run All finished? (from requests, replies and execution counts)


def _cells(*counts, blank=()):
    return [{"index": 2 * i + 1, "id": f"c{i}", "count": c, "blank": i in blank, "head": f"line {i}"}
            for i, c in enumerate(counts)]


def _reqs(*statuses, ids=None):
    ids = ids if ids is not None else [f"c{i}" for i in range(len(statuses))]
    return [{"cellId": cid, "status": st} for cid, st in zip(ids, statuses)]


def _states(pending):
    return [(c["id"], c["state"]) for c in pending]


def test_run_all_finished_when_every_cell_answered_and_counted():
    assert bt.run_all_pending(_cells(1, 2, 3), _reqs("ok", "ok", "ok")) == []
    # an unsolved exercise tagged raises-exception: an error reply, and Run All goes on
    assert bt.run_all_pending(_cells(1, 2, 3), _reqs("ok", "error", "ok")) == []


def test_a_long_cell_is_owed_however_idle_the_kernel_looks():
    # cell 1 trains a model under a tqdm widget: no reply yet, so Run All is not over,
    # whatever the kernel's idle/busy state did meanwhile; later cells are queued
    pending = bt.run_all_pending(_cells(1, None, None), _reqs("ok", None, None))
    assert _states(pending) == [("c1", "running"), ("c2", "queued")]


def test_nothing_sent_yet_is_not_finished():
    assert _states(bt.run_all_pending(_cells(None, None), [])) == [("c0", "not sent"), ("c1", "not sent")]
    # JupyterLab sent only the first request: the second cell is owed
    assert _states(bt.run_all_pending(_cells(1, None), _reqs("ok"))) == [("c1", "not sent")]


def test_answered_but_count_not_yet_in_the_model():
    assert _states(bt.run_all_pending(_cells(1, None), _reqs("ok", "ok"))) == [("c1", "finishing")]


def test_aborted_cells_after_an_unmarked_error_end_the_run():
    # Run All stopped at c1 (no raises-exception tag): the kernel aborts c2 and c3, which
    # never get a count; the run is over and the saved notebook says which cells never ran
    assert bt.run_all_pending(_cells(1, 2, None, None), _reqs("ok", "error", "aborted", "aborted")) == []


def test_blank_cells_are_not_owed():
    assert bt.run_all_pending(_cells(1, None, 2, blank={1}), _reqs("ok", "ok", ids=["c0", "c2"])) == []


def test_requests_without_cell_ids_follow_cell_order():
    cells = _cells(1, None, None, blank={1})
    assert bt.run_all_pending(cells, _reqs("ok", None, ids=[None, None])) == [
        {**cells[2], "state": "running"}]


def test_a_rerun_cell_is_judged_by_its_last_request():
    pending = bt.run_all_pending(_cells(1, 2), _reqs("ok", "ok", None, ids=["c0", "c1", "c1"]))
    assert _states(pending) == [("c1", "running")]


def test_pending_message_names_the_cells():
    pending = bt.run_all_pending(_cells(1, None, None), _reqs("ok", None, None))
    msg = bt.pending_message(pending, 1200)
    assert msg.startswith("Run All had not finished after 1200 s")
    assert "cell 3 ('line 1') was still running" in msg and "5 ('line 2') never ran" in msg
    many = bt.run_all_pending(_cells(*[None] * 12), [])
    assert "and 4 more never ran" in bt.pending_message(many, 5)


def test_solution_source_and_exercise_name():
    nb = {"cells": [{"id": "01-005", "source": ["def f():\n", "    return 1\n", "check('f', f)"]}]}
    src = bt.solution_cell_source(nb, "01-005")
    assert src.endswith("check('f', f)")
    assert bt.exercise_name(src) == "f"
    assert bt.exercise_name('check(\n    "q_sample", q_sample)') == "q_sample"
    with pytest.raises(KeyError):
        bt.solution_cell_source(nb, "nope")


def test_ci_runs_the_browser_test_on_an_empty_checkpoint_cache():
    # with the cache `make test` filled, lesson 06 would load its model instead of training
    # it under a progress bar, which is what a fresh clone does (and what once fooled run_all)
    lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    browser = [ln for ln in lines if ln.endswith("make test-browser")]
    assert len(browser) == 1 and browser[0].startswith('DIFFUSION_JAX_CACHE="$')
    var = browser[0].split("=", 1)[1].split()[0].strip('"${}')
    assert any(ln.startswith(f'{var}="$(mktemp -d') for ln in lines[:lines.index(browser[0])])


# ----------------------------------------------------------------------------------------
# build_book: table of contents and landing page

README = """# Lessons

## Lesson map

| # | lesson | the chapter's worked example it rebuilds | exercises |
|---|---|---|---|
| 01 | [forward process](01_forward_process.py) | single pixel | `snr` |
| 02 | training objective | MSE at 100 and 700 | see the lesson |
| 07 | fast sampling | budget | planned |

## Writing a lesson

| 99 | not a lesson row |
"""


def test_toc_lists_every_lesson_in_order(tmp_path):
    for name in ("02_b.py", "01_a.py", "10_c.py", "notes.py", "README.md"):
        (tmp_path / name).write_text("")
    stems = [p.stem for p in bb.find_lessons(tmp_path)]
    assert stems == ["01_a", "02_b", "10_c"]
    toc = bb.toc_yaml(stems)
    assert "format: jb-book\nroot: intro\n" in toc
    assert toc.index("- file: 01_a") < toc.index("- file: 02_b") < toc.index("- file: 10_c")
    assert "parts:" not in bb.toc_yaml([])
    with pytest.raises(bb.BookError, match="no lesson numbered 05"):
        bb.find_lessons(tmp_path, ["05"])
    assert [p.stem for p in bb.find_lessons(tmp_path, ["2"])] == ["02_b"]


def test_toc_is_valid_yaml():
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(bb.toc_yaml(["01_a", "02_b"]))
    assert data == {"format": "jb-book", "root": "intro",
                    "parts": [{"caption": "Lessons", "chapters": [{"file": "01_a"}, {"file": "02_b"}]}]}


def test_lesson_map():
    rows = bb.parse_lesson_map(README)
    assert [r[0] for r in rows] == ["01", "02", "07"]
    assert rows[0][1] == "[forward process](01_forward_process.py)"
    table = bb.lesson_map_markdown(rows, {"01": ("01_forward_process", "Lesson 01"),
                                          "03": ("03_reverse", "Lesson 03 — reverse")},
                                   sources={"01", "02", "03"})
    lines = table.splitlines()
    assert lines[0].startswith("| # | lesson |") and lines[1] == "|---|---|---|---|"
    assert lines[2] == "| 01 | [forward process](01_forward_process.ipynb) | single pixel | `snr` |"
    assert lines[3].startswith("| 02 | training objective *(not in this build)* |")
    assert lines[4] == "| 03 | [Lesson 03 — reverse](03_reverse.ipynb) | | see the lesson |"
    assert lines[5].startswith("| 07 | fast sampling *(planned)* | budget |")
    assert "99" not in table


def test_relink_lessons():
    md = "see [01](01_forward_process.py), [two](02_b.ipynb#sec) and [x](09_gone.py); [web](https://a.py)"
    out = bb.relink_lessons(md, {"01_forward_process", "02_b"})
    assert out == "see [01](01_forward_process.ipynb), [two](02_b.ipynb#sec) and x; [web](https://a.py)"


def test_fill_intro():
    page = bb.fill_intro("# Book\n<!-- EXECUTION MODE -->\n\n<!-- LESSON MAP -->\n", "| t |", "fast")
    assert "| t |" in page and "fast mode" in page and "<!--" not in page
    assert "full mode" in bb.fill_intro("<!-- EXECUTION MODE -->\n<!-- LESSON MAP -->", "", "full")
    with pytest.raises(bb.BookError, match="LESSON MAP"):
        bb.fill_intro("# no marker", "", "fast")


def test_book_mode_defaults_to_full():
    assert bb.default_full({}) is True
    assert bb.default_full({"BOOK_FAST": "1"}) is False and bb.default_full({"BOOK_FAST": "0"}) is True
    assert bb.default_full({"BOOK_FULL": "0"}) is False and bb.default_full({"BOOK_FULL": "1"}) is True
    assert bb.default_full({"BOOK_FULL": "1", "BOOK_FAST": "1"}) is False  # asking for fast wins
    assert bb.parse_args(["--fast"]).full is False and bb.parse_args(["--full"]).full is True


def test_book_sources_exist():
    intro = (REPO / "book" / "intro.md").read_text()
    assert bb.MAP_MARKER in intro and bb.MODE_MARKER in intro
    config = (REPO / "book" / "_config.yml").read_text()
    assert 'execute_notebooks: "off"' in config


def test_warnings_in_and_digest(tmp_path):
    log = "reading sources\n/x/01.ipynb:3: WARNING: undefined label\nbuild succeeded\n"
    assert bb.warnings_in(log) == ["/x/01.ipynb:3: WARNING: undefined label"]
    src = tmp_path / "01_a.py"
    src.write_text("a")
    assert bb.source_digest(src, "fast") != bb.source_digest(src, "full")
    first = bb.source_digest(src, "fast")
    src.write_text("b")
    assert bb.source_digest(src, "fast") != first


def test_book_args():
    args = bb.parse_args(["--only", "01,2", "--no-html"])
    assert args.only == ["01", "2"] and args.no_html and args.out_dir == REPO / "build" / "book"


def test_vendor_mathjax_copies_files_and_points_config_at_them(tmp_path):
    yaml = pytest.importorskip("yaml")
    src = tmp_path / "mathjax"
    for part in bb.MATHJAX_PARTS:
        target = src / part if part.endswith(".js") else src / part / "x.js"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("// js")
    out = tmp_path / "book"
    out.mkdir()
    (out / "_config.yml").write_text("title: t\nsphinx:\n  config:\n    nb_merge_streams: true\n")
    assert bb.vendor_mathjax(out, src)
    assert (out / "_vendor" / "mathjax" / "MathJax.js").is_file()
    assert (out / "_vendor" / "mathjax" / "jax" / "output" / "CommonHTML" / "x.js").is_file()
    config = yaml.safe_load((out / "_config.yml").read_text())["sphinx"]["config"]
    assert config["nb_merge_streams"] is True  # existing settings survive
    assert config["mathjax_path"].startswith("mathjax/MathJax.js")
    assert config["html_static_path"] == ["_vendor"]
    assert not bb.vendor_mathjax(out, tmp_path / "missing")  # no local MathJax: nothing changes
