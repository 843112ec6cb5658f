"""The nbgrader pipeline end to end, on a scratch course: for tests, demos and instructors.

``python -m bnlab.instructor.scratch demo`` (``make grade-demo``) creates a scratch course directory,
submits the solution as student ``demo``, and runs ``autograde``, ``generate_feedback`` and
``export``, then prints the scores, the feedback file and the CSV. The functions below are what
``tests/test_pipeline.py`` uses to grade known-buggy submissions.

A submission that crashes (an exception in every cell, a killed kernel, a timeout) never stops the
others: the submitted notebook stays untouched, and :func:`autograde` reports which students could
not be graded and why, instead of raising. With ``jobs`` it uses the parallel grader
(:mod:`bnlab.instructor.autograde.coordinator`), which also records each failure in the gradebook.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import nbformat

from bnlab.exercise import ASSIGNMENT as EXERCISE, NOTEBOOK

from bnlab.instructor.notebooks import fill_in, solution_answers
from bnlab.instructor.nbgrader import nbgrader
from bnlab.instructor.notebooks import ROOT


def create_course(directory: Path, assignment: str = EXERCISE) -> Path:
    """A fresh course in ``directory``: source/, the config, the released assignment and its gradebook."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "source" / assignment, directory / "source" / assignment, dirs_exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", directory / "nbgrader_config.py")
    nbgrader("generate_assignment", assignment, "--force", root=directory)
    return directory


def submit(course: Path, student: str, nb: nbformat.NotebookNode, assignment: str = EXERCISE,
           notebook: str = NOTEBOOK) -> Path:
    """Place a submission where nbgrader expects it (submitted/STUDENT/ASSIGNMENT/)."""
    folder = Path(course) / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{notebook}.ipynb")
    (folder / "timestamp.txt").write_text("2026-11-22 12:00:00.000000 UTC")
    return folder / f"{notebook}.ipynb"


def release_notebook(course: Path, assignment: str = EXERCISE, notebook: str = NOTEBOOK) -> nbformat.NotebookNode:
    return nbformat.read(Path(course) / "release" / assignment / f"{notebook}.ipynb", as_version=4)


@dataclasses.dataclass
class GradingRun:
    """What one ``nbgrader autograde`` run gave."""

    seconds: float
    graded: list          # students with an autograded notebook
    failed: dict          # student -> why nbgrader could not grade them
    log: str


def autograde(course: Path, assignment: str = EXERCISE, env: dict | None = None, jobs: int | None = None,
              **options) -> GradingRun:
    """Autograde every submission; a failing student never stops the others.

    ``env`` adds environment variables for the graded kernels (e.g. ``BNLAB_SHORT_BATCHES``). With
    ``jobs``, the parallel grader :func:`bnlab.instructor.autograde.coordinator.grade_class` grades ``jobs`` submissions at
    a time, each in its own scratch course (``options`` go to it: ``limits``, ``client``, ...);
    without, one serial ``nbgrader autograde --force`` run, as nbgrader alone would do it."""
    course = Path(course)
    if jobs is not None:
        import io

        from bnlab.instructor.autograde.coordinator import grade_class, summary

        stream = io.StringIO()
        run = grade_class(course, assignment, jobs=jobs, env=env, stream=stream, regrade_all=True, **options)
        return GradingRun(run.seconds, run.graded, run.failed, stream.getvalue() + summary(run))
    students = sorted(p.name for p in (course / "submitted").iterdir() if (p / assignment).is_dir())
    start = time.perf_counter()
    result = nbgrader("autograde", assignment, "--force", root=course, check=False, env=env)
    seconds = time.perf_counter() - start
    log = result.stdout + result.stderr
    graded, failed = [], {}
    for student in students:
        if (course / "autograded" / student / assignment).is_dir():
            graded.append(student)
        else:
            lines = [line for line in log.splitlines() if student in line or "Error" in line or "error" in line]
            failed[student] = ("nbgrader could not grade this submission (kernel died, timed out or the notebook is "
                               f"unreadable); it is kept unchanged in submitted/{student}/{assignment}/. "
                               + " | ".join(lines[-3:]))
    return GradingRun(seconds, graded, failed, log)


