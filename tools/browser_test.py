#!/usr/bin/env python3
"""Run lessons in a real browser: JupyterLab driven by headless Chromium (Playwright).

For each lesson chosen (default: 01 and 06) the script builds fresh learner and solution
notebooks into a scratch folder, starts JupyterLab on 127.0.0.1 (random token, free port,
fast mode for every kernel), opens each notebook, runs all cells from the Run menu and
waits until the notebook itself says Run All has finished: every code cell's execute
request answered by the kernel and its execution count shown (no idle-time guess: a
kernel reports "idle" between the widget messages of a long cell with a progress bar).
Then it checks what a learner sees:

* solution notebook: no error output anywhere;
* learner notebook: errors only in cells tagged ``exercise``; each shows the grader's one
  line ``✘ <name>: not implemented yet — <hint>`` and no traceback;
* lesson 01: the first exercise's solution, taken from the solution notebook, is typed
  into the learner's cell and the re-run cell shows ``✔ <name>: passed``;
* lesson 06: moving the "guidance s" slider with the keyboard swaps the rendered image.

JupyterLab's Run All stops at the first failing cell unless that cell is tagged
``raises-exception``; a learner notebook whose exercise cells lack the tag fails here with
that explanation.

Screenshots of every notebook page (figures visible) and of the slider before/after go to
the output folder (default ``outputs/browser/``), with JupyterLab's log. The server is
always shut down. Exit status 0 when every check passed, 1 otherwise (each failure is
listed), 2 when the tools are missing.

Needs Debian's ``chromium`` at /usr/bin/chromium and the ``playwright`` Python package
(``make test-browser`` installs both; never ``playwright install``: it downloads a browser).

Examples:
    python tools/browser_test.py                     # lessons 01 and 06
    python tools/browser_test.py --lessons 01,03     # other lessons
    python tools/browser_test.py --notebook /tmp/x.ipynb   # also run any notebook (solution checks)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LESSONS_DIR = REPO / "lessons"
DEFAULT_OUT = REPO / "outputs" / "browser"
DEFAULT_LESSONS = ("01", "06")
TYPE_SOLUTION_LESSONS = ("01",)  # lessons whose first exercise gets a typed-in solution
SLIDER_LESSONS = ("06",)  # lessons whose "guidance s" slider must swap the image
SLIDER_LABEL = "guidance s"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
# JupyterLab settings for a quiet, fully rendered notebook: no news/update toasts, and every
# cell in the DOM (the default windowing skips painting off-screen cells).
LAB_OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
}
VIEWPORT = {"width": 1280, "height": 900}
SHOT_HEIGHT = 3000  # px of notebook per screenshot page
LESSON_FILE = re.compile(r"^(\d{2})_[A-Za-z0-9_]+\.py$")
NOT_IMPLEMENTED = re.compile(r"^✘ (?P<name>\w+): not implemented yet — \S")
PASSED = re.compile(r"✔ (?P<name>\w+): passed")


class BrowserTestError(RuntimeError):
    """A check failed; the message says what the learner would have seen."""


# ----------------------------------------------------------------------------------------
# pure helpers (unit-tested in tests/test_browser_tool.py)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="browser_test.py",
        description="Open lesson notebooks in JupyterLab with headless Chromium, run them and check "
                    "what a learner sees (errors, grader messages, figures, widgets).",
        epilog="Needs /usr/bin/chromium (apt-get install chromium) and `pip install playwright` "
               "(never `playwright install`). `make test-browser` sets both up.",
    )
    parser.add_argument("--lessons", action="append", metavar="NN",
                        help="lesson numbers, repeatable or comma-separated (default: 01,06); "
                             "'none' runs no lesson")
    parser.add_argument("--notebook", action="append", type=Path, default=[], metavar="PATH",
                        help="also run this .ipynb (copied into the scratch folder) and require no "
                             "errors; a 'guidance s' slider in it, if any, is exercised too")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT,
                        help="screenshots, notebooks and the server log (default: outputs/browser/)")
    parser.add_argument("--lessons-dir", type=Path, default=LESSONS_DIR, help="default: lessons/")
    parser.add_argument("--notebook-timeout", type=float, default=1200.0, metavar="S",
                        help="seconds for one notebook to run all its cells, including training "
                             "a model into an empty cache on a busy machine (default: 1200)")
    parser.add_argument("--server-timeout", type=float, default=180.0, metavar="S",
                        help="seconds for JupyterLab to start and a notebook to open with an idle "
                             "kernel (default: 180)")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"browser executable (default: {CHROMIUM})")
    parser.add_argument("--no-screenshots", action="store_true", help="skip the notebook page screenshots")
    parser.add_argument("--headed", action="store_true", help="show the browser window (needs a display)")
    args = parser.parse_args(argv)
    args.lessons = lesson_numbers(args.lessons)
    return args


def lesson_numbers(items) -> list[str]:
    """``["01,06", "3"]`` -> ``["01", "03", "06"]``; None -> the defaults; "none" -> []."""
    if not items:
        return list(DEFAULT_LESSONS)
    out: set[str] = set()
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part or part.lower() == "none":
                continue
            if not part.isdigit() or len(part) > 2:
                raise SystemExit(f"browser_test: --lessons expects two-digit lesson numbers, got {part!r}")
            out.add(part.zfill(2))
    return sorted(out)


def find_lesson(lessons_dir: Path, number: str) -> Path | None:
    """The source ``lessons/NN_topic.py`` of lesson ``number``, or None."""
    found = sorted(p for p in Path(lessons_dir).glob(f"{number}_*.py") if LESSON_FILE.match(p.name))
    return found[0] if found else None


def lab_command(python: str, root: Path, port: int, token: str, settings_dir: Path, *, as_root: bool) -> list[str]:
    cmd = [python, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", f"--LabApp.app_settings_dir={settings_dir}",
           "--ServerApp.open_browser=False",
           # window.jupyterapp: the page's own notebook model and kernel connection, from
           # which run_all reads execute replies and execution counts
           "--LabApp.expose_app_in_browser=True"]
    if as_root:
        cmd.append("--allow-root")  # JupyterLab refuses to start as root without it
    return cmd


def lab_env(base: dict, scratch: Path) -> dict:
    """Environment for the server and (inherited) its kernels: fast mode, inline figures,
    and Jupyter's per-user folders in ``scratch`` so nothing of the user's leaks in or out."""
    env = dict(base)
    env.update({
        "DIFFUSION_JAX_FAST": "1",
        "MPLBACKEND": INLINE_BACKEND,  # CI exports MPLBACKEND=Agg, which would hide every figure
        "JUPYTER_CONFIG_DIR": str(scratch / "config"),
        "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(scratch / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "workspaces"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _errors(cell: dict) -> list[dict]:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def _is_exercise(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and "exercise" in cell.get("metadata", {}).get("tags", [])


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _head(cell: dict) -> str:
    lines = _source(cell).strip().splitlines()
    return lines[0][:60] if lines else ""


def unexecuted_cells(nb: dict) -> list[int]:
    """Indices of code cells without an execution count (blank cells never get one)."""
    return [n for n, c in enumerate(nb["cells"])
            if c.get("cell_type") == "code" and c.get("execution_count") is None and _source(c).strip()]


def solution_problems(nb: dict) -> list[str]:
    """Everything wrong with an executed solution notebook (saved by JupyterLab)."""
    problems = [f"cell {n} ({_head(nb['cells'][n])!r}) never ran" for n in unexecuted_cells(nb)]
    for n, cell in enumerate(nb["cells"]):
        for e in _errors(cell):
            problems.append(f"cell {n} ({_head(cell)!r}) raised {e.get('ename')}: {e.get('evalue', '')[:200]}")
    return problems


def learner_problems(nb: dict) -> list[str]:
    """Everything wrong with an executed learner notebook: errors outside exercise cells,
    exercise cells that did not fail, or failed with anything but the grader's one line."""
    problems = [f"cell {n} ({_head(nb['cells'][n])!r}) never ran" for n in unexecuted_cells(nb)]
    exercises = 0
    for n, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        errs = _errors(cell)
        if not _is_exercise(cell):
            problems += [f"cell {n} ({_head(cell)!r}) is not an exercise but raised "
                         f"{e.get('ename')}: {e.get('evalue', '')[:200]}" for e in errs]
            continue
        exercises += 1
        if cell.get("execution_count") is None:
            continue
        if not errs:
            problems.append(f"exercise cell {n} ({_head(cell)!r}) did not fail")
            continue
        e = errs[0]
        if e.get("ename") != "ExerciseFailed" or not NOT_IMPLEMENTED.match(e.get("evalue", "")):
            problems.append(f"exercise cell {n} ({_head(cell)!r}) raised {e.get('ename')}: "
                            f"{e.get('evalue', '')[:200]} instead of '✘ <name>: not implemented yet — ...'")
        elif len(e.get("traceback", [])) != 1:
            problems.append(f"exercise cell {n}: the learner sees a {len(e.get('traceback', []))}-line "
                            "traceback instead of one line")
    if exercises < 2:
        problems.append(f"only {exercises} exercise cell(s); a lesson needs at least two")
    return problems


