"""Grade saved notebooks headlessly: the engine behind ``progress`` and the class ``report``.

Only two kinds of code run from a notebook: its top-level ``import`` statements, and the
cells that call ``check("name", ...)`` or ``check_answer("name", ...)`` (in notebook
order, in one namespace, so a later exercise may use an earlier one's function). In those
cells ``check``/``check_answer`` are replaced by recorders that grade silently, so one
failure never hides the next. Nothing else runs: no training, no figures.

:func:`grade_notebooks` runs the grading in a separate worker process (one per batch of
notebooks, one JAX start-up), so learner code that hangs or crashes the interpreter cannot
take the caller down: a notebook that exceeds ``timeout`` seconds is reported as timed
out and the worker is restarted for the rest.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

STATUSES = ("solved", "attempted", "not_started")
CHECKED = re.compile(r"""\bcheck(_answer)?\(\s*["'](\w+)["']""")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One graded exercise or question in one notebook."""

    name: str
    lesson: str
    status: str  # "solved", "attempted" or "not_started"
    message: str = ""
    diagnosis: str = ""  # a known mistake's label, "wrong values", "no answer", ...
    given: str = ""  # for short answers: the answer as given


def _code(cell) -> str:
    src = cell.get("source", "")
    src = "".join(src) if isinstance(src, list) else src
    return "\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!")))


def read_notebook(path) -> dict:
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path} is not a Jupyter notebook (no 'cells' list)")
    return nb


def graded_cells(nb: dict) -> list[tuple[str, list[str]]]:
    """(source, names checked in it) for every code cell that calls check/check_answer."""
    out = []
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        src = _code(cell)
        names = [m.group(2) for m in CHECKED.finditer(src)]
        if names:
            out.append((src, names))
    return out


def _imports(nb: dict) -> list[str]:
    stmts = []
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(_code(cell))
        except SyntaxError:
            continue
        stmts += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return stmts


def _lesson_of(name: str) -> str:
    from diffusion_jax.exercises import _answers, _core

    if name in _core._REGISTRY:
        return _core._REGISTRY[name].lesson
    if name in _answers._ANSWERS:
        return _answers._ANSWERS[name].lesson
    return "??"


def _outcome(result) -> Outcome:
    status = {"solved": "solved", "not_implemented": "not_started"}.get(result.status, "attempted")
    diagnosis = "no answer" if status == "not_started" else result.diagnosis
    return Outcome(result.name, _lesson_of(result.name), status, result.message, diagnosis, result.given)


def grade_notebook(path) -> list[Outcome]:
    """Grade one notebook in this process (see the module docstring for what runs)."""
    from diffusion_jax.exercises import _answers, _core

    nb = read_notebook(path)
    found: dict[str, Outcome] = {}

    def record(result):
        old = found.get(result.name)
        new = _outcome(result)
        if old is None or old.status != "solved":  # a name checked twice: keep a solved result
            found[result.name] = new

    def known(name):
        return name in _core._REGISTRY or name in _answers._ANSWERS

    def check(name, fn):
        if known(name):
            record(_core.grade(name, fn))

    def check_answer(name, value):
        if known(name):
            record(_answers.grade_answer(name, value))

    namespace: dict = {"__name__": "__graded_notebook__"}
    for stmt in _imports(nb):
        try:
            exec(stmt, namespace)  # noqa: S102 - the learner's own imports
        except Exception:  # an import that fails here fails in the notebook too
            pass
    namespace.update(check=check, check_answer=check_answer, hint=lambda *a, **k: None,
                     closed_book=lambda *a, **k: None, show_progress=lambda *a, **k: None)
    saved = _core.closed_book_active()
    try:
        for src, names in graded_cells(nb):
            try:
                exec(compile(src, f"<{Path(path).name}>", "exec"), namespace)  # noqa: S102
            except BaseException as err:  # noqa: BLE001 - the learner's cell failed outside check
                if isinstance(err, KeyboardInterrupt):
                    raise
                text = f"the cell raised {type(err).__name__}: {' '.join(str(err).split())[:160]}"
                for name in names:
                    if name not in found and known(name):
                        status = "not_started" if isinstance(err, NotImplementedError) else "attempted"
                        found[name] = Outcome(name, _lesson_of(name), status, text,
                                              "no answer" if status == "not_started" else
                                              f"cell error ({type(err).__name__})")
    finally:
        _core.set_closed_book(saved)
    return list(found.values())


# ----------------------------------------------------------------------------------------
# isolation: a worker process that grades notebooks one by one and reports each as a JSON line


STARTUP_TIMEOUT = 180.0  # seconds a worker may take to import JAX and the exercises


def _worker(paths: list[str]) -> int:
    from diffusion_jax.exercises._registry import load_all

    load_all()  # every lesson's exercises, before the clock starts for the first notebook

    print(json.dumps({"ready": True}), flush=True)
    for p in paths:
        try:
            rows = [dataclasses.asdict(o) for o in grade_notebook(p)]
            line = {"path": p, "outcomes": rows}
        except Exception as err:  # noqa: BLE001 - unreadable notebook: report, go on
            line = {"path": p, "error": f"{type(err).__name__}: {err}"}
        print(json.dumps(line), flush=True)
    return 0


def _reader(stream, q: queue.Queue):
    for line in stream:
        q.put(line)
    q.put(None)


def grade_notebooks(paths, *, timeout: float = 120.0, isolate: bool = True) -> dict[str, dict]:
    """``{path: {"outcomes": [Outcome, ...]} or {"error": text}}`` for every notebook.

    ``timeout``: seconds one notebook may take. With ``isolate=False`` everything runs in
    this process (faster; no protection against a hanging or crashing cell).
    """
    paths = [str(p) for p in paths]
    results: dict[str, dict] = {}
    if not isolate:
        for p in paths:
            try:
                results[p] = {"outcomes": grade_notebook(p)}
            except Exception as err:  # noqa: BLE001
                results[p] = {"error": f"{type(err).__name__}: {err}"}
        return results
    pending = list(paths)
    env = dict(os.environ, MPLBACKEND="Agg")
    while pending:
        proc = subprocess.Popen([sys.executable, "-m", "diffusion_jax.exercises.grading", *pending],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        q: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, q), daemon=True).start()
        try:
            ready = q.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            ready = None
        if ready is None or not ready.startswith('{"ready"'):
            proc.kill()
            proc.wait()
            raise RuntimeError("the grading worker did not start (python -m diffusion_jax.exercises.grading)")
        while pending:
            try:
                line = q.get(timeout=timeout)
            except queue.Empty:
                line = "TIMEOUT"
            if line is None or line == "TIMEOUT":
                proc.kill()
                proc.wait()
                why = (f"grading timed out after {timeout:g} s (a cell may loop forever)" if line == "TIMEOUT"
                       else "the grading process died (a cell may have crashed the interpreter)")
                results[pending.pop(0)] = {"error": why}
                break
            rec = json.loads(line)
            if rec["path"] in pending:
                pending.remove(rec["path"])
            results[rec["path"]] = ({"error": rec["error"]} if "error" in rec
                                    else {"outcomes": [Outcome(**o) for o in rec["outcomes"]]})
        else:
            proc.wait()
    return results


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
