"""Which tests share a worker when the suite runs on two (``make test``: pytest-xdist, ``-n 2 --dist loadgroup``).

A worker is a pytest process of its own, with its own session fixtures. So the tests that share an expensive
session fixture, or must never run beside each other, go to one worker as one group (:data:`GROUPS`):

- ``grading``: the modules graded by the shared gradings of tests/instructor/shared_grading.py (one course per
  route, minutes each), with tests/instructor/test_autograde.py, whose gradings and Dask cluster also use both
  cores: on one worker they grade one after another instead of four grading processes fighting for two cores;
- ``browser``: tests/browser, whose session fixtures (Chromium, the student's and the instructor's JupyterLab)
  start once, and whose hub test must never run beside another hub test (their accounts share a prefix).

Every other test goes with its module, as under ``--dist loadscope``, so a module's fixtures are built once.
The workers take the groups first (longest first), then the modules in the order pytest collects them.
A run without ``-n`` (plain ``pytest tests/x.py``) runs as before, in collection order.

The groups are told by path, in the scheduler (:func:`pytest_xdist_make_scheduler`), not by pytest-xdist's
``xdist_group`` mark: xdist 3.8 writes the mark into ``item._nodeid``, which pytest 9.2's items no longer read,
so the mark groups nothing. Every collection checks that the modules which use the shared gradings are in
``grading`` (:func:`pytest_collection_modifyitems`), so a new one cannot land on a second worker unnoticed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Whose questions a notebook shows when a test runs it outside the grader (nbval, the in-process checks, the
# browser's JupyterLab): the exercise's setup cell needs an id (bnlab.variants); a test that grades sets its own.
os.environ.setdefault("BNLAB_STUDENT", "pytest")

TESTS = Path(__file__).resolve().parent
# group -> the test paths (files or folders, from the repository root) in it; longest group first
GROUPS = {
    "grading": (
        "tests/instructor/test_feedback.py",
        "tests/instructor/test_hostile_pipeline.py",
        "tests/instructor/test_pipeline.py",
        "tests/instructor/test_sandbox_pipeline.py",
        "tests/instructor/test_tamper_pipeline.py",
        "tests/instructor/test_variants_pipeline.py",
        "tests/instructor/test_autograde.py",  # grades on both cores: with the shared gradings
    ),
    "browser": ("tests/browser/",),
}
SHARED_GRADINGS = ("grader_grading", "nbgrader_grading")  # tests/instructor/conftest.py


def group_of(nodeid: str) -> str | None:
    """The group of the test ``nodeid`` (one of :data:`GROUPS`), or ``None``: it goes with its module."""
    path = nodeid.split("::", 1)[0]
    return next((group for group, paths in GROUPS.items() if any(path.startswith(p) for p in paths)), None)


def uses_shared_grading(item: pytest.Item) -> bool:
    """Does ``item`` use a shared grading: as a fixture, or its module registered students for one?"""
    module = getattr(item, "module", None)
    shared_grading = sys.modules.get("shared_grading")  # imported by the modules that register gradings
    registered = (
        module is not None
        and shared_grading is not None
        and any(batch.owner == module.__name__ for batches in shared_grading._BATCHES.values() for batch in batches)
    )
    return registered or bool(set(SHARED_GRADINGS) & set(item.fixturenames))


@pytest.hookimpl(trylast=True)  # the items that will run (after -k and -m)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    strays = sorted(
        {item.nodeid.split("::", 1)[0] for item in items if uses_shared_grading(item)} - set(GROUPS["grading"])
    )
    if strays:
        raise pytest.UsageError(
            f"{', '.join(strays)} use the shared gradings of tests/instructor/shared_grading.py: add them to "
            "GROUPS['grading'] in tests/conftest.py (on a second worker they would grade everything again)"
        )
    if hasattr(config, "workerinput"):  # an xdist worker: the controller hands out work units in this order
        order = list(GROUPS)
        items.sort(key=lambda item: order.index(group_of(item.nodeid)) if group_of(item.nodeid) else len(order))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup`` with :data:`GROUPS`: one work unit per group, and one per module for every other
    test (as ``--dist loadscope``), in the order the workers collected them (not by their number of tests)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleOrGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid) or nodeid.split("::", 1)[0]

    config.option.loadscopereorder = False
    return ModuleOrGroupScheduling(config, log)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where the browser tests left their screenshots. Here rather than in tests/browser/conftest.py: under
    xdist the summary comes from the controller, which loads only this conftest."""
    reports = (report for reports in terminalreporter.stats.values() for report in reports)
    if not any(getattr(report, "nodeid", "").startswith("tests/browser/") for report in reports):
        return
    sys.path.insert(0, str(TESTS / "browser"))
    try:
        import labdriver
    finally:
        sys.path.remove(str(TESTS / "browser"))
    shots = sorted(labdriver.ARTIFACTS.glob("*.png")) if labdriver.ARTIFACTS.is_dir() else []
    if shots:
        terminalreporter.write_line(
            f"browser tests: {len(shots)} screenshots and the JupyterLab logs in {labdriver.ARTIFACTS}"
        )
