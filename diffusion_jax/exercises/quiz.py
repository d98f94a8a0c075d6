"""``diffusion-jax quiz``: a closed-book quiz notebook for an interview-prep session.

Picks a seeded random subset of the graded questions of chosen lessons (function exercises
and short answers, taken from the lesson sources), strips their solutions and writes one
notebook. Its first cell switches the grader to closed-book mode: no hints, and
``check``/``check_answer`` only record that an answer was given. The question list and
the seed are stored in the notebook's metadata, so ``diffusion-jax report`` can grade the
participants' copies afterwards::

    diffusion-jax quiz --lessons 01:2,03:1,11:10 --seed 7 --minutes 90 --out quiz.ipynb
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import numpy as np

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
META_KEY = "diffusion_jax_quiz"
CHECKED = re.compile(r"""\bcheck(?:_answer)?\(\s*["'](\w+)["']""")
LESSON_FILE = re.compile(r"^(\d{2})_\w+\.py$")
HIDDEN_IMPORTS = {"hint", "show_progress"}  # closed book: no hints to import


def default_lessons_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "lessons"


def parse_spec(text: str) -> list[tuple[str, int | None]]:
    """``"01:2,03,11:10"`` -> ``[("01", 2), ("03", None), ("11", 10)]`` (None: every question)."""
    out = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        m = re.fullmatch(r"(\d{1,2})(?::(\d+|all))?", item)
        if not m:
            raise ValueError(f"--lessons: expected NN or NN:COUNT items such as 01:2,11:10, got {item!r}")
        count = None if m.group(2) in (None, "all") else int(m.group(2))
        if count == 0:
            raise ValueError(f"--lessons: a count must be at least 1, got {item!r}")
        out.append((m.group(1).zfill(2), count))
    if not out:
        raise ValueError("--lessons: give at least one lesson, e.g. --lessons 01:2,11:10")
    if len({n for n, _ in out}) != len(out):
        raise ValueError(f"--lessons: a lesson is listed twice in {text!r}")
    return out


def _strip(source: str) -> str:
    """Replace each solution block with a bare prompt (no hint: the quiz is closed-book)."""
    out, inside = [], False
    for line in source.split("\n"):
        if line.strip() == BEGIN:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [f"{indent}# your answer here", f"{indent}raise NotImplementedError"]
        elif line.strip() == END:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def question_pool(lessons_dir: Path, lesson: str) -> tuple[list[dict], list[str]]:
    """Every graded cell of one lesson source as ``{"name", "lesson", "text", "code"}``, and the
    lesson's top-level import statements."""
    import jupytext

    paths = [p for p in sorted(Path(lessons_dir).glob(f"{lesson}_*.py")) if LESSON_FILE.match(p.name)]
    if not paths:
        raise ValueError(f"--lessons: no lesson {lesson} in {lessons_dir}")
    nb = jupytext.read(str(paths[0]), fmt="py:percent")
    pool, imports = [], []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse("\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))))
            imports += [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        except SyntaxError:
            pass
        names = CHECKED.findall(cell.source)
        if BEGIN not in cell.source or not names:
            continue
        before = nb.cells[i - 1] if i > 0 and nb.cells[i - 1].cell_type == "markdown" else None
        pool.append({"name": names[0], "lesson": lesson, "text": before.source if before else "",
                     "code": _strip(cell.source)})
    return pool, [_unparse_import(node) for node in imports]


def _unparse_import(node) -> str:
    if isinstance(node, ast.ImportFrom) and node.module == "diffusion_jax.exercises":
        node.names = [a for a in node.names if a.name not in HIDDEN_IMPORTS]
        if not node.names:
            return ""
    return ast.unparse(node)


def build_quiz(spec, *, seed: int = 0, minutes: float | None = None, title: str = "Closed-book quiz",
               lessons_dir=None):
    """The quiz as an nbformat notebook (see the module docstring)."""
    import nbformat

    lessons_dir = Path(lessons_dir) if lessons_dir is not None else default_lessons_dir()
    if not lessons_dir.is_dir():
        raise ValueError(f"--lessons-dir: no such folder: {lessons_dir}")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"--minutes: must be > 0, got {minutes}")
    rng = np.random.default_rng(seed)
    questions, imports = [], []
    for lesson, count in parse_spec(spec) if isinstance(spec, str) else spec:
        pool, imp = question_pool(lessons_dir, lesson)
        if count is not None and count > len(pool):
            raise ValueError(f"--lessons: lesson {lesson} has {len(pool)} questions, asked for {count}")
        keep = sorted(rng.choice(len(pool), size=count, replace=False)) if count else range(len(pool))
        questions += [pool[k] for k in keep]
        imports += [s for s in imp if s and s not in imports]
    head = [f"# {title}", "",
            f"{len(questions)} questions from lesson(s) {', '.join(sorted({q['lesson'] for q in questions}))} "
            f"(question set {seed}).", ""]
    if minutes:
        head += [f"**Time limit: {minutes:g} minutes.**", ""]
    head += ["Closed book: no notes, no lesson notebooks, no hints. Write each function or return your "
             "answer from the `qNN()` function, and run its cell: it only says *recorded*, your answers "
             "are graded after the quiz. Save the notebook when you are done (File → Save) and hand in "
             "this `.ipynb` file."]
    cells = [nbformat.v4.new_markdown_cell("\n".join(head)),
             nbformat.v4.new_code_cell("\n".join(imports + ["from diffusion_jax.exercises import closed_book", "",
                                                            f"closed_book(minutes={minutes!r})"]))]
    for k, q in enumerate(questions, 1):
        text = f"## Question {k} (lesson {q['lesson']})" + (f"\n\n{q['text']}" if q["text"].strip() else "")
        cells.append(nbformat.v4.new_markdown_cell(text))
        cells.append(nbformat.v4.new_code_cell(q["code"], metadata={"tags": ["exercise", "raises-exception"]}))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata[META_KEY] = {"seed": int(seed), "minutes": minutes, "title": title,
                             "questions": [{"name": q["name"], "lesson": q["lesson"]} for q in questions]}
    for n, cell in enumerate(nb.cells):
        cell["id"] = f"quiz-{n:03d}"
    return nb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Build a closed-book quiz notebook for a class: a seeded random subset of the graded "
                          "questions of chosen lessons, solutions stripped, hints off, answers recorded for "
                          "'diffusion-jax report'.")
    parser.add_argument("--lessons", required=True, metavar="NN:COUNT,...",
                        help="lessons and how many questions from each, e.g. 01:2,03:1,11:10 "
                             "(NN alone or NN:all takes every question of the lesson)")
    parser.add_argument("--seed", type=int, default=0, help="picks the question subset (default: 0)")
    parser.add_argument("--minutes", type=float, default=None, help="time limit printed at the top (optional)")
    parser.add_argument("--title", default="Closed-book quiz", help="title printed at the top of the quiz notebook")
    parser.add_argument("--out", default="quiz.ipynb", help="where to write the notebook (default: quiz.ipynb)")
    parser.add_argument("--lessons-dir", default=None, help="folder of the lesson sources the questions are taken from (default: the repository's lessons/)")


def run(args) -> int:
    try:
        import jupytext  # noqa: F401 - reads the lesson sources
        import nbformat
    except ImportError as err:
        raise ValueError(f"quiz needs {err.name}: pip install -e '.[lessons]'") from None
    out = Path(args.out)
    if out.suffix != ".ipynb":
        raise ValueError(f"--out: the quiz is a notebook, give a path ending in .ipynb, got {args.out}")
    if not out.parent.is_dir():
        raise ValueError(f"--out: no such folder: {out.parent}")
    nb = build_quiz(args.lessons, seed=args.seed, minutes=args.minutes, title=args.title,
                    lessons_dir=args.lessons_dir)
    nbformat.write(nb, str(out))
    names = [q["name"] for q in nb.metadata[META_KEY]["questions"]]
    print(f"wrote {out}: {len(names)} questions ({', '.join(names)})")
    return 0
