"""Which tests share a worker when the suite runs on two (``make test``: pytest-xdist, ``-n 2 --dist loadgroup``).

A worker is a pytest process of its own, with its own session fixtures. So the tests that share an expensive
session fixture, or must never run beside each other, go to one worker as one group (the ``xdist_group`` mark,
given here from their path and fixtures rather than in each module):

- ``grading``: the modules graded by the shared gradings of tests/instructor/shared_grading.py (one course per
  route, minutes each), with tests/instructor/test_autograde.py, whose gradings and Dask cluster also use both
  cores: on one worker they grade one after another instead of four grading processes fighting for two cores;
- ``browser``: tests/browser, whose session fixtures (Chromium, the student's and the instructor's JupyterLab)
  start once, and whose hub test must never run beside another hub test (their accounts share a prefix).

Every other test goes with its module, as under ``--dist loadscope``, so a module's fixtures are built once.
The workers take the groups first (longest first), then the modules in the order pytest collects them.
A run without ``-n`` (plain ``pytest tests/x.py``) runs as before, in collection order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SHARED_GRADINGS = ("grader_grading", "nbgrader_grading")  # tests/instructor/conftest.py
GROUPS = ("grading", "browser")  # the order the workers take them in: longest first
MULTIPROCESS = {"instructor/test_autograde.py"}  # graded on both cores: with the shared gradings


def group_of(item: pytest.Item) -> str | None:
    """The named group of ``item`` (one of :data:`GROUPS`), or ``None``: it goes with its module."""
    if not item.path.is_relative_to(TESTS):
        return None
    path = item.path.relative_to(TESTS).as_posix()
    module = getattr(item, "module", None)
    shared_grading = sys.modules.get("shared_grading")  # imported by the modules that register gradings
    registered = (
        module is not None
        and shared_grading is not None
        and any(batch.owner == module.__name__ for batches in shared_grading._BATCHES.values() for batch in batches)
    )
    if registered or path in MULTIPROCESS or set(SHARED_GRADINGS) & set(item.fixturenames):
        return "grading"
    if path.startswith("browser/"):
        return "browser"
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: plain pytest, order and ids unchanged
        return
    groups = {}
    for item in items:
        groups[item] = group_of(item)
        if groups[item] is not None:
            item.add_marker(pytest.mark.xdist_group(groups[item]))
    # Both workers collect the same list; the controller hands out work units in this order.
    items.sort(key=lambda item: GROUPS.index(groups[item]) if groups[item] else len(GROUPS))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup``, with every test outside a named group in its module's group (one work unit per
    module, as ``--dist loadscope``), and the work units in collection order (not by their number of tests)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleOrGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return nodeid.split("::", 1)[0] if scope == nodeid else scope

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
