"""Helpers to write course notebooks as Python (cells with nbgrader metadata).

The source notebooks under source/ are the masters; the scripts in tools/ that use this module
are how they were first written, kept so that a large edit can be made in one place and the
notebook regenerated (``python tools/<script>.py``). Small edits can be made in JupyterLab.
"""
from __future__ import annotations

import textwrap

import nbformat

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _src(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def md(text: str, grade_id: str | None = None):
    cell = nbformat.v4.new_markdown_cell(_src(text))
    if grade_id:
        cell.metadata["nbgrader"] = _meta(grade_id, locked=True)
    return cell


def _meta(grade_id, *, grade=False, solution=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def code(text: str, grade_id: str | None = None, tags=()):
    """A plain code cell; with ``grade_id`` it is read-only for students."""
    cell = nbformat.v4.new_code_cell(_src(text))
    if grade_id:
        cell.metadata["nbgrader"] = _meta(grade_id, locked=True)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def answer(text: str, grade_id: str):
    """A cell the student completes (``### BEGIN SOLUTION`` regions are replaced by the stub)."""
    cell = nbformat.v4.new_code_cell(_src(text))
    cell.metadata["nbgrader"] = _meta(grade_id, solution=True)
    return cell


def test(text: str, grade_id: str, points: int):
    """An autograded test cell worth ``points``."""
    cell = nbformat.v4.new_code_cell(_src(text))
    cell.metadata["nbgrader"] = _meta(grade_id, grade=True, locked=True, points=points)
    return cell


def notebook(cells, path):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python", "version": "3.11"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return nb
