"""What the browser tests share: JupyterLab started as `make lab` starts it, a notebook driven as a
person drives it (click a cell, type, Ctrl+Enter), and a screenshot after every step.

Everything here goes through JupyterLab's visible UI or its REST API; nothing reaches into the
page's JavaScript objects. A failed step raises an AssertionError that names the step and the
screenshot taken when it failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
CHROMIUM = os.environ.get("BNLAB_CHROMIUM", "/usr/bin/chromium")
# Debian's chromium as root in a container, with no background traffic (COURSE_NOTES.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("BNLAB_BROWSER_ARTIFACTS", REPO / "test-artifacts" / "browser"))
# The cells of the notebook in the tab shown (JupyterLab may restore other tabs behind it).
CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"
STDERR = "application/vnd.jupyter.stderr"
STDOUT = "application/vnd.jupyter.stdout"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (one line that says how to fix it), or ``None``."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -e '.[test]' (it drives the system Chromium, no download)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (or point BNLAB_CHROMIUM at one)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def lab_args(workdir: Path) -> list[str]:
    """Loopback only, no token, no browser; user settings and workspaces in ``workdir`` (never ~/.jupyter)."""
    return [
        "--no-browser",
        "--ServerApp.token=",
        "--ServerApp.password=",
        f"--ServerApp.ip={HOST}",
        "--ServerApp.port_retries=0",
        f"--LabApp.user_settings_dir={workdir / 'user-settings'}",
        f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
    ]


def lab_env(workdir: Path, extra: dict) -> dict:
    """The server's environment: no config from ~/.jupyter (the course's settings must do the work)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BNLAB_SHORT", "JUPYTER"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(workdir / "config"),
        JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
        TF_CPP_MIN_LOG_LEVEL="3",
        **extra,
    )
    return env


@contextlib.contextmanager
def jupyter_lab(cmd: list[str], cwd: Path, env: dict, port: int, log_path: Path, timeout: float = 120):
    """Run ``cmd`` (a JupyterLab server on ``port``) in its own process group; yield its base URL."""
    log = open(log_path, "wb")
    process = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{base}/api/status", timeout=2) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def install_lab_settings() -> None:
    """The course's JupyterLab settings and Validate message into the course's .venv, as ``make lab`` and
    ``make hub`` install them (``make lab-settings``; jupyter/README.md)."""
    subprocess.run(["make", "--no-print-directory", "lab-settings"], cwd=REPO, check=True, capture_output=True)