def cell_scores(course: Path, student: str, assignment: str = EXERCISE, notebook: str = NOTEBOOK) -> dict:
    """``{test grade_id: (score, max_score)}`` from the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook(notebook, assignment, student)
        return {g.name: (g.score, g.max_score) for g in nb.grades}


def why_zero(course: Path, student: str, assignment: str = EXERCISE, notebook: str = NOTEBOOK) -> dict:
    """``{test grade_id: first line of why it failed}`` from the autograded notebook: the grader's verdict
    where the trusted re-run overruled the kernel, else the cell's error."""
    path = Path(course) / "autograded" / student / assignment / f"{notebook}.ipynb"
    if not path.exists():
        return {}
    reasons = {}
    for cell in nbformat.read(path, as_version=4).cells:
        name = cell.metadata.get("nbgrader", {}).get("grade_id")
        verdict = cell.metadata.get("bnlab", {})
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if verdict.get("verification") == "tampered":
            reasons[name] = "not confirmed by the trusted re-run: " + verdict.get("message", "").split("\n")[0]
        elif errors:
            first = (str(errors[-1].get("evalue", "")).splitlines() or [""])[0]
            reasons[name] = f"{errors[-1].get('ename', 'Error')}: {first}"
        if verdict.get("verification") == "kernel only":
            reasons[name] = reasons.get(name, "") + " (judged by the kernel only: " + verdict.get("message", "") + ")"
    return reasons


def score_report(course: Path, student: str, assignment: str = EXERCISE,
                 notebook: str = NOTEBOOK) -> tuple[list[str], dict]:
    """One line per graded cell (score, maximum, and what the instructor must know: graded by hand, why a
    cell lost points) and the totals ``{"auto": ..., "auto_max": ..., "manual_max": ...}``."""
    from nbgrader.api import Gradebook

    reasons = why_zero(course, student, assignment, notebook)
    lines, totals = [], {"auto": 0.0, "auto_max": 0.0, "manual_max": 0.0}
    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}") as gb:
        for grade in gb.find_submission_notebook(notebook, assignment, student).grades:
            if grade.cell.cell_type == "markdown" or grade.auto_score is None:  # a written answer
                totals["manual_max"] += grade.max_score
                shown = "-" if grade.manual_score is None else f"{grade.manual_score:g}"
                note = "graded by hand" + (": in the formgrader, `make lab LAB_ROOT=.` then Nbgrader > Formgrader > "
                                           "Manual Grading (README, *Manual grading*)" if grade.manual_score is None else "")
            else:
                totals["auto"] += grade.score
                totals["auto_max"] += grade.max_score
                shown = f"{grade.score:g}"
                note = reasons.get(grade.name, "lost points") if grade.score < grade.max_score else ""
            lines.append(f"  {grade.name:<32} {shown:>3} / {grade.max_score:g}" + (f"  ({note})" if note else ""))
    return lines, totals


def feedback_and_export(course: Path, assignment: str = EXERCISE) -> tuple[list[Path], list[dict]]:
    """Run ``generate_feedback`` and ``export``; return the feedback files and the CSV rows."""
    course = Path(course)
    nbgrader("generate_feedback", assignment, "--force", root=course)
    nbgrader("export", root=course)
    feedback = sorted((course / "feedback").rglob("*.html"))
    with open(course / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return feedback, rows


def demo(directory: Path) -> int:
    """Grade the solution as student ``demo`` and show every output of the pipeline."""
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    print(f"Scratch course in {directory}")
    course = create_course(directory)
    submit(course, "demo", fill_in(release_notebook(course), solution_answers()))
    print("Autograding the solution as student 'demo' (shortened training under nbgrader) ...", flush=True)
    run = autograde(course, jobs=1)
    if run.failed:
        print(run.log)
        print("FAILED:", run.failed)
        return 1
    lines, totals = score_report(course, "demo")
    print("\n".join(lines))
    print(f"Autograded: {totals['auto']:g} / {totals['auto_max']:g}"
          + (f"; {totals['manual_max']:g} more points to grade by hand" if totals["manual_max"] else "")
          + f"; autograde took {run.seconds:.1f} s")
    feedback, rows = feedback_and_export(course)
    print("Feedback:", ", ".join(str(f) for f in feedback))
    print("grades.csv:", course / "grades.csv")
    for row in rows:
        print("  ", {k: row[k] for k in ("assignment", "student_id", "score", "max_score")})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="nbgrader pipeline helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="grade the solution as a demo student in a scratch course")
    d.add_argument("--dir", default=str(ROOT / ".grade-demo"), help="scratch course directory (recreated)")
    args = parser.parse_args(argv)
    return demo(Path(args.dir))


if __name__ == "__main__":
    sys.exit(main())