def without_stderr_notes(cells: list[dict], nb: dict) -> list[dict]:
    """``cells`` minus the rendered stderr blocks that are plain stderr *stream* output in the
    saved notebook (a library's note such as "loaded the shipped weights of ..." or a
    progress bar): JupyterLab renders those like an error, but they are not one."""
    out = []
    for cell in cells:
        saved = nb["cells"][cell["index"]] if cell["index"] < len(nb["cells"]) else {}
        # a saved .ipynb may store a stream's text as one string or as a list of lines
        notes = "".join("".join(o.get("text", "")) for o in saved.get("outputs", [])
                        if o.get("output_type") == "stream" and o.get("name") == "stderr")
        errors = [t for t in cell["errors"] if "Traceback" in t or not t.strip() or t.strip() not in notes]
        out.append({**cell, "errors": errors})
    return out


def visible_error_problems(cells: list[dict]) -> list[str]:
    """Check the error text JupyterLab rendered (``cells``: dicts with index, exercise, errors)."""
    problems = []
    for cell in cells:
        for text in cell["errors"]:
            text = text.strip()
            if not cell["exercise"]:
                problems.append(f"cell {cell['index']} shows an error: {text[:200]!r}")
            elif "Traceback" in text or len(text.splitlines()) != 1 or not NOT_IMPLEMENTED.match(text):
                problems.append(f"exercise cell {cell['index']} shows {text[:300]!r} instead of the one "
                                "line '✘ <name>: not implemented yet — ...'")
    return problems


