"""The grading pipeline end to end, on a scratch course: for tests, demos and instructors.

``python -m bnlab.instructor.scratch demo`` (``make grade-demo``) creates a scratch course directory,
submits the solution as two students (each with their own questions, :mod:`bnlab.variants`), prints each
one's variants, grades them, runs ``generate_feedback`` and ``export``, then prints the scores, the feedback
files and the CSV. The functions below are what the tests use to grade
known-buggy submissions.

Grading takes the one route ``make autograde`` takes (:func:`bnlab.instructor.autograde.coordinator.grade_class`):
a submission that crashes (an exception in every cell, a killed kernel, a timeout) never stops the
others, keeps its submitted notebook untouched, and is recorded in the gradebook with the reason.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
from pathlib import Path

import nbformat

from bnlab.exercise import ASSIGNMENT as EXERCISE
from bnlab.exercise import NOTEBOOK
from bnlab.instructor.autograde.coordinator import ClassRun, grade_class, summary
from bnlab.instructor.autograde.record import gradebook
from bnlab.instructor.nbgrader import nbgrader
from bnlab.instructor.notebooks import ROOT, fill_in, solution_answers


def create_course(directory: Path, assignment: str = EXERCISE) -> Path:
    """A fresh course in ``directory``: source/, the config, the released assignment and its gradebook."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "source" / assignment, directory / "source" / assignment, dirs_exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", directory / "nbgrader_config.py")
    nbgrader("generate_assignment", assignment, "--force", root=directory)
    return directory


def submit(
    course: Path, student: str, nb: nbformat.NotebookNode, assignment: str = EXERCISE, notebook: str = NOTEBOOK
) -> Path:
    """Place a submission where nbgrader expects it (submitted/STUDENT/ASSIGNMENT/); return its path.

    Args:
        course: the course folder.
        student: the student's id.
        nb: the submitted notebook.
        assignment: the assignment it belongs to.
        notebook: its name in the assignment (without ``.ipynb``).
    """
    folder = Path(course) / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{notebook}.ipynb")
    (folder / "timestamp.txt").write_text("2026-11-22 12:00:00.000000 UTC")
    return folder / f"{notebook}.ipynb"


def release_notebook(course: Path, assignment: str = EXERCISE, notebook: str = NOTEBOOK) -> nbformat.NotebookNode:
    return nbformat.read(Path(course) / "release" / assignment / f"{notebook}.ipynb", as_version=4)


def autograde(course: Path, assignment: str = EXERCISE, env: dict | None = None, jobs: int = 1, **options) -> ClassRun:
    """Grade every submission of ``assignment`` in ``course`` again, as ``make autograde --regrade-all``.

    Args:
        course: the course folder (``submitted/``, ``gradebook.db``).
        assignment: the assignment to grade.
        env: environment variables for the graded kernels (e.g. ``BNLAB_SHORT_BATCHES``).
        jobs: submissions graded at a time.
        **options: passed on to :func:`bnlab.instructor.autograde.coordinator.grade_class` (``limits``,
            ``client``, ``students``, ``stream``: where the progress lines go, by default nowhere).

    Returns:
        The run: ``graded`` and ``failed`` (student -> why), the gradebook records in ``rows``, and
        the log lines worth a look per student in ``notes``.
    """
    options.setdefault("stream", io.StringIO())
    return grade_class(course, assignment, jobs=jobs, env=env, regrade_all=True, **options)


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


def score_report(
    course: Path, student: str, assignment: str = EXERCISE, notebook: str = NOTEBOOK
) -> tuple[list[str], dict]:
    """One line per graded cell (score, maximum, and what the instructor must know: graded by hand, why a
    cell lost points) and the totals ``{"auto": ..., "auto_max": ..., "manual_max": ...}``."""
    reasons = why_zero(course, student, assignment, notebook)
    lines, totals = [], {"auto": 0.0, "auto_max": 0.0, "manual_max": 0.0}
    with gradebook(course) as gb:
        for grade in gb.find_submission_notebook(notebook, assignment, student).grades:
            if grade.cell.cell_type == "markdown" or grade.auto_score is None:  # a written answer
                totals["manual_max"] += grade.max_score
                shown = "-" if grade.manual_score is None else f"{grade.manual_score:g}"
                note = "graded by hand" + (
                    ": in the formgrader, `make lab LAB_ROOT=.` then Nbgrader > Formgrader > "
                    "Manual Grading (docs/instructors.md, *Manual grading*)"
                    if grade.manual_score is None
                    else ""
                )
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


DEMO_STUDENTS = ("12345", "67890")  # two Canvas user ids: two students, each with their own questions


def describe_variants(student: str) -> list[str]:
    """What the questions look like for ``student`` (:mod:`bnlab.variants`): the order of each multiple-choice
    question's options, the layer of the statistics question, the classmate of Part 3."""
    from bnlab import questions

    lines = [
        f"    {question}: "
        + ", ".join(f"({letter}) {key}" for letter, key in questions.choices(question, student).items())
        for question in questions.OPTIONS
    ]
    case = questions.statistics_case(student)
    lines.append(f"    statistics: layer_depth={case['layer_depth']}, linear output {case['shape']}")
    position = questions.CLASSMATES.index(questions.classmate(student))
    lines.append(f"    diagnose_memory: classmate {position + 1} of {len(questions.CLASSMATES)}")
    return lines


def demo(directory: Path, students=DEMO_STUDENTS) -> int:
    """Grade the solution as two students, each with their own questions, and show every output of the pipeline."""
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    print(f"Scratch course in {directory}")
    course = create_course(directory)
    for student in students:
        submit(course, student, fill_in(release_notebook(course), solution_answers()))
        print(f"Student {student}'s questions (drawn from the id, bnlab.variants):")
        print("\n".join(describe_variants(student)))
    print(
        f"Autograding the solution as students {', '.join(students)} (shortened training under nbgrader) ...",
        flush=True,
    )
    run = autograde(course, jobs=min(2, len(students)))
    if run.failed:
        print(summary(run))
        return 1
    for student in students:
        lines, totals = score_report(course, student)
        print(f"Student {student}:")
        print("\n".join(lines))
        print(
            f"Autograded: {totals['auto']:g} / {totals['auto_max']:g}"
            + (f"; {totals['manual_max']:g} more points to grade by hand" if totals["manual_max"] else "")
        )
    print(f"autograde took {run.seconds:.1f} s")
    feedback, rows = feedback_and_export(course)
    print("Feedback:", ", ".join(str(f) for f in feedback))
    print("grades.csv:", course / "grades.csv")
    for row in rows:
        print("  ", {k: row[k] for k in ("assignment", "student_id", "score", "max_score")})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="nbgrader pipeline helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="grade the solution as two demo students in a scratch course")
    d.add_argument("--dir", default=str(ROOT / ".grade-demo"), help="scratch course directory (recreated)")
    args = parser.parse_args(argv)
    return demo(Path(args.dir))


if __name__ == "__main__":
    sys.exit(main())
