"""Whose variant a notebook shows, and the variants drawn for a student.

Every multiple-choice and numeric question of the exercise, and the case of its Part 3, takes its parameters
from the student's id, so one student's answers do not fit another's notebook. The id is, in this order:

1. the id the grader grades the notebook under: the trusted re-run sets it with :func:`graded_as`, the graded
   kernel gets it in ``BNLAB_STUDENT`` (set by the grader, never by the student);
2. on a JupyterHub, the user name (``JUPYTERHUB_USER``);
3. the id the student entered in the notebook's first code cell (``STUDENT_ID``), handed to :func:`use`.

A variant is drawn from a SHA-256 hash of the assignment's name, the id and the question's name, so it is the
same every time for one student and spread evenly over a class. This module imports only the standard library.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import hashlib
import re

from bnlab import settings
from bnlab.exercise import ASSIGNMENT

STUDENT_VARIABLE = settings.STUDENT_VARIABLE  # the id a graded kernel is graded under (set by the grader)
ID_CELL = re.compile(r"^STUDENT_ID\s*=\s*(.+?)\s*(?:#.*)?$", re.M)  # the notebook's first code cell
SHOWN = re.compile(r"drawn for student '([^']*)'")  # what :func:`use` prints

_graded: contextvars.ContextVar[str | None] = contextvars.ContextVar("graded", default=None)
_entered: str | None = None


class MissingStudentId(ValueError):
    """No id to draw the questions with."""


@contextlib.contextmanager
def graded_as(student: str | None):
    """Within this block (in this thread), the variants are drawn for ``student``: the trusted re-run of the
    checks grades a submission under the id nbgrader grades it under, whatever the submission says."""
    token = _graded.set(student or None)
    try:
        yield
    finally:
        _graded.reset(token)


def _clean(value) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def student_id(entered: str | None = None) -> str:
    """The id whose variants this notebook shows (see the module's docstring for the order)."""
    for found in (
        _graded.get(),
        settings.graded_student(),
        settings.hub_user(),
        _clean(entered),
        _clean(_entered),
    ):
        if found:
            return found
    raise MissingStudentId(
        'Enter your student id in the notebook\'s first code cell, e.g. STUDENT_ID = "12345": your user id in '
        "the course's LMS (on Canvas the number at the end of your profile's address, .../users/12345). Your "
        "questions are drawn for that id and graded under it. Then run that cell and this one again."
    )


def use(entered) -> str:
    """Take the id the student entered (``STUDENT_ID``), say whose questions the notebook shows, return that id.
    On a JupyterHub, or when the notebook is graded, the id comes from there, and an entered id that differs
    is pointed out."""
    global _entered
    _entered = _clean(entered)
    student = student_id()
    print(f"The questions of this notebook are drawn for student '{student}'.")
    if _entered and _entered != student:
        print(f"(STUDENT_ID = {_entered!r} is not used here: this notebook is yours as '{student}'.)")
    return student


def draw(question: str, count: int, student: str | None = None, assignment: str = ASSIGNMENT) -> int:
    """Which of ``count`` variants of ``question`` the student gets: the SHA-256 hash of the assignment, the
    id and the question, taken modulo ``count``."""
    key = "\x00".join((assignment, student or student_id(), question)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % count


def order(question: str, keys, student: str | None = None) -> list:
    """``keys`` in the order drawn for the student (one of all their permutations, from the hash)."""
    left, ordered = list(keys), []
    for position in range(len(left)):
        ordered.append(left.pop(draw(f"{question}#{position}", len(left), student)))
    return ordered


def entered_in(nb) -> set[str]:
    """The ids a notebook ``nb`` (nbformat) says it was answered for, read as text (nothing is run): the value of
    ``STUDENT_ID`` in its code cells and the ids its saved outputs say the questions were drawn for."""
    found = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for value in ID_CELL.findall(cell.source):
            try:
                text = _clean(ast.literal_eval(value))
            except (ValueError, SyntaxError):
                continue
            if text:
                found.add(text)
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            found.update(SHOWN.findall(text if isinstance(text, str) else "".join(text)))
    return found