def run_all_stopped_hint(nb: dict) -> str:
    """Why Run All may have stopped early: the first failing cell without 'raises-exception'."""
    for n, cell in enumerate(nb["cells"]):
        if _errors(cell) and "raises-exception" not in cell.get("metadata", {}).get("tags", []):
            later = [i for i in unexecuted_cells(nb) if i > n]
            if later:
                return (f"Run All stopped at cell {n} ({_head(cell)!r}), which raised; "
                        f"{len(later)} later code cell(s) never ran. JupyterLab only runs past a failing "
                        "cell tagged 'raises-exception' (tools/build_lessons.py should tag exercise cells "
                        "of learner notebooks).")
    return ""


def run_all_pending(cells: list[dict], requests: list[dict]) -> list[dict]:
    """The code cells Run All still owes, judged from the notebook itself; [] when it finished.

    ``cells``: the notebook's code cells in order (``id``, ``count``: execution count or
    None, ``blank``: no source). ``requests``: the execute requests the page sent since Run
    All, in order, each with the ``cellId`` JupyterLab attached and the ``status`` of its
    execute reply (None while unanswered). Every non-blank code cell is owed until its
    request is answered and, unless the kernel answered "aborted" (it skips the cells queued
    behind a failing cell that lacks the ``raises-exception`` tag), its execution count is
    in the model. Each pending cell comes back with ``state``: "running" (the first
    unanswered request: the kernel runs them in order), "queued", "not sent" or
    "finishing" (answered, execution count not yet in the model).
    No clock is involved: a kernel that reports idle between widget messages of a long cell
    is still owed that cell's reply."""
    if any(r.get("cellId") is None for r in requests):  # no cell ids: requests follow cell order
        owed = [c for c in cells if not c["blank"]]
        by_cell = {c["id"]: r["status"] for c, r in zip(owed, requests)}
    else:
        by_cell = {r["cellId"]: r["status"] for r in requests}  # a re-run cell: its last request
    pending, running_seen = [], False
    for cell in cells:
        if cell["blank"]:
            continue  # JupyterLab sends nothing for an empty cell and clears its count
        if cell["id"] not in by_cell:
            pending.append({**cell, "state": "not sent"})
        elif by_cell[cell["id"]] is None:
            pending.append({**cell, "state": "queued" if running_seen else "running"})
            running_seen = True
        elif by_cell[cell["id"]] != "aborted" and cell["count"] is None:
            pending.append({**cell, "state": "finishing"})  # answered; the model catches up next
    return pending


