"""The gradebook: how the tooling opens it, and how the coordinator writes each worker's result into it.

:func:`gradebook` is the one way the tooling opens a ``gradebook.db`` (a course's, a worker's scratch
copy, the one nbgrader hands its preprocessors), and :func:`copy_database` the one way it copies one.
Only the coordinator merges results (workers never open the course gradebook). :func:`merge` does
what ``nbgrader autograde`` does to the gradebook, with nbgrader's own API: it creates or updates
the student and the submission (timestamp from ``timestamp.txt``, so late penalties agree), sets
each graded cell's ``auto_score`` (a manual score a grader gave is kept, and the cell then needs
review, as nbgrader does), the answer cells' automatic comments, and copies the autograded
notebook into ``autograded/``.

A submission that could not be graded is never left out: it gets its gradebook entry all the same,
with the points of the cells that ran where nbgrader produced them and zero otherwise, the
notebook *flagged* (visible in the formgrader), the reason as the automatic comment of every
answer cell, and a row in the table ``bnlab_autograde`` that this module keeps beside nbgrader's
tables in ``gradebook.db`` (student, status, reason, seconds, digest of what was graded).
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import sqlite3
import warnings
from pathlib import Path

TABLE = "bnlab_autograde"
COLUMNS = ("assignment", "student", "status", "reason", "seconds", "digest", "score", "max_score", "graded_at")
GRADEBOOK = "gradebook.db"


def database_url(where: Path | str) -> str:
    """The SQLAlchemy URL of a gradebook: ``where`` is a course folder (its ``gradebook.db``), a database
    file, or already a URL (what nbgrader hands its preprocessors)."""
    if isinstance(where, str) and "://" in where:
        return where
    path = Path(where)
    return f"sqlite:///{path / GRADEBOOK if path.is_dir() else path}"


@contextlib.contextmanager
def gradebook(where: Path | str):
    """nbgrader's Gradebook on a course's ``gradebook.db`` (``where`` as :func:`database_url` takes it),
    without SQLAlchemy's autoflush notes. Every part of the tooling opens a gradebook through here.

    nbgrader's ``update_or_create_submission`` triggers ``SAWarning: Object of type
    <SubmittedAssignment> not in session``: an ordering note of SQLAlchemy's autoflush inside
    nbgrader (the rows are written, as the tests check), silenced here so that a warning on screen
    means something."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SAWarning, message=".*not in session.*")
        with Gradebook(database_url(where)) as gb:
            yield gb


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite database ``source`` (even while nbgrader writes to it).

    It needs the standard library only: ``make clean`` backs the gradebook up with any Python."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def sql(gb, statement: str, values: dict | None = None):
    """Run one SQL ``statement`` (``:name`` placeholders filled from ``values``) in an open :func:`gradebook`."""
    from sqlalchemy import text

    return gb.db.execute(text(statement), values or {})


def _ensure_table(gb) -> None:
    sql(
        gb,
        f"CREATE TABLE IF NOT EXISTS {TABLE} (assignment TEXT, student TEXT, status TEXT, reason TEXT, "
        "seconds REAL, digest TEXT, score REAL, max_score REAL, graded_at TEXT, "
        "PRIMARY KEY (assignment, student))",
    )


def _records(gb, assignment: str) -> dict:
    _ensure_table(gb)
    rows = sql(
        gb, f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE assignment = :assignment", {"assignment": assignment}
    )
    return {row[1]: dict(zip(COLUMNS, row)) for row in rows}


def records(course: Path, assignment: str) -> dict:
    """``{student: {column: value}}`` of the last grading of each student."""
    if not (Path(course) / GRADEBOOK).exists():
        return {}
    with gradebook(course) as gb:
        found = _records(gb, assignment)
        gb.db.commit()
        return found


def _write_record(gb, row: dict) -> None:
    _ensure_table(gb)
    sql(
        gb, f"INSERT OR REPLACE INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)})", row
    )
    gb.db.commit()


def _timestamp(files: dict):
    from nbgrader.utils import parse_utc

    raw = files.get("timestamp.txt")
    if not raw:
        return None
    try:
        return parse_utc(raw.decode("utf-8").strip())
    except (ValueError, UnicodeDecodeError):
        return None


def merge(course: Path, result: dict, files: dict, digest: str) -> dict:
    """Write one worker ``result`` into the course; return its record (status, reason, score, ...)."""
    course = Path(course)
    assignment, student = result["assignment"], result["student"]
    failed = result["status"] != "graded"
    with gradebook(course) as gb:
        previous = _records(gb, assignment).get(student, {})
        gb.update_or_create_student(student)
        timestamp = _timestamp(files)
        submission = (
            gb.update_or_create_submission(assignment, student, timestamp=timestamp)
            if timestamp
            else gb.update_or_create_submission(assignment, student)
        )
        for nb in submission.notebooks:
            data = result["notebooks"].get(nb.name, {})
            for grade in nb.grades:
                given = data.get("grades", {}).get(grade.name)
                grade.auto_score = given["auto_score"] if given else 0.0
                grade.needs_manual_grade = bool(given and given["needs_manual_grade"]) or grade.manual_score is not None
            for comment in nb.comments:
                if failed:
                    comment.auto_comment = f"Autograding {result['status']}: {result['reason']}"
                else:
                    comment.auto_comment = data.get("comments", {}).get(comment.name)
            nb.late_submission_penalty = data.get("late_submission_penalty")
            if failed or data.get("flagged"):
                nb.flagged = True  # a failure, or what bnlab.instructor.preprocessors.review wants looked at
            elif previous.get("status") not in (None, "graded") or "flagged for review" in previous.get("reason", ""):
                nb.flagged = False  # flagged by an earlier run of ours
        gb.db.commit()
        submission = gb.find_submission(assignment, student)
        target = course / "autograded" / student / assignment
        if target.exists():
            shutil.rmtree(target)
        for name, data in result.get("autograded", {}).items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(data)
        row = {
            "assignment": assignment,
            "student": student,
            "status": result["status"],
            "reason": result["reason"],
            "seconds": round(result.get("seconds", 0.0), 2),
            "digest": digest,
            "score": submission.score,
            "max_score": submission.max_score,
            "graded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        _write_record(gb, row)
    return row


def cell_scores(course: Path, assignment: str) -> dict:
    """``{student: {grade_id: (score, max_score)}}`` of every submission of ``assignment``: each graded
    cell's score (a manual score wins over the automatic one; 0 while a written answer awaits grading)."""
    scores = {}
    with gradebook(course) as gb:
        for submission in gb.assignment_submissions(assignment):
            scores[submission.student.id] = {
                grade.name: (grade.score, grade.max_score) for nb in submission.notebooks for grade in nb.grades
            }
    return scores
