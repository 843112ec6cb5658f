"""nbval executes the solutions notebook (shortened training), as CI does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnlab.instructor import notebooks

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_solutions_notebook_runs_under_nbval():
    notebook = notebooks.SOLUTIONS
    env = {**os.environ, "BNLAB_SHORT": "1", "BNLAB_SHORT_BATCHES": os.environ.get("BNLAB_SHORT_BATCHES", "20")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", str(notebook)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