def pending_message(pending: list[dict], seconds: float) -> str:
    """One readable sentence naming the cells Run All had not finished after ``seconds``."""
    running = [c for c in pending if c["state"] in ("running", "finishing")]
    rest = [c for c in pending if c["state"] not in ("running", "finishing")]
    parts = [f"cell {c['index']} ({c['head']!r}) was still running" for c in running]
    if rest:
        names = ", ".join(f"{c['index']} ({c['head']!r})" for c in rest[:8])
        more = f" and {len(rest) - 8} more" if len(rest) > 8 else ""
        parts.append(f"code cell(s) {names}{more} never ran")
    return (f"Run All had not finished after {seconds:.0f} s: " + "; ".join(parts)
            + " (a slow machine? raise --notebook-timeout)")


def solution_cell_source(solution_nb: dict, cell_id: str) -> str:
    for cell in solution_nb["cells"]:
        if cell.get("id") == cell_id:
            src = cell["source"]
            return "".join(src) if isinstance(src, list) else src
    raise KeyError(f"no cell with id {cell_id!r} in the solution notebook")


def exercise_name(source: str) -> str | None:
    """The name in the cell's ``check("name", ...)`` call."""
    m = re.search(r"""\bcheck\(\s*["'](\w+)["']""", source)
    return m.group(1) if m else None


# ----------------------------------------------------------------------------------------
# JupyterLab


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server in its own process group; ``stop()`` ends it and its kernels."""

    def __init__(self, root: Path, scratch: Path, log_path: Path, timeout: float):
        self.root, self.scratch, self.log_path, self.timeout = root, scratch, log_path, timeout
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> JupyterLab:
        settings = self.scratch / "app-settings"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "overrides.json").write_text(json.dumps(LAB_OVERRIDES, indent=1))
        cmd = lab_command(sys.executable, self.root, self.port, self.token, settings,
                          as_root=hasattr(os, "geteuid") and os.geteuid() == 0)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - open for the server's lifetime
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.root,
                                     env=lab_env(os.environ, self.scratch), start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserTestError(f"JupyterLab exited with status {self.proc.returncode} while starting:\n"
                                       + self.log_tail())
            try:
                with urllib.request.urlopen(self.api("status"), timeout=5) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise BrowserTestError(f"JupyterLab did not answer on {self.url} within {self.timeout:.0f} s:\n"
                               + self.log_tail())

    def api(self, path: str) -> str:
        return f"{self.url}/api/{path}?token={self.token}"

    def lab_url(self, path: str, workspace: str) -> str:
        return f"{self.url}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"

    def shutdown_kernels(self) -> None:
        """Shut down every running kernel (each notebook gets a fresh one; saves memory)."""
        try:
            with urllib.request.urlopen(self.api("kernels"), timeout=10) as r:
                kernels = json.load(r)
            for k in kernels:
                req = urllib.request.Request(self.api(f"kernels/{k['id']}"), method="DELETE")
                urllib.request.urlopen(req, timeout=30).close()
        except (urllib.error.URLError, OSError, ValueError) as err:
            print(f"  (could not shut down kernels: {err})")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:  # a clean shutdown also stops the kernels
                req = urllib.request.Request(self.api("shutdown"), method="POST")
                urllib.request.urlopen(req, timeout=10).close()
                self.proc.wait(timeout=15)
            except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):  # whatever is left of our process group
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.proc.wait(timeout=10)
                time.sleep(0.5)
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
        self.proc = None


# ----------------------------------------------------------------------------------------
# the notebook in the browser

# What JupyterLab shows for every cell of the visible notebook: its index, whether it is a
# code cell, its prompt ("[3]:", "[*]:", "[ ]:"), the text of its error outputs (rendered as
# stderr), all its output text, and how many images it shows. Tags are not in the DOM:
# which cells are exercises comes from the saved .ipynb.
_CELLS_JS = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  return [...panel.querySelectorAll('.jp-Notebook .jp-Cell')].map((c, i) => ({
    index: i,
    code: c.classList.contains('jp-CodeCell'),
    prompt: c.classList.contains('jp-CodeCell')
      ? (c.querySelector('.jp-InputArea-prompt')?.innerText || '').trim() : '',
    errors: [...c.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(o => o.innerText),
    text: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText).join('\\n'),
    images: c.querySelectorAll('.jp-OutputArea-output img').length,
  }));
}
"""


