"""A cell that ends the kernel costs only that cell: the cells before and after it keep their points,
in the graded kernel and in the trusted re-run alike, and the feedback says what happened."""

from __future__ import annotations

import nbformat
import pytest
import quizcourse
from nbformat.v4 import new_code_cell, new_notebook
from quizcourse import meta

from bnlab.grading.errors import KERNEL_DIED
from bnlab.instructor.autograde import record
from bnlab.instructor.nbgrader import nbgrader
from bnlab.instructor.preprocessors import verify

pytestmark = pytest.mark.slow
CRASH = "import os\nos._exit(3)"
ANSWERS = {"answer_a": 'A = "a"', "answer_b": "B = 2", "answer_c": "C = [1, 2, 3]"}
TESTS = {"test_a": 'assert A == "a"', "test_b": "assert B == 2", "test_c": "assert sum(C) == 6"}


def _quiz():
    cells = []
    for (answer, source), (test, check) in zip(ANSWERS.items(), TESTS.items()):
        cells.append(
            new_code_cell(f"### BEGIN SOLUTION\n{source}\n### END SOLUTION", metadata=meta(answer, solution=True))
        )
        cells.append(new_code_cell(check, metadata=meta(test, grade=True, points=1)))
    return new_notebook(cells=cells)


def test_the_trusted_rerun_skips_a_cell_that_ends_its_worker():
    cells = [
        ("answer_a", ANSWERS["answer_a"]),
        ("test_a", TESTS["test_a"]),
        ("answer_b", CRASH),
        ("test_b", TESTS["test_b"]),
        ("answer_c", ANSWERS["answer_c"]),
        ("test_c", TESTS["test_c"]),
    ]
    verdicts = verify.verify_cells(cells, TESTS, timeout=120)
    assert verdicts["test_a"] is None and verdicts["test_c"] is None
    assert verdicts["test_b"] and "not defined" in verdicts["test_b"]
    stopped = verify.verify_cells(cells, TESTS, timeout=120, max_deaths=0)  # stopping at the first death, for contrast
    assert stopped["test_c"] and "could not be checked" in stopped["test_c"]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = quizcourse.create(tmp_path_factory.mktemp("crash"), _quiz())
    quizcourse.submit(course, "crasher", quizcourse.answered(course, {**ANSWERS, "answer_b": CRASH}))
    result = nbgrader("autograde", "quiz", "--force", root=course, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return course, result.stdout + result.stderr


def test_a_crash_in_one_cell_keeps_the_points_of_the_others(course):
    course, log = course
    scores = record.cell_scores(course, "quiz")["crasher"]
    assert scores == {"test_a": (1.0, 1.0), "test_b": (0.0, 1.0), "test_c": (1.0, 1.0)}
    graded = nbformat.read(course / "autograded" / "crasher" / "quiz" / "quiz.ipynb", as_version=4)
    crashed = next(c for c in graded.cells if c.metadata["nbgrader"]["grade_id"] == "answer_b")
    assert any(o.get("ename") == KERNEL_DIED[0] for o in crashed.outputs)
    assert graded.metadata["bnlab"]["tampered"] is False
    assert "the kernel died in cell" in log


def test_the_feedback_says_what_happened(course):
    course, _ = course
    nbgrader("generate_feedback", "quiz", "--force", root=course)
    html = next((course / "feedback" / "crasher" / "quiz").glob("*.html")).read_text()
    assert "Python process ended while this cell ran" in html
