"""nbval executes the solutions notebook (shortened training), as CI does, and checks its stderr."""

from __future__ import annotations

import os

import pytest
from nbval_run import nbval

from bnlab.instructor import notebooks

pytestmark = pytest.mark.slow


def test_solutions_notebook_runs_under_nbval():
    """Every cell of the solutions runs, and none writes to stderr (tests/nbval_run.py)."""
    nbval(notebooks.SOLUTIONS, {"BNLAB_SHORT": "1", "BNLAB_SHORT_BATCHES": os.environ.get("BNLAB_SHORT_BATCHES", "20")})


def test_a_cell_that_writes_to_stderr_fails_the_nbval_run(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("print('fine')"),
        nbformat.v4.new_code_cell("import sys; sys.stderr.write('noise')"),
    ]
    nbformat.write(nb, tmp_path / "noisy.ipynb")
    with pytest.raises(AssertionError, match=r"Cell 1 wrote to stderr .*noise"):
        nbval(tmp_path / "noisy.ipynb", {})
    nb.cells.pop()
    nbformat.write(nb, tmp_path / "noisy.ipynb")
    nbval(tmp_path / "noisy.ipynb", {})