# Run in the page with the notebook's path: find its panel through window.jupyterapp
# (LabApp.expose_app_in_browser) and, once its kernel is connected and idle, record every
# execute request the page sends and the status of each execute reply. Returns "ready" or
# what is still missing.
_HOOK_JS = """
(path) => {
  const app = window.jupyterapp;
  if (!app) return 'window.jupyterapp is missing (is LabApp.expose_app_in_browser on?)';
  const panel = [...app.shell.widgets('main')].find(w => w.context && w.context.path === path);
  if (!panel) return 'no notebook panel for ' + path;
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel) return 'no kernel yet';
  if (kernel.connectionStatus !== 'connected' || kernel.status !== 'idle')
    return 'kernel ' + kernel.connectionStatus + '/' + kernel.status;
  window.__btRuns = window.__btRuns || {};
  if (!window.__btRuns[path]) {
    const run = {requests: [], replies: {}};
    kernel.anyMessage.connect((_, args) => {
      const msg = args.msg;
      if (args.direction === 'send' && msg.header.msg_type === 'execute_request')
        run.requests.push({msgId: msg.header.msg_id, cellId: (msg.metadata || {}).cellId ?? null});
      else if (args.direction === 'recv' && msg.header.msg_type === 'execute_reply')
        run.replies[msg.parent_header.msg_id] = msg.content.status;
    });
    window.__btRuns[path] = run;
  }
  return 'ready';
}
"""

# The notebook model's code cells and the recorded requests with their reply status.
_PROGRESS_JS = """
(path) => {
  const app = window.jupyterapp;
  const panel = [...app.shell.widgets('main')].find(w => w.context && w.context.path === path);
  const run = (window.__btRuns || {})[path];
  if (!panel || !run) return null;
  const model = panel.content.model;
  const cells = [];
  for (let i = 0; i < model.cells.length; i++) {
    const c = model.cells.get(i);
    if (c.type !== 'code') continue;
    const src = c.sharedModel.getSource();
    cells.push({index: i, id: c.id, count: c.executionCount ?? null, blank: !src.trim(),
                head: (src.trim().split('\\n')[0] || '').slice(0, 60)});
  }
  const requests = run.requests.map(r => ({cellId: r.cellId, status: run.replies[r.msgId] ?? null}));
  return {cells, requests};
}
"""


def _executed(prompt: str) -> bool:
    return bool(re.fullmatch(r"\[\d+\]:", prompt))


