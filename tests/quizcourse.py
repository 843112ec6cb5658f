"""A tiny nbgrader course with a notebook of our own (no TensorFlow, seconds to grade) and the course's
``nbgrader_config.py``: for tests of the grading machinery rather than of the exercise."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from bnlab.instructor import scratch
from bnlab.instructor.nbgrader import nbgrader
from bnlab.instructor.notebooks import ROOT


def meta(grade_id: str, grade: bool = False, solution: bool = False, points: float | None = None) -> dict:
    """nbgrader cell metadata: an answer (``solution``), a graded check or written answer (``grade``), or a
    locked cell."""
    data = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": not solution,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        data["points"] = points
    return {"nbgrader": data}


def create(directory: Path, notebook: nbformat.NotebookNode, name: str = "quiz") -> Path:
    """A course in ``directory`` whose assignment ``name`` holds ``notebook`` (as ``name.ipynb``), generated."""
    (directory / "source" / name).mkdir(parents=True)
    nbformat.write(notebook, directory / "source" / name / f"{name}.ipynb")
    shutil.copy(ROOT / "nbgrader_config.py", directory / "nbgrader_config.py")
    nbgrader("generate_assignment", name, "--force", root=directory)
    return directory


def answered(course: Path, answers: dict, name: str = "quiz") -> nbformat.NotebookNode:
    """The released notebook with the answer cells ``{grade_id: source}`` written in."""
    nb = nbformat.read(course / "release" / name / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def submit(course: Path, student: str, nb: nbformat.NotebookNode, name: str = "quiz") -> Path:
    return scratch.submit(course, student, nb, assignment=name, notebook=name)
