"""An instructor's test cell written the nbgrader way (a plain ``assert``) grades correctly under the
trusted re-run, and ``make grade-demo``'s report labels written answers and says why a cell lost points."""

from __future__ import annotations

import nbformat
import pytest
import quizcourse
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from quizcourse import meta

from bnlab.instructor import scratch
from bnlab.instructor.autograde import record
from bnlab.instructor.nbgrader import nbgrader

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = quizcourse.create(
        tmp_path_factory.mktemp("plain"),
        new_notebook(
            cells=[
                new_code_cell(
                    '### BEGIN SOLUTION\nANSWER = "b"\n### END SOLUTION', metadata=meta("answer", solution=True)
                ),
                new_code_cell(
                    'assert ANSWER == "b", "ANSWER should be b"', metadata=meta("test_answer", grade=True, points=1)
                ),
                new_markdown_cell("Explain why.", metadata=meta("explain", grade=True, solution=True, points=2)),
            ]
        ),
    )
    for student, answer in (("right", '"b"'), ("wrong", '"c"')):
        quizcourse.submit(course, student, quizcourse.answered(course, {"answer": f"ANSWER = {answer}"}))
    result = nbgrader("autograde", "quiz", "--force", root=course, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return course


def test_a_plain_assert_gives_the_right_answer_its_point_and_is_not_called_tampering(course):
    assert record.cell_scores(course, "quiz")["right"]["test_answer"] == (1.0, 1.0)
    assert record.cell_scores(course, "quiz")["wrong"]["test_answer"] == (0.0, 1.0)
    graded = nbformat.read(course / "autograded" / "right" / "quiz" / "quiz.ipynb", as_version=4)
    assert graded.metadata["bnlab"]["tampered"] is False
    assert graded.cells[1].metadata["bnlab"]["verification"] == "confirmed"


def test_the_report_labels_written_answers_and_says_why_a_cell_lost_points(course):
    lines, totals = scratch.score_report(course, "wrong", "quiz", "quiz")
    assert totals == {"auto": 0.0, "auto_max": 1.0, "manual_max": 2.0}
    test_line = next(line for line in lines if "test_answer" in line)
    assert "0 / 1" in test_line and "ANSWER should be b" in test_line
    explain = next(line for line in lines if "explain" in line)
    assert "graded by hand" in explain and "formgrader" in explain