class NotebookPage:
    def __init__(self, page, lab: JupyterLab, rel_path: str, timeout: float, open_timeout: float):
        self.page, self.lab, self.rel_path, self.timeout = page, lab, rel_path, timeout
        self.open_timeout = open_timeout
        self.file = lab.root / rel_path

    def open(self) -> None:
        """Open the notebook and wait until the page's kernel connection is idle; from then
        on the page records the execute requests it sends and their replies."""
        workspace = "bt-" + secrets.token_hex(4)  # a fresh workspace: no restored layout
        self.page.goto(self.lab.lab_url(self.rel_path, workspace), timeout=self.open_timeout * 1000)
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=self.open_timeout * 1000)
        deadline = time.monotonic() + self.open_timeout
        state = "not checked"
        while time.monotonic() < deadline:
            self._dismiss_dialogs()  # e.g. "Select Kernel" before kernel specs load: accept
            state = self.page.evaluate(_HOOK_JS, self.rel_path)
            if state == "ready":
                self.page.wait_for_timeout(500)
                self._dismiss_dialogs()
                # fold the file browser away: the notebook gets the whole width
                tab = self.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
                if tab.count():
                    tab.first.click()
                return
            time.sleep(0.5)
        raise BrowserTestError(f"{self.rel_path}: not ready to run within {self.open_timeout:.0f} s ({state}; "
                               f"server log:\n{self.lab.log_tail()})")

    def _dismiss_dialogs(self) -> None:
        dialog = self.page.query_selector(".jp-Dialog")
        if dialog:  # e.g. "Select Kernel": accept the default (the notebook's python3)
            button = dialog.query_selector("button.jp-mod-accept")
            if button:
                button.click()

    def menu(self, menu: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).first.click()

    def cells(self) -> list[dict]:
        return self.page.evaluate(_CELLS_JS) or []

    def run_all(self, progress_every: float = 60.0) -> list[dict]:
        """Run > Run All Cells, then wait until the notebook says Run All has finished.

        Finished means every non-blank code cell's execute request was answered and each
        cell that ran has its execution count (:func:`run_all_pending`); a cell the kernel
        aborted after an unmarked failing cell counts as answered, and the caller explains
        it from the saved notebook. No idle-time heuristic: a long cell whose kernel reports
        "idle" between widget messages is still owed its reply. Returns the cells' DOM
        summary; after ``self.timeout`` seconds, fails naming the cells that never ran."""
        self.menu("Run", "Run All Cells")
        start = time.monotonic()
        next_note = start + progress_every
        while True:
            progress = self.page.evaluate(_PROGRESS_JS, self.rel_path)
            if progress is None:
                raise BrowserTestError(f"{self.rel_path}: the notebook panel or its request log disappeared")
            pending = run_all_pending(progress["cells"], progress["requests"])
            if not pending:
                self.page.wait_for_timeout(300)  # let the last outputs paint
                return [c for c in self.cells() if c["code"]]
            elapsed = time.monotonic() - start
            if elapsed > self.timeout:
                raise BrowserTestError(f"{self.rel_path}: " + pending_message(pending, elapsed))
            if time.monotonic() >= next_note:  # a sign of life in CI logs during long cells
                print(f"  ... {elapsed:.0f} s: {len(pending)} code cell(s) to go, cell {pending[0]['index']} "
                      f"{pending[0]['state']}", flush=True)
                next_note += progress_every
            time.sleep(0.5)

    def save(self) -> dict:
        """Save from the browser (File > Save Notebook) and read back the saved .ipynb."""
        before = self.file.stat().st_mtime_ns
        self.menu("File", "Save Notebook")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.file.stat().st_mtime_ns != before:
                try:
                    return json.loads(self.file.read_text(encoding="utf-8"))
                except ValueError:
                    pass  # mid-write
            time.sleep(0.3)
        raise BrowserTestError(f"{self.rel_path}: saving the notebook from the browser did not change the file")

    def scroller(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer").first

    def screenshot_pages(self, prefix: Path) -> list[Path]:
        """Screenshots of the whole notebook, SHOT_HEIGHT px of it per file."""
        page = self.page
        page.set_viewport_size({"width": VIEWPORT["width"], "height": SHOT_HEIGHT})
        try:
            scroller = self.scroller()
            total = scroller.evaluate("e => e.scrollHeight")
            visible = scroller.evaluate("e => e.clientHeight")
            paths = []
            top, n = 0, 1
            while True:
                scroller.evaluate(f"e => {{ e.scrollTop = {top}; }}")
                page.wait_for_timeout(400)  # let images and MathJax paint
                path = prefix.with_name(f"{prefix.name}-p{n}.png")
                page.screenshot(path=str(path))
                paths.append(path)
                if top + visible >= total or n >= 30:
                    break
                top += visible - 40  # a little overlap between pages
                n += 1
            scroller.evaluate("e => { e.scrollTop = 0; }")
            return paths
        finally:
            page.set_viewport_size(VIEWPORT)

    def cell_locator(self, index: int):
        panel = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        return panel.locator(".jp-Cell").nth(index)

    def replace_cell_source(self, index: int, source: str) -> None:
        """Type ``source`` into cell ``index`` as a learner would (select all, type over it)."""
        cell = self.cell_locator(index)
        cell.scroll_into_view_if_needed()
        editor = cell.locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.press("Delete")
        # insert_text: like a paste, so the editor does not auto-indent or close brackets
        self.page.keyboard.insert_text(source)
        typed = editor.evaluate("e => e.cmView ? e.cmView.view.state.doc.toString() : e.innerText")
        if typed.strip() != source.strip():
            raise BrowserTestError(f"{self.rel_path}: typing into cell {index} gave different text:\n{typed[:500]}")

    def run_cell(self, index: int, timeout: float = 120) -> dict:
        """Run one cell (Shift+Enter in its editor) and wait for a new execution count."""
        before = self.cells()[index]["prompt"]
        self.cell_locator(index).locator(".cm-content").click()
        self.page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cell = self.cells()[index]
            if _executed(cell["prompt"]) and cell["prompt"] != before:
                return cell
            time.sleep(0.5)
        raise BrowserTestError(f"{self.rel_path}: re-running cell {index} did not finish within {timeout:.0f} s")


# ----------------------------------------------------------------------------------------
# the checks


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, where: str, problems) -> None:
        if isinstance(problems, str):
            problems = [problems]
        for p in problems:
            self.failures.append(f"{where}: {p}")
            print(f"  FAIL {p}")

    def ok(self, msg: str) -> None:
        print(f"  ok   {msg}")


