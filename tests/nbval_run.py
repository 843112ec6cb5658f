"""nbval runs of the course's notebooks, as CI does, and the pytest plugin they load.

``nbval --nbval-lax`` executes every cell and fails on an error, but compares no output (the notebooks are stored
without outputs). The plugin (``-p nbval_run``) also fails a cell that
writes to stderr: nbgrader gives zero points to such cells, and a student sees a red box. One run then checks both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def nbval(notebook: str | Path, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run nbval (lax, stderr checked) on ``notebook`` (a path relative to the repository or absolute) with the
    environment variables ``env`` added; fail the calling test with nbval's report when a cell fails."""
    notebook = str(notebook)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "nbval_run", "-p", "no:cacheprovider", "-q", notebook],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"nbval failed on {notebook}:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert " passed" in result.stdout, result.stdout[-2000:]
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """After nbval ran a cell (``item.test_outputs``, what the kernel sent): fail it if it wrote to stderr."""
    result = yield
    noisy = [
        output.get("text", "")[:300]
        for output in getattr(item, "test_outputs", None) or []
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    ]
    if noisy:
        raise AssertionError(f"{item.name} wrote to stderr (nbgrader gives such a cell zero points): {noisy}")
    return result