@contextlib.contextmanager
def course_lab(course: Path, work: Path, extra_env: dict, log_name: str):
    """JupyterLab (the formgrader with it) served from the nbgrader course ``course``, as an instructor runs it
    there; ``work`` holds its settings. Yields the base URL and the server's environment; its kernels are shut
    down at the end."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", f"--ServerApp.root_dir={course}", f"--port={port}"]
    cmd += lab_args(work)
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    env = lab_env(work, {"BNLAB_COURSE_ROOT": str(course), **extra_env})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # nbgrader needs alembic
    with jupyter_lab(cmd, course, env, port, ARTIFACTS / log_name) as base:
        yield base, env
        with contextlib.suppress(OSError):
            shutdown_kernels(base)


def shutdown_kernels(base: str) -> None:
    """End every kernel of the server (each notebook's TensorFlow kernel holds a lot of memory)."""
    with urllib.request.urlopen(f"{base}/api/sessions", timeout=10) as response:
        sessions = json.load(response)
    for session in sessions:
        request = urllib.request.Request(f"{base}/api/sessions/{session['id']}", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


class Steps:
    """Numbered steps of one scenario, each ending with a screenshot in :data:`ARTIFACTS`.

    ``with steps("run the setup cell"): ...`` saves ``<scenario>-NN-run-the-setup-cell.png`` when
    the step succeeds; when it fails, ``...-FAILED.png`` and an AssertionError naming both.
    """

    def __init__(self, page, scenario: str):
        self.page, self.scenario, self.number, self.shots = page, scenario, 0, []

    def shot(self, name: str, full_page: bool = False, suffix: str = "") -> Path:
        path = ARTIFACTS / f"{self.scenario}-{self.number:02d}-{slug(name)}{suffix}.png"
        with contextlib.suppress(Exception):  # a screenshot must never hide the real failure
            self.page.screenshot(path=str(path), full_page=full_page)
            self.shots.append(path)
        return path

    @contextlib.contextmanager
    def __call__(self, title: str):
        self.number += 1
        start = time.monotonic()
        try:
            yield
        except Exception as exc:  # assertions and Playwright's timeouts alike
            path = self.shot(title, suffix="-FAILED")
            self.log(title, start, "FAILED")
            raise AssertionError(
                f"{self.scenario}, step {self.number} ({title}) failed; screenshot: {path}\n{type(exc).__name__}: {exc}"
            ) from exc
        self.log(title, start, "ok")
        self.shot(title)

    def log(self, title: str, start: float, outcome: str) -> None:
        """One line per step in ``steps.log`` next to the screenshots: outcome and seconds."""
        with open(ARTIFACTS / "steps.log", "a") as log:
            log.write(f"{self.scenario:<18} {self.number:>2} {outcome:<6} {time.monotonic() - start:6.1f} s  {title}\n")


# One JS function evaluated in the page: the outputs of code cell number `i` as a person sees them.
OUTPUTS_JS = """
([cells, i]) => {
  const cell = document.querySelectorAll(cells)[i];
  if (!cell) return null;
  const outputs = Array.from(cell.querySelectorAll(
      '.jp-OutputArea:not(.jp-OutputArea .jp-OutputArea) > .jp-OutputArea-child > .jp-OutputArea-output'));
  return outputs.map(o => ({mime: o.getAttribute('data-mime-type'), text: o.innerText,
                            widget: !!o.querySelector('.jupyter-widgets')}));
}
"""


class Notebook:
    """A notebook open in JupyterLab, driven through its visible UI."""

    def __init__(self, page, base: str, root: Path, relative: str):
        self.page, self.base, self.relative = page, base, relative
        self.file = root / relative
        self.nb = nbformat.read(self.file, as_version=4)

    # -- where things are -------------------------------------------------------------------
    def index(self, grade_id: str) -> int:
        """Index of the cell with nbgrader ``grade_id`` (as in the file and in the page)."""
        for i, cell in enumerate(self.nb.cells):
            if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
                return i
        raise AssertionError(f"{self.relative} has no cell with grade_id {grade_id!r}")

    def code_indices(self, start: int = 0, stop: int | None = None) -> list[int]:
        stop = len(self.nb.cells) if stop is None else stop
        return [i for i in range(start, stop) if self.nb.cells[i].cell_type == "code"]

    def cell(self, i: int):
        return self.page.locator(CELLS).nth(i)

    # -- opening ----------------------------------------------------------------------------
    def open(self, timeout: float = 120) -> None:
        """Open the notebook alone (``?reset``: no tabs restored) and wait until its kernel is idle
        and connected to the page."""
        self.page.goto(f"{self.base}/lab/tree/{self.relative}?reset")
        self.page.wait_for_selector(CELLS, timeout=timeout * 1000)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(f"{self.base}/api/sessions", timeout=2) as response:
                    sessions = json.load(response)
                kernels = [s["kernel"] for s in sessions if s.get("path", "").endswith(self.relative)]
                if kernels and kernels[0].get("execution_state") == "idle" and kernels[0].get("connections", 0):
                    break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the kernel of {self.relative} was not ready within {timeout:.0f} s")
        # JupyterLab attaches the cells of a long notebook a few at a time.
        while (shown := self.page.locator(CELLS).count()) != len(self.nb.cells):
            assert time.monotonic() < deadline, f"the page shows {shown} cells, the file has {len(self.nb.cells)}"
            time.sleep(0.5)

    # -- acting like a person ---------------------------------------------------------------
    def prompt(self, i: int) -> str:
        return self.cell(i).locator(".jp-InputPrompt").inner_text().strip()

    def start(self, i: int) -> None:
        """Click into code cell ``i`` and press Ctrl+Enter; again if the key press was dropped."""
        before = self.prompt(i)
        editor = self.cell(i).locator(".jp-InputArea-editor")
        for _ in range(3):
            editor.click()
            self.page.keyboard.press("Control+Enter")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self.prompt(i) != before:
                    return
                time.sleep(0.1)
        raise AssertionError(f"cell {i} did not start after 3 Ctrl+Enter presses (prompt {before!r})")

    def finished(self, i: int) -> bool:
        return re.fullmatch(r"\[\d+\]:", self.prompt(i)) is not None

    def wait(self, i: int, timeout: float = 180) -> list[dict]:
        deadline = time.monotonic() + timeout
        while not self.finished(i):
            if time.monotonic() > deadline:
                raise AssertionError(f"cell {i} still runs after {timeout:.0f} s (prompt {self.prompt(i)!r})")
            time.sleep(0.2)
        time.sleep(0.3)  # the last IOPub messages
        return self.outputs(i)

    def run(self, i: int, timeout: float = 180) -> list[dict]:
        """Run code cell ``i`` and return its outputs once it has finished."""
        self.start(i)
        return self.wait(i, timeout)

    def outputs(self, i: int) -> list[dict]:
        return self.page.evaluate(OUTPUTS_JS, [CELLS, i])

    def type_into(self, i: int, text: str) -> None:
        """Replace the code of cell ``i`` as a student does: click it, select all, type the new code.

        The text arrives as one input event (as when pasting), so the editor's auto-indent does not
        re-indent the lines. A Markdown cell is opened with a double click and rendered again."""
        markdown = self.nb.cells[i].cell_type == "markdown"
        if markdown:
            self.cell(i).dblclick()
        self.cell(i).locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.press("Delete")
        self.page.keyboard.insert_text(text)
        if markdown:
            self.page.keyboard.press("Control+Enter")

    def save(self) -> nbformat.NotebookNode:
        """Ctrl+S (command mode) and wait until the file on disk changed; return it."""
        mtime = self.file.stat().st_mtime_ns
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("Control+s")
        deadline = time.monotonic() + 30
        while self.file.stat().st_mtime_ns == mtime:
            if time.monotonic() > deadline:
                raise AssertionError(f"Ctrl+S did not save {self.relative} within 30 s")
            time.sleep(0.2)
        time.sleep(0.3)
        return nbformat.read(self.file, as_version=4)


def appears(locator, seconds: float, what: str) -> None:
    """Wait until ``locator`` is visible; else fail with a sentence saying what did not appear."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        locator.wait_for(timeout=seconds * 1000)
    except PlaywrightTimeout:
        raise AssertionError(f"{what} did not appear within {seconds:.0f} s") from None


def errors(outputs: list[dict]) -> list[str]:
    return [o["text"] for o in outputs if o["mime"] == STDERR]


def text(outputs: list[dict], mime: str = STDOUT) -> str:
    return "\n".join(o["text"] for o in outputs if o["mime"] == mime)


def news_prompts(page) -> int:
    """How many "get notified about official Jupyter news?" pop-ups the page shows."""
    return page.get_by_text("notified about official Jupyter news").count()


def validate(page, notebook: nbformat.NotebookNode, seconds: float) -> str:
    """Press the notebook's Validate button; return the success message after checking that it names every
    answer graded only after submission (by the rule of ``nbgrader validate``'s list,
    ``bnlab.exercise.graded_after_submission``) and the written answer, never a bare "Success!"."""
    from bnlab.exercise import CHOICE_CHECK

    page.get_by_role("button", name="Validate").click()
    verdict = page.locator("#validation-message")
    appears(verdict, seconds, "nbgrader's validation verdict")
    classes = verdict.get_attribute("class") or ""
    assert "validation-success" in classes, f"nbgrader's verdict ({classes}): {verdict.inner_text()[:1500]}"
    page.wait_for_selector("#validation-message[data-bnlab-rewritten]", timeout=10_000)
    message = verdict.inner_text()
    graded = [(c, c.metadata.get("nbgrader", {})) for c in notebook.cells]
    later = [(name, m["points"]) for c, m in graded if m.get("grade") for name in CHOICE_CHECK.findall(c.source)]
    written = [c for c, m in graded if m.get("grade") and c.cell_type == "markdown"]
    assert later and written, "the notebook has no answer graded after submission to name"
    assert "passes all the tests" not in message, f"Validate still claims that every test passed: {message}"
    for name, points in later:
        named = f"{name} ({points:g} point{'' if points == 1 else 's'})"
        assert named in message, f"Validate does not name {named} as graded after submission: {message}"
    assert "graded by hand after you submit" in message, f"Validate does not mention the written answer: {message}"
    return message


def score_by_hand(grader, field, score: str, saved) -> None:
    """Type ``score`` into a formgrader score ``field`` as a grader does (type, then Tab away, which saves it)
    and wait until ``saved()`` says the gradebook has it. The field is in the page's HTML before the
    formgrader's script has fetched the grades and bound them: a score typed earlier is wiped by the first
    render and never saved (seen under load), so this first waits for the script."""
    grader.wait_for_function("() => window.formgrader && formgrader.grades && formgrader.grades.loaded", timeout=60_000)
    field.fill(score)
    field.press("Tab")
    deadline = time.monotonic() + 30
    while not saved() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert saved(), f"the manual score {score} did not reach the gradebook within 30 s"