def slider_check(nbp: NotebookPage, shots: Path, stem: str, report: Report, *, required: bool = True) -> None:
    """Find the "guidance s" slider, press ArrowRight on its handle, expect a new image."""
    page = nbp.page
    widget = page.locator(".jupyter-widgets.widget-vbox", has=page.locator(
        ".widget-slider .widget-label", has_text=SLIDER_LABEL)).first
    if not required and not page.locator(".widget-slider .widget-label", has_text=SLIDER_LABEL).count():
        return
    try:
        widget.wait_for(state="visible", timeout=30_000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError; say what is missing
        report.fail(nbp.rel_path, f"no ipywidgets VBox with a slider labelled {SLIDER_LABEL!r} was rendered")
        return
    widget.scroll_into_view_if_needed()
    img = widget.locator(".widget-image, img").first
    before = img.get_attribute("src")
    readout = widget.locator(".widget-readout").first
    value_before = readout.inner_text() if readout.count() else "?"
    widget.screenshot(path=str(shots / f"{stem}-slider-before.png"))
    handle = widget.locator(".noUi-handle").first
    handle.focus()
    page.keyboard.press("ArrowRight")
    deadline = time.monotonic() + 20
    after = before
    while time.monotonic() < deadline and after == before:
        time.sleep(0.3)
        after = img.get_attribute("src")
    value_after = readout.inner_text() if readout.count() else "?"
    widget.screenshot(path=str(shots / f"{stem}-slider-after.png"))
    if not before or after == before:
        report.fail(nbp.rel_path, f"moving the {SLIDER_LABEL!r} slider ({value_before} -> {value_after}) "
                          "did not change the image")
    else:
        report.ok(f"slider {SLIDER_LABEL!r} {value_before} -> {value_after} swapped the image")


def check_notebook(browser, lab: JupyterLab, rel_path: str, kind: str, args, report: Report,
                   solution_nb: dict | None = None, type_solution: bool = False,
                   slider: bool | str = False) -> None:
    """Open one notebook, run it, check it. ``kind``: "solution" or "learner".

    ``slider``: True (a "guidance s" slider must swap its image), "optional" (check one if
    present) or False."""
    stem = rel_path.replace("/", "-").removesuffix(".ipynb")
    print(f"{rel_path} ({kind})")
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    t0 = time.perf_counter()
    try:
        nbp = NotebookPage(page, lab, rel_path, args.notebook_timeout, args.server_timeout)
        nbp.open()
        dom_cells = nbp.run_all()
        seconds = time.perf_counter() - t0
        nb = nbp.save()
        dom_cells = without_stderr_notes(dom_cells, nb)
        if kind == "solution":
            problems = solution_problems(nb)
            problems += [p for c in dom_cells for p in
                         visible_error_problems([{**c, "exercise": False}]) if c["errors"]]
        else:
            problems = learner_problems(nb)
            hint = run_all_stopped_hint(nb)
            if hint:  # one explanation instead of one "never ran" per cell
                problems = [hint] + [p for p in problems if not p.endswith("never ran")]
            exercise_idx = {n for n, c in enumerate(nb["cells"]) if _is_exercise(c)}
            problems += visible_error_problems(
                [{**c, "exercise": c["index"] in exercise_idx} for c in dom_cells])
        figures = sum(c["images"] for c in dom_cells)
        if problems:
            report.fail(rel_path, problems)
        else:
            errs = sum(bool(c["errors"]) for c in dom_cells)
            report.ok(f"all {len(dom_cells)} code cells ran in {seconds:.0f} s, {figures} figure(s), "
                      + ("no errors" if kind == "solution" else f"{errs} exercise cell(s) show the one-line message"))
        if figures == 0:
            report.notes.append(f"{rel_path}: no figure was rendered")
        if not args.no_screenshots:
            shots = nbp.screenshot_pages(args.out_dir / stem)
            report.ok(f"{len(shots)} screenshot(s): {shots[0].relative_to(args.out_dir.parent) if shots else ''} ...")
        if type_solution and kind == "learner" and solution_nb is not None:
            first = next((n for n, c in enumerate(nb["cells"]) if _is_exercise(c)), None)
            if first is None:
                report.fail(rel_path, "no exercise cell to type a solution into")
            else:
                source = solution_cell_source(solution_nb, nb["cells"][first]["id"])
                name = exercise_name(source) or "?"
                nbp.replace_cell_source(first, source)
                cell = nbp.run_cell(first)
                shown = cell["text"].strip()
                if PASSED.search(shown) and not cell["errors"]:
                    report.ok(f"typed the solution of {name!r} into cell {first}: {shown.splitlines()[-1]}")
                else:
                    report.fail(rel_path, f"after typing the solution of {name!r} into cell {first} the cell "
                                          f"shows {shown[:300]!r} instead of '✔ {name}: passed'")
                nbp.cell_locator(first).screenshot(path=str(args.out_dir / f"{stem}-typed-solution.png"))
        if slider:
            slider_check(nbp, args.out_dir, stem, report, required=slider is True)
    except BrowserTestError as err:
        report.fail(rel_path, str(err).removeprefix(f"{rel_path}: "))
        try:
            page.screenshot(path=str(args.out_dir / f"{stem}-FAILED.png"))
        except Exception:  # noqa: BLE001 - best effort
            pass
    finally:
        context.close()
        lab.shutdown_kernels()
    print(f"  ({time.perf_counter() - t0:.0f} s)")


def _load_build_tool():
    spec = importlib.util.spec_from_file_location("build_lessons", REPO / "tools" / "build_lessons.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_lessons", module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def _missing_tools(chromium: str) -> list[str]:
    missing = []
    if not Path(chromium).is_file():
        missing.append(f"{chromium} (apt-get install chromium fonts-noto-color-emoji)")
    for mod, hint in (("playwright", "pip install playwright"), ("jupyterlab", "pip install -e '.[lessons]'"),
                      ("jupytext", "pip install -e '.[lessons]'"), ("ipywidgets", "pip install -e '.[lessons]'")):
        if importlib.util.find_spec(mod) is None:
            missing.append(f"the {mod} package ({hint})")
    return missing


def main(argv=None) -> int:
    args = parse_args(argv)
    missing = _missing_tools(args.chromium)
    if missing:
        print("browser_test: missing " + "; ".join(missing), file=sys.stderr)
        return 2
    # a CI timeout sends SIGTERM: unwind through the finally blocks that stop the server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_start = time.perf_counter()
    out = args.out_dir.resolve()
    args.out_dir = out
    nb_root = out / "nb"
    scratch = out / "jupyter"
    for old in (nb_root, scratch):
        shutil.rmtree(old, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        if not old.name.startswith("book-"):
            old.unlink()

    report = Report()
    lessons = []
    for number in args.lessons:
        src = find_lesson(args.lessons_dir, number)
        if src is None:
            msg = f"lesson {number}: SKIPPED, no lessons/{number}_*.py yet"
            print(msg)
            report.notes.append(msg)
        else:
            lessons.append((number, src))
    if lessons:
        build = _load_build_tool()
        build.build(args.lessons_dir, nb_root / "learner", nb_root / "solutions",
                    only=[n for n, _ in lessons], force=True, log=lambda m: None)
    extra = []
    for path in args.notebook:
        (nb_root / "extra").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, nb_root / "extra" / path.name)
        extra.append(f"extra/{path.name}")
    if not lessons and not extra:
        print("browser_test: nothing to run")
        for note in report.notes:
            print(f"note: {note}")
        return 0

    from playwright.sync_api import sync_playwright

    lab = JupyterLab(nb_root, scratch, out / "jupyterlab.log", args.server_timeout)
    try:
        lab.start()
        print(f"JupyterLab on {lab.url} (root {nb_root}, log {lab.log_path})")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=not args.headed,
                                         args=[a for a in CHROMIUM_ARGS if a != "--headless" or not args.headed])
            try:
                for number, src in lessons:
                    name = src.stem + ".ipynb"
                    solution_nb = json.loads((nb_root / "solutions" / name).read_text(encoding="utf-8"))
                    check_notebook(browser, lab, f"solutions/{name}", "solution", args, report,
                                   slider=number in SLIDER_LESSONS)
                    check_notebook(browser, lab, f"learner/{name}", "learner", args, report,
                                   solution_nb=solution_nb, type_solution=number in TYPE_SOLUTION_LESSONS,
                                   slider=number in SLIDER_LESSONS)
                for rel in extra:
                    check_notebook(browser, lab, rel, "solution", args, report, slider="optional")
            finally:
                browser.close()
    except BrowserTestError as err:
        report.fail("setup", str(err))
    finally:
        lab.stop()

    seconds = time.perf_counter() - t_start
    for note in report.notes:
        print(f"note: {note}")
    if report.failures:
        print(f"\nbrowser_test: {len(report.failures)} FAILED check(s) in {seconds:.0f} s:")
        for f in report.failures:
            print(f"  - {f}")
        print(f"screenshots and the server log: {out}")
        return 1
    print(f"\nbrowser_test: all checks passed in {seconds:.0f} s (screenshots: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
