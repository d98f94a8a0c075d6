"""``diffusion-jax report``: grade a folder of participants' quiz notebooks into a class report.

Every ``*.ipynb`` in the folder is one participant (named by the file's stem). The
questions come from the quiz metadata written by ``diffusion-jax quiz`` (or from the
cells, for any other notebook). Writes

* ``results.csv``: one row per participant and question (status, the answer given or the
  recognised mistake, the grader's message);
* ``questions.csv``: per question, the share correct and the commonest wrong answers;
* ``report.png``: one figure, the share correct per question with its commonest wrong answer.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
from pathlib import Path

from diffusion_jax.exercises.grading import grade_notebooks, graded_cells, read_notebook
from diffusion_jax.exercises.quiz import META_KEY


def question_list(notebooks) -> list[dict]:
    """``[{"name", "lesson"}, ...]`` from the first quiz metadata found, else from the cells."""
    for p in notebooks:
        meta = read_notebook(p).get("metadata", {}).get(META_KEY)
        if meta and meta.get("questions"):
            return [dict(q) for q in meta["questions"]]
    from diffusion_jax.exercises.grading import _lesson_of

    names = []
    for p in notebooks:
        for _, ns in graded_cells(read_notebook(p)):
            names += [n for n in ns if n not in names]
    return [{"name": n, "lesson": _lesson_of(n)} for n in names]


def _answer_of(o) -> str:
    if o.status == "solved":
        return "correct"
    if o.status == "not_started":
        return "no answer"
    return o.given or o.diagnosis or "wrong"


def collect(folder, *, timeout: float = 120.0, isolate: bool = True) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder: no such folder: {folder}")
    books = sorted(folder.glob("*.ipynb"))
    if not books:
        raise ValueError(f"folder: no .ipynb notebooks in {folder}")
    questions = question_list(books)
    if not questions:
        raise ValueError(f"folder: the notebooks in {folder} contain no graded questions")
    graded = grade_notebooks(books, timeout=timeout, isolate=isolate)
    rows = []
    for p in books:
        res = graded[str(p)]
        found = {o.name: o for o in res.get("outcomes", [])}
        for q in questions:
            o = found.get(q["name"])
            if o is None:
                why = f"not graded: {res['error']}" if "error" in res else "question missing from the notebook"
                rows.append({"participant": p.stem, "question": q["name"], "lesson": q["lesson"],
                             "status": "not_started", "correct": 0, "answer": "no answer", "message": why})
            else:
                rows.append({"participant": p.stem, "question": q["name"], "lesson": q["lesson"], "status": o.status,
                             "correct": int(o.status == "solved"), "answer": _answer_of(o), "message": o.message})
    summary = []
    for q in questions:
        mine = [r for r in rows if r["question"] == q["name"]]
        wrong = collections.Counter(r["answer"] for r in mine if not r["correct"] and r["answer"] != "no answer")
        summary.append({"question": q["name"], "lesson": q["lesson"], "participants": len(mine),
                        "correct": sum(r["correct"] for r in mine),
                        "share_correct": sum(r["correct"] for r in mine) / len(mine),
                        "no_answer": sum(r["answer"] == "no answer" for r in mine),
                        "commonest_wrong": "; ".join(f"{a} ({c})" for a, c in wrong.most_common(3))})
    return {"folder": str(folder), "participants": [p.stem for p in books], "results": rows, "questions": summary}


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    qs = report["questions"]
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(qs) + 1.6))
    y = range(len(qs))[::-1]
    ax.barh(list(y), [q["share_correct"] for q in qs], color="C0", height=0.6)
    for yi, q in zip(y, qs):
        note = q["commonest_wrong"].split("; ")[0] if q["commonest_wrong"] else ""
        ax.text(1.02, yi, (f"commonest wrong: {note}" if note else "") +
                (f"   no answer: {q['no_answer']}" if q["no_answer"] else ""), va="center", fontsize=8)
    ax.set_yticks(list(y), [f"{q['question']} ({q['lesson']})" for q in qs], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of participants correct")
    ax.set_title(f"{len(report['participants'])} participants, {len(qs)} questions", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Grade a folder of participants' quiz notebooks (one .ipynb each) into a class report: "
                          "results.csv, questions.csv and report.png (share correct per question and the "
                          "commonest wrong answers).")
    parser.add_argument("folder", help="folder with the participants' notebooks")
    parser.add_argument("--out", default=None, help="folder the CSV files and the figure are written to (default: FOLDER/report)")
    parser.add_argument("--json", action="store_true", help="also print the per-question summary as JSON")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one notebook may take to grade (default: 120)")


def run(args) -> int:
    if not args.timeout > 0:
        raise ValueError(f"--timeout: must be > 0 seconds, got {args.timeout}")
    out = Path(args.out) if args.out else Path(args.folder) / "report"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    report = collect(args.folder, timeout=args.timeout)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "results.csv", report["results"])
    _write_csv(out / "questions.csv", report["questions"])
    plot(report, out / "report.png")
    print(f"{len(report['participants'])} participants, {len(report['questions'])} questions")
    for q in report["questions"]:
        print(f"  {q['question']:<28} {q['correct']}/{q['participants']} correct"
              + (f"   commonest wrong: {q['commonest_wrong']}" if q["commonest_wrong"] else ""))
    if args.json:
        print(json.dumps(report["questions"], indent=1))
    print(f"wrote {out / 'results.csv'}, {out / 'questions.csv'} and {out / 'report.png'}")
    return 0
