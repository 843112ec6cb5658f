"""Grades out of the course: nbgrader's ``grades.csv`` (graded assignments only), one column per check
(``grades_per_question.csv``) and a Canvas gradebook import (``grades_canvas.csv``).

:func:`export` (``make export``, and every ``make autograde``) writes all three. ``nbgrader_config.py``
sets :class:`GradedCsvExportPlugin` as nbgrader's export plugin, so ungraded notebooks such as the
lesson are left out. The Canvas file follows Canvas' own gradebook layout: ``Student, ID, SIS User ID,
SIS Login ID, Section``, one column per graded assignment, and the ``Points Possible`` row second.
"""

from __future__ import annotations

import csv
from pathlib import Path

from nbgrader.plugins.export import CsvExportPlugin

from bnlab.instructor.autograde import record

PER_QUESTION = "grades_per_question.csv"
CANVAS_CSV = "grades_canvas.csv"
CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
POINTS_POSSIBLE = "    Points Possible"  # Canvas' own export writes the label with these four spaces


def graded_assignments(gradebook) -> list[str]:
    """Names of the assignments worth points (the ungraded lesson, max score 0, is left out)."""
    return [a.name for a in gradebook.assignments if a.max_score and a.max_score > 0]


class GradedCsvExportPlugin(CsvExportPlugin):
    """nbgrader's CSV export without ungraded assignments (``c.ExportApp.plugin_class``)."""

    def export(self, gradebook) -> None:
        graded = graded_assignments(gradebook)
        wanted = [str(a) for a in self.assignment]
        self.assignment = [a for a in graded if not wanted or a in wanted]
        if not self.assignment:
            self.log.warning("No graded assignment to export (only ungraded notebooks in the gradebook).")
            self.assignment = ["(none)"]
        super().export(gradebook)


def _source_order(course: Path, assignment: str, notebook: str):
    """Sort key: a graded cell's position in the source notebook (unknown cells last)."""
    import nbformat

    path = Path(course) / "source" / assignment / f"{notebook}.ipynb"
    order = {}
    if path.exists():
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            order[cell.metadata.get("nbgrader", {}).get("grade_id")] = i
    return lambda cell: (order.get(cell.name, len(order)), cell.name)


def per_question(course: Path, assignment: str, path: Path | None = None) -> Path:
    """Write the per-question CSV of ``assignment`` (one row per student, one column per graded check)."""
    course = Path(course)
    path = Path(path or course / PER_QUESTION)
    status = record.records(course, assignment)
    with record.gradebook(course) as gb:
        cells = [
            (cell.name, cell.max_score)
            for nb in gb.find_assignment(assignment).notebooks
            for cell in sorted(nb.grade_cells, key=_source_order(course, assignment, nb.name))
        ]
        header = [
            "student_id",
            *(f"{name} (max {maximum:g})" for name, maximum in cells),
            "total",
            "max_score",
            "status",
        ]
        rows = []
        for submission in sorted(gb.assignment_submissions(assignment), key=lambda s: s.student.id):
            scores = {g.name: g.score for nb in submission.notebooks for g in nb.grades}
            last = status.get(submission.student.id, {})
            rows.append(
                [
                    submission.student.id,
                    *(scores.get(name, 0.0) for name, _ in cells),
                    submission.score,
                    submission.max_score,
                    last.get("status", "graded by nbgrader"),
                ]
            )
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def canvas_name(student) -> str:
    """Canvas' "Last, First" from nbgrader's student (empty when unknown); a leading ``=`` is quoted as Canvas does."""
    name = ", ".join(part for part in (student.last_name, student.first_name) if part)
    return f'="{name}"' if name.startswith("=") else name


def canvas_ids(student_id: str) -> list[str]:
    """``[ID, SIS User ID, SIS Login ID]``: a numeric id is the Canvas user id (from the Canvas file
    names); any other (a JupyterHub user name, from the exchange) is taken as the SIS login."""
    return [student_id, "", ""] if student_id.isdigit() else ["", "", student_id]


def canvas_score(gb, assignment: str, student_id: str) -> str:
    """The score after any late penalty, as nbgrader's grades.csv computes it; empty without a submission
    (Canvas leaves an empty cell's grade as it is)."""
    from nbgrader.api import MissingEntry

    try:
        submission = gb.find_submission(assignment, student_id)
    except MissingEntry:
        return ""
    return f"{max(0.0, submission.score - (submission.late_submission_penalty or 0.0)):g}"


def canvas_rows(gb, columns: dict[str, str] | None = None) -> list[list[str]]:
    """Canvas' gradebook layout: header, the Points Possible row, then one row per student."""
    assignments = [gb.find_assignment(name) for name in graded_assignments(gb)]
    columns = columns or {}
    rows = [
        [*CANVAS_COLUMNS, *(columns.get(a.name, a.name) for a in assignments)],
        [POINTS_POSSIBLE, "", "", "", "", *(f"{a.max_score:g}" for a in assignments)],
    ]
    students = sorted(gb.students, key=lambda s: (canvas_name(s) == "", canvas_name(s).lower(), s.id))
    for student in students:
        rows.append(
            [
                canvas_name(student),
                *canvas_ids(student.id),
                "",
                *(canvas_score(gb, a.name, student.id) for a in assignments),
            ]
        )
    return rows


def canvas_export(course: Path, path: Path | None = None, columns: dict[str, str] | None = None) -> Path:
    """Write ``grades_canvas.csv``: a Canvas gradebook import (``columns`` renames assignment columns,
    e.g. to Canvas' own ``Title (assignment id)`` so that the import fills that assignment)."""
    path = Path(path or Path(course) / CANVAS_CSV)
    with record.gradebook(course) as gb:
        rows = canvas_rows(gb, columns)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def export(course: Path, assignment: str, columns: dict[str, str] | None = None) -> list[Path]:
    """``nbgrader export`` (graded assignments only), the per-question CSV and the Canvas import; return the paths."""
    from bnlab.instructor.nbgrader import nbgrader

    course = Path(course)
    nbgrader("export", root=course)
    return [course / "grades.csv", per_question(course, assignment), canvas_export(course, columns=columns)]
