"""``diffusion-jax progress``: how far a learner is, lesson by lesson.

Grades the learner's own saved notebooks (``NN_topic.ipynb`` in a folder, by default
``build/learner``) headlessly, with :mod:`diffusion_jax.exercises.grading`, and prints a
table of solved / attempted / not started exercises and questions per lesson (``--json``
for a machine-readable version, ``--detail`` for one line per exercise). In a notebook::

    from diffusion_jax.exercises import show_progress
    show_progress()        # grades the saved notebooks next to this one
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from diffusion_jax.exercises.grading import Outcome, grade_notebooks

LESSON_NOTEBOOK = re.compile(r"^(\d{2})_\w+\.ipynb$")
DEFAULT_DIR = Path("build") / "learner"


def expected_names(lesson: str) -> list[str]:
    from diffusion_jax.exercises._answers import answer_names
    from diffusion_jax.exercises._core import exercise_names
    from diffusion_jax.exercises._registry import load_all

    load_all()
    return sorted(exercise_names(lesson=lesson) + answer_names(lesson=lesson))


def registered_lessons() -> list[str]:
    """Lessons with an exercise module (``lessonNN.py``) that registers something."""
    from diffusion_jax.exercises._registry import lesson_modules

    return [m[-2:] for m in lesson_modules() if expected_names(m[-2:])]


def _parse_lessons(text) -> list[str] | None:
    if text is None:
        return None
    known = registered_lessons()
    wanted = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit():
            raise ValueError(f"--lessons: expected lesson numbers such as 01,03, got {item!r}")
        item = item.zfill(2)
        if item not in known:
            raise ValueError(f"--lessons: no exercises registered for lesson {item} (known: {', '.join(known)})")
        wanted.append(item)
    if not wanted:
        raise ValueError("--lessons: give at least one lesson number, e.g. --lessons 01,02")
    return sorted(set(wanted))


def lesson_notebooks(folder: Path) -> dict[str, Path]:
    """``{"01": folder/01_forward_process.ipynb, ...}`` for the lesson notebooks in ``folder``."""
    out = {}
    for p in sorted(folder.glob("*.ipynb")):
        m = LESSON_NOTEBOOK.match(p.name)
        if m:
            out.setdefault(m.group(1), p)
    return out


def collect(folder, *, lessons=None, timeout: float = 120.0, isolate: bool = True) -> dict:
    """The progress report as a dict (what ``--json`` prints)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--dir: no such folder: {folder}")
    lessons = lessons or registered_lessons()
    books = lesson_notebooks(folder)
    graded = grade_notebooks([books[n] for n in lessons if n in books], timeout=timeout, isolate=isolate)
    rows = []
    for n in lessons:
        path = books.get(n)
        result = graded.get(str(path), {}) if path else {}
        found = {o.name: o for o in result.get("outcomes", [])}
        items = []
        for name in expected_names(n):
            o = found.get(name)
            if o is None:
                why = ("no notebook" if path is None else
                       f"not graded: {result['error']}" if "error" in result else "no cell checks it")
                o = Outcome(name, n, "attempted" if "error" in result else "not_started", why, why)
            items.append(o)
        counts = {s: sum(o.status == s for o in items) for s in ("solved", "attempted", "not_started")}
        rows.append({"lesson": n, "notebook": path.name if path else None, **counts, "total": len(items),
                     "error": result.get("error"),
                     "exercises": [{"name": o.name, "status": o.status, "diagnosis": o.diagnosis,
                                    "message": o.message} for o in items]})
    totals = {s: sum(r[s] for r in rows) for s in ("solved", "attempted", "not_started", "total")}
    return {"folder": str(folder), "lessons": rows, "totals": totals}


def format_table(report: dict, *, detail: bool = False) -> str:
    lines = [f"progress in {report['folder']}",
             f"{'lesson':<7}{'notebook':<32}{'solved':>7}{'attempted':>10}{'not started':>12}{'total':>7}"]
    for r in report["lessons"]:
        nb = r["notebook"] or "(no notebook)"
        lines.append(f"{r['lesson']:<7}{nb[:31]:<32}{r['solved']:>7}{r['attempted']:>10}{r['not_started']:>12}"
                     f"{r['total']:>7}" + (f"   {r['error']}" if r.get("error") else ""))
        if detail:
            mark = {"solved": "✔", "attempted": "✘", "not_started": "·"}
            lines += [f"         {mark[e['status']]} {e['name']}" + (f"  — {e['diagnosis']}" if e["status"] == "attempted" else "")
                      for e in r["exercises"]]
    t = report["totals"]
    lines.append(f"{'all':<39}{t['solved']:>7}{t['attempted']:>10}{t['not_started']:>12}{t['total']:>7}")
    return "\n".join(lines)


def _default_dir() -> Path:
    cwd = Path.cwd()
    return cwd if lesson_notebooks(cwd) else DEFAULT_DIR


def show(folder=None, *, lessons=None, timeout: float = 120.0) -> dict:
    """Print the table for ``folder`` (default: this folder if it holds lesson notebooks,
    else build/learner) and return the report dict."""
    report = collect(_default_dir() if folder is None else folder, lessons=_parse_lessons(
        ",".join(lessons) if isinstance(lessons, (list, tuple)) else lessons), timeout=timeout)
    print(format_table(report))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Grade your saved learner notebooks (NN_topic.ipynb) without running the "
                          "lessons, and print solved / attempted / not started per lesson. Only imports "
                          "and the cells that call check()/check_answer() are run.")
    parser.add_argument("--dir", default=None,
                        help="folder with the learner notebooks (default: build/learner, or the current "
                             "folder if it holds lesson notebooks)")
    parser.add_argument("--lessons", default=None, metavar="NN,NN",
                        help="only these lessons, comma-separated (default: every lesson with exercises)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument("--detail", action="store_true", help="one line per exercise under each lesson")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one notebook may take to grade (default: 120)")


def run(args) -> int:
    if not args.timeout > 0:
        raise ValueError(f"--timeout: must be > 0 seconds, got {args.timeout}")
    lessons = _parse_lessons(args.lessons)
    report = collect(Path(args.dir) if args.dir else _default_dir(), lessons=lessons, timeout=args.timeout)
    print(json.dumps(report, indent=1) if args.json else format_table(report, detail=args.detail))
    return 0
