#!/usr/bin/env python3
"""Build the lesson notebooks from their jupytext sources.

    lessons/NN_topic.py  (jupytext percent format, with solutions)
      -> build/learner/NN_topic.ipynb     every ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
                                          block replaced by ``raise NotImplementedError``
      -> build/solutions/NN_topic.ipynb   the lesson as written, solutions included; only
                                          with ``--solutions`` or ``--solutions-only``

A stub keeps what the source shows outside the solution block (the signature and the
docstring, which state the task and the shapes) and nothing from inside it: hints live with
the exercise's registration in ``diffusion_jax/exercises/lessonNN.py`` and are shown on
request by ``hint("name")``. Notebooks are written without outputs. By default only the
learner notebooks are built, so the worked solutions are not lying next to the exercises.

A learner notebook that was changed after it was generated (the learner typed an answer,
or Jupyter saved outputs) is never overwritten: the SHA-256 of every generated learner
notebook is kept in ``<learner-dir>/.generated.json``, and a file whose hash differs is
skipped with a notice. ``--force`` overwrites it after saving a copy as ``NN_topic.ipynb.bak``.

Examples:
    python tools/build_lessons.py                   # learner notebooks only
    python tools/build_lessons.py --solutions       # learner + solution notebooks
    python tools/build_lessons.py --solutions-only  # only build/solutions/
    python tools/build_lessons.py --only 01         # only lesson 01
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LESSONS_DIR = REPO / "lessons"
LEARNER_DIR = REPO / "build" / "learner"
SOLUTIONS_DIR = REPO / "build" / "solutions"
MANIFEST = ".generated.json"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
LESSON_FILE = re.compile(r"^(\d{2})_[A-Za-z0-9_]+\.py$")
CHECKED_NAME = re.compile(r"""\bcheck(?:_answer)?\(\s*["'](\w+)["']""")


class BuildError(ValueError):
    """A lesson source is malformed (unbalanced solution markers, ...)."""


@dataclass
class StripResult:
    source: str  # the learner's cell source
    solution_lines: list[str] = field(default_factory=list)  # every line removed (markers excluded)
    blocks: int = 0


def stub_lines(indent: str, name: str | None) -> list[str]:
    """What replaces a solution block: a prompt and ``raise NotImplementedError``, no hint."""
    ask = f'  (hint("{name}") if you are stuck)' if name else ""
    return [f"{indent}# your code here{ask}", f"{indent}raise NotImplementedError"]


def strip_solutions(source: str, where: str = "cell") -> StripResult:
    """Replace each solution block of one cell with a stub (see :func:`stub_lines`).

    The stub gets the indentation of the ``### BEGIN SOLUTION`` line; it names the
    exercise checked in the cell (``check("name", ...)``), if any, for ``hint``.
    """
    out: list[str] = []
    result = StripResult("")
    names = CHECKED_NAME.findall(source)
    name = names[0] if len(set(names)) == 1 else None
    lines = source.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped == END:
            raise BuildError(f"{where}, line {i + 1}: '{END}' without '{BEGIN}'")
        if stripped != BEGIN:
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        start = i
        i += 1
        while i < len(lines) and lines[i].strip() != END:
            if lines[i].strip() == BEGIN:
                raise BuildError(f"{where}, line {i + 1}: nested '{BEGIN}'")
            result.solution_lines.append(lines[i])
            i += 1
        if i == len(lines):
            raise BuildError(f"{where}, line {start + 1}: '{BEGIN}' is never closed by '{END}'")
        i += 1  # skip the END marker
        result.blocks += 1
        out += stub_lines(indent, name)
    result.source = "\n".join(out)
    return result


def _require_jupytext():
    try:
        import jupytext  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        sys.exit(f"build_lessons: {err.name} is missing; install the dev extra: pip install -e '.[dev]'")


def read_lesson(path: Path):
    """The lesson as an nbformat notebook (no outputs, deterministic cell ids)."""
    import jupytext

    nb = jupytext.read(str(path), fmt="py:percent")
    nb.metadata.pop("jupytext", None)  # keep the .ipynb free of jupytext's bookkeeping
    nb.metadata.setdefault(
        "kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"}
    )
    nb.metadata.setdefault("language_info", {"name": "python"})
    stem = path.stem
    for n, cell in enumerate(nb.cells):
        cell["id"] = f"{stem[:2]}-{n:03d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def learner_notebook(nb, where: str = "lesson"):
    """A deep copy of ``nb`` with every solution block stripped; returns (notebook, stats)."""
    import copy

    learner = copy.deepcopy(nb)
    removed: list[str] = []
    for n, cell in enumerate(learner.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and "exercise" in tags and "raises-exception" not in tags:
            # An unsolved exercise raises; JupyterLab's Run All only goes on past a cell so tagged.
            cell.metadata["tags"] = [*tags, "raises-exception"]
        if cell.cell_type != "code" or (BEGIN not in cell.source and END not in cell.source):
            continue  # markdown may mention the markers; only code cells hold solutions
        res = strip_solutions(cell.source, where=f"{where}, cell {n}")
        cell.source = res.source
        removed += res.solution_lines
    return learner, {"solution_lines": removed}


def notebook_text(nb) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _load_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _save_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def write_learner(target: Path, text: str, manifest: dict, *, force: bool = False) -> str:
    """Write one learner notebook unless the learner changed it; returns what happened.

    "written", "unchanged" (identical bytes), "kept" (learner's edits kept) or "forced".
    """
    name = target.name
    new_hash = _sha(text)
    if target.exists():
        on_disk = target.read_text(encoding="utf-8")
        disk_hash = _sha(on_disk)
        if disk_hash == new_hash:
            manifest[name] = new_hash
            return "unchanged"
        if disk_hash != manifest.get(name):  # not what we generated last time
            if not force:
                return "kept"
            shutil.copyfile(target, target.with_name(name + ".bak"))
            target.write_text(text, encoding="utf-8")
            manifest[name] = new_hash
            return "forced"
    target.write_text(text, encoding="utf-8")
    manifest[name] = new_hash
    return "written"


def find_lessons(lessons_dir: Path, only: list[str] | None = None) -> list[Path]:
    found = sorted(p for p in lessons_dir.glob("*.py") if LESSON_FILE.match(p.name))
    if only:
        wanted = {o.zfill(2) for o in only}
        found = [p for p in found if p.name[:2] in wanted]
        missing = wanted - {p.name[:2] for p in found}
        if missing:
            raise SystemExit(f"build_lessons: no lesson numbered {', '.join(sorted(missing))} in {lessons_dir}")
    return found


def build(lessons_dir: Path = LESSONS_DIR, learner_dir: Path = LEARNER_DIR,
          solutions_dir: Path = SOLUTIONS_DIR, *, only=None, learner: bool = True,
          solutions: bool = True, force: bool = False, log=print) -> dict[str, str]:
    """Build the notebooks; returns ``{output path: status}``."""
    _require_jupytext()
    lessons = find_lessons(Path(lessons_dir), only)
    if not lessons:
        log(f"build_lessons: no lessons (NN_topic.py) found in {lessons_dir}")
    report: dict[str, str] = {}
    learner_dir, solutions_dir = Path(learner_dir), Path(solutions_dir)
    manifest = _load_manifest(learner_dir) if learner else {}
    for path in lessons:
        nb = read_lesson(path)
        name = path.stem + ".ipynb"
        if solutions:
            solutions_dir.mkdir(parents=True, exist_ok=True)
            target = solutions_dir / name
            text = notebook_text(nb)
            if target.exists() and target.read_text(encoding="utf-8") == text:
                report[str(target)] = "unchanged"
            else:
                target.write_text(text, encoding="utf-8")
                report[str(target)] = "written"
        if learner:
            learner_nb, _ = learner_notebook(nb, where=str(path))
            learner_dir.mkdir(parents=True, exist_ok=True)
            target = learner_dir / name
            status = write_learner(target, notebook_text(learner_nb), manifest, force=force)
            report[str(target)] = status
            if status == "kept":
                log(f"kept {target}: you changed it since it was generated; rerun with --force "
                    f"to replace it (your copy is then saved as {name}.bak)")
            elif status == "forced":
                log(f"replaced {target}; your edited copy is {target.with_name(name + '.bak')}")
    if learner and lessons:
        _save_manifest(learner_dir, manifest)
    for target, status in report.items():
        if status in ("written", "forced"):
            log(f"wrote {target}")
    if report:
        counts: dict[str, int] = {}
        for status in report.values():
            counts[status] = counts.get(status, 0) + 1
        log("build_lessons: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + " (" + ", ".join(d for d in (f"learner: {learner_dir}" if learner else "",
                                           f"solutions: {solutions_dir}" if solutions else "") if d) + ")")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_lessons.py",
        description="Build learner notebooks (and, on request, solution notebooks) from "
                    "lessons/NN_topic.py (jupytext percent).",
        epilog="A learner notebook you have edited is never overwritten unless you pass --force. "
               "Solutions are built only on request, so they do not sit next to the exercises.",
    )
    parser.add_argument("--lessons-dir", type=Path, default=LESSONS_DIR, help="lesson sources (default: lessons/)")
    parser.add_argument("--learner-dir", type=Path, default=LEARNER_DIR, help="default: build/learner/")
    parser.add_argument("--solutions-dir", type=Path, default=SOLUTIONS_DIR, help="default: build/solutions/")
    parser.add_argument("--only", action="append", metavar="NN",
                        help="build only lesson NN (repeatable, or comma-separated: --only 01,02)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--solutions", action="store_true",
                       help="also build the solution notebooks (worked answers) into --solutions-dir")
    group.add_argument("--solutions-only", action="store_true", help="build only the solution notebooks")
    parser.add_argument("--force", action="store_true",
                        help="overwrite learner notebooks you changed (a .bak copy is kept)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only warnings and notices")
    args = parser.parse_args(argv)
    only = [o.strip() for item in (args.only or []) for o in item.split(",") if o.strip()] or None

    def log(msg):
        if not args.quiet or not msg.startswith(("wrote ", "build_lessons: ")):
            print(msg)

    try:
        build(args.lessons_dir, args.learner_dir, args.solutions_dir, only=only,
              learner=not args.solutions_only, solutions=args.solutions or args.solutions_only,
              force=args.force, log=log)
    except BuildError as err:
        print(f"build_lessons: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
