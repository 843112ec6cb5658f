"""Where the course's notebooks live, and how the exercise's cells are read.

The course folder (``ROOT``), the exercise's source, release and solutions notebooks, the readers
that the benchmark, the nbgrader tooling and the tests use, and the one digest of a submission's files
(:func:`digest`; the files themselves are read by :func:`bnlab.instructor.admission.admit`, regular files
only). nbformat is imported only when a reader runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from bnlab.exercise import ASSIGNMENT, DEMO_CELLS, FILENAME, TRAINING_RUNS

if TYPE_CHECKING:
    import nbformat

ROOT = Path(__file__).resolve().parents[2]
RELATIVE = Path(ASSIGNMENT) / FILENAME  # inside source/, release/, solutions/, submitted/STUDENT/
SOURCE = ROOT / "source" / RELATIVE
RELEASE = ROOT / "release" / RELATIVE
SOLUTIONS = ROOT / "solutions" / RELATIVE


def digest(files: dict[str, bytes], salt: str = "") -> str:
    """SHA-256 (hex) of ``salt`` and ``files`` ``{name: bytes}``: the names and the contents, in name order."""
    sha = hashlib.sha256(salt.encode())
    for name in sorted(files):
        sha.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return sha.hexdigest()


def grade_id(cell) -> str | None:
    """The nbgrader ``grade_id`` of ``cell`` (``None`` for a cell nbgrader does not track)."""
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def read(path: Path = SOURCE) -> nbformat.NotebookNode:
    """The notebook at ``path`` (the source master by default)."""
    import nbformat

    return nbformat.read(path, as_version=4)


def code_cells(source: Path = SOURCE, skip_training_runs: bool = True) -> list[tuple[str | None, dict, str]]:
    """``(grade_id, nbgrader metadata, source)`` of the notebook's code cells, in order (by default
    without the training runs and demonstration cells)."""
    cells = []
    for cell in read(source).cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and not (skip_training_runs and meta.get("grade_id") in TRAINING_RUNS | DEMO_CELLS):
            cells.append((meta.get("grade_id"), meta, cell.source))
    return cells


def notebook_namespace(until: str, source: Path = SOURCE) -> dict:
    """Execute the notebook's code cells (training runs and test cells skipped) up to and including ``until``."""
    namespace: dict = {"__name__": "__exercise__"}
    for cell_id, meta, code in code_cells(source):
        if meta.get("grade"):
            continue
        exec(code, namespace)
        if cell_id == until:
            return namespace
    raise KeyError(f"no cell {until!r} in {source}")


def answer_cells(notebook: nbformat.NotebookNode) -> dict:
    """``{grade_id: source}`` of the cells a student writes (nbgrader ``solution`` cells)."""
    return {grade_id(c): c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")}


def solution_answers(source: Path = SOURCE) -> dict:
    """The instructor's answers, ``{grade_id: source}``, from the source notebook."""
    return answer_cells(read(source))


def fill_in(release_nb: nbformat.NotebookNode, answers: dict) -> nbformat.NotebookNode:
    """A copy of the student notebook with the answer cells ``{grade_id: source}`` written in."""
    import nbformat

    nb = nbformat.from_dict(release_nb)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb
