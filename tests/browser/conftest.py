"""Fixtures of the browser tests: Chromium through Playwright, JupyterLab on the student notebooks
(started by `make lab`, as students start it) and on a scratch nbgrader course for the formgrader.

Without Chromium or Playwright the tests skip with a line that says how to install them; where
the environment variable ``CI`` is set (``.ci/run`` sets it), a missing browser fails them.
Screenshots go to ``test-artifacts/browser/`` (``BNLAB_BROWSER_ARTIFACTS`` overrides), one per
step; the folder is emptied when the session starts and printed when it ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import labdriver
import pytest
from labdriver import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO

# The students' kernels run the shortened training of `BNLAB_SHORT=1 make lab` (40 batches a run):
# enough for the live panel to update several times, short enough for nbgrader's Validate.
# Grading in the instructor's fixture needs no curves: a handful of batches per run.
GRADING_BATCHES = "5"
HEADED = os.environ.get("BNLAB_BROWSER_HEADED") == "1"  # tools/browser_check.py sets both
SLOWMO = int(os.environ.get("BNLAB_BROWSER_SLOWMO") or 0)  # milliseconds after each browser action


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.iterdir():
        if old.is_file():
            old.unlink()
    ignore = ARTIFACTS.parent / ".gitignore"
    if ARTIFACTS.parent.parent == REPO and not ignore.exists():
        ignore.write_text("# screenshots of the browser tests (CI artefacts), never committed\n*\n")
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser(artifacts):
    reason = labdriver.missing_browser()
    if reason:
        if in_ci():
            pytest.fail(f"CI needs the browser tests: {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=not HEADED, args=CHROMIUM_ARGS, slow_mo=SLOWMO
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab; ``page.external_requests`` lists every request that left the machine."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.external_requests = []

    def record(request):
        url = urllib.parse.urlsplit(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in (labdriver.HOST, "localhost"):
            page.external_requests.append(request.url)

    page.on("request", record)
    yield page
    context.close()


@pytest.fixture(scope="session")
def student_lab(browser, tmp_path_factory):
    """``make lab`` on a scratch copy of release/ (the tests type into the notebooks and save them).

    Yields ``(base_url, root)``; the kernels run the shortened training (``BNLAB_SHORT=1``)."""
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed (the students' `make lab` needs it)")
    work = tmp_path_factory.mktemp("student-lab")
    root = work / "release"
    # BNLAB_BROWSER_RELEASE: another generated release/ to test (e.g. one made from an edited source/).
    shutil.copytree(os.environ.get("BNLAB_BROWSER_RELEASE") or REPO / "release", root)
    port = labdriver.free_port()
    args = " ".join(labdriver.lab_args(work))
    cmd = ["make", "--no-print-directory", "lab", f"LAB_ROOT={root}", f"PORT={port}", f"LAB_ARGS={args}"]
    env = labdriver.lab_env(work, {"BNLAB_SHORT": "1"})
    with labdriver.jupyter_lab(cmd, REPO, env, port, ARTIFACTS / "student-lab.log") as base:
        yield base, root
        with contextlib.suppress(OSError):
            labdriver.shutdown_kernels(base)


@pytest.fixture(scope="session")
def instructor_lab(browser, tmp_path_factory):
    """JupyterLab in a scratch nbgrader course holding one autograded submission (student ``ada``).

    The course is built with bnlab.instructor.scratch (generate, submit the solution, grade as ``make
    autograde`` does); the formgrader then shows it. Yields ``(base_url, course)``."""
    from bnlab.instructor import notebooks, scratch
    from bnlab.instructor.autograde.coordinator import summary
    from bnlab.instructor.nbgrader import nbgrader

    work = tmp_path_factory.mktemp("instructor-lab")
    if shutil.which("make"):
        labdriver.install_lab_settings()
    course = scratch.create_course(work / "course")
    # A named student, as after `nbgrader db student import` (else the formgrader shows "None, None").
    nbgrader("db", "student", "add", "ada", "--first-name=Ada", "--last-name=Lovelace", root=course)
    scratch.submit(course, "ada", notebooks.fill_in(scratch.release_notebook(course), notebooks.solution_answers()))
    graded = scratch.autograde(course, env={"BNLAB_SHORT_BATCHES": GRADING_BATCHES})
    assert graded.graded == ["ada"], f"autograde failed in the fixture:\n{summary(graded)}"
    with labdriver.course_lab(course, work, {"BNLAB_SHORT_BATCHES": GRADING_BATCHES}, "instructor-lab.log") as (
        base,
        _,
    ):
        yield base, course
