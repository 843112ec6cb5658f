"""What goes in and out of a learning management system (Canvas, Moodle): archives in, grades out.

In: ``python -m bnlab.lms collect ASSIGNMENT --archive submissions.zip`` (``make collect
ARCHIVE=...``) puts the archive where ``nbgrader zip_collect`` looks
(``downloaded/ASSIGNMENT/archive/``) and runs it. ``nbgrader_config.py`` sets the file-name
pattern :data:`CANVAS_PATTERN` for Canvas-style names such as
``doejane_12345_67890_Batch_Normalization_Exercises.ipynb`` (name, Canvas user id, submission id,
the file the student uploaded; ``_LATE_`` after the name and a ``-1`` resubmission suffix are
accepted). The Canvas user id becomes the nbgrader student id. Without ``--archive`` (and nothing
in ``downloaded/``) it runs ``nbgrader collect``: submissions made through nbgrader's exchange.

Out: :func:`export` writes nbgrader's ``grades.csv`` (``nbgrader export``, configured with
:class:`GradedCsvExportPlugin` so ungraded notebooks such as the lesson are left out) and
``grades_per_question.csv``: one row per student, one column per graded check (named
``grade_id (max N)``), then the total, the maximum and the autograding status.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

from nbgrader.plugins.export import CsvExportPlugin

CANVAS_PATTERN = (r"^(?:.*[/\\])?[A-Za-z0-9'-]+?_(?:LATE_)?(?P<student_id>\d+)_\d+_"
                  r"(?P<file_id>[^/\\]+?)(?:-\d+)?\.ipynb$")
PER_QUESTION = "grades_per_question.csv"


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
    from bnlab import graderecord

    course = Path(course)
    path = Path(path or course / PER_QUESTION)
    status = graderecord.records(course, assignment)
    with graderecord.gradebook(course) as gb:
        cells = [(cell.name, cell.max_score) for nb in gb.find_assignment(assignment).notebooks
                 for cell in sorted(nb.grade_cells, key=_source_order(course, assignment, nb.name))]
        header = ["student_id", *(f"{name} (max {maximum:g})" for name, maximum in cells),
                  "total", "max_score", "status"]
        rows = []
        for submission in sorted(gb.assignment_submissions(assignment), key=lambda s: s.student.id):
            scores = {g.name: g.score for nb in submission.notebooks for g in nb.grades}
            record = status.get(submission.student.id, {})
            rows.append([submission.student.id, *(scores.get(name, 0.0) for name, _ in cells),
                         submission.score, submission.max_score, record.get("status", "graded by nbgrader")])
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def export(course: Path, assignment: str) -> list[Path]:
    """``nbgrader export`` (graded assignments only) and the per-question CSV; return both paths."""
    from bnlab.release import nbgrader

    course = Path(course)
    nbgrader("export", root=course)
    return [course / "grades.csv", per_question(course, assignment)]


def zip_collect(course: Path, assignment: str, archive: Path | None = None) -> list[str]:
    """Collect an LMS archive (or files already in ``downloaded/ASSIGNMENT/archive/``) into ``submitted/``.

    Returns the students collected. nbgrader's log goes to the console when nothing matched."""
    from bnlab.release import nbgrader

    course = Path(course)
    inbox = course / "downloaded" / assignment / "archive"
    if archive is not None:
        inbox.mkdir(parents=True, exist_ok=True)
        shutil.copy(archive, inbox / Path(archive).name)
    if not inbox.is_dir() or not any(inbox.iterdir()):
        raise SystemExit(f"nothing to collect: put the LMS archive in {inbox}/ or pass --archive PATH")
    before = {p.parent.name for p in (course / "submitted").glob(f"*/{assignment}")}
    result = nbgrader("zip_collect", assignment, "--force", root=course, check=False)
    after = {p.parent.name for p in (course / "submitted").glob(f"*/{assignment}")}
    skipped = [line for line in (result.stdout + result.stderr).splitlines() if "Skipped" in line or "did not match" in line]
    if result.returncode != 0 or skipped:
        print(result.stdout + result.stderr, file=sys.stderr)
    if result.returncode != 0:
        raise SystemExit(f"nbgrader zip_collect failed ({result.returncode}); see above")
    new = after - before
    if new:
        print(f"new in submitted/: {', '.join(sorted(new))}")
    return sorted(after)


def main(argv: list[str] | None = None) -> int:
    from bnlab.exercise import ASSIGNMENT
    from bnlab.release import ROOT, nbgrader

    parser = argparse.ArgumentParser(description="Collect submissions from an LMS archive or the exchange; export grades.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="nbgrader zip_collect (with --archive or files in downloaded/), else nbgrader collect")
    e = sub.add_parser("export", help="grades.csv (graded assignments) and grades_per_question.csv")
    for p in (c, e):
        p.add_argument("assignment", nargs="?", default=ASSIGNMENT)
        p.add_argument("--course", default=str(ROOT))
    c.add_argument("--archive", type=Path, help="zip (or .tar.gz) downloaded from the LMS")
    args = parser.parse_args(argv)
    course = Path(args.course).resolve()
    if args.command == "export":
        for path in export(course, args.assignment):
            print("wrote", path)
        return 0
    inbox = course / "downloaded" / args.assignment / "archive"
    if args.archive or (inbox.is_dir() and any(inbox.iterdir())):
        students = zip_collect(course, args.assignment, args.archive)
        print(f"collected {len(students)} submission(s) into submitted/: {', '.join(students)}")
    else:  # nbgrader's exchange (c.Exchange.root; BNLAB_EXCHANGE sets it)
        result = nbgrader("collect", args.assignment, "--update", root=course, check=False)
        print(result.stdout + result.stderr)
        if result.returncode != 0:
            return result.returncode
    print("next: make autograde")
    return 0


if __name__ == "__main__":
    sys.exit(main())
