"""What grading works around is graded and flagged: a deleted check cell is put back (nbgrader's
add_missing_cells, placed after the nearest cell the submission still has), a renamed notebook is
recognised, and the formgrader, the report and the feedback say so."""

from __future__ import annotations

import io

import nbformat
import pytest
import quizcourse
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from quizcourse import meta

from bnlab.instructor.autograde import coordinator, job, record
from bnlab.instructor.nbgrader import nbgrader
from bnlab.instructor.preprocessors import review

pytestmark = pytest.mark.slow


def _quiz():
    return new_notebook(
        cells=[
            new_code_cell('### BEGIN SOLUTION\nANSWER = "b"\n### END SOLUTION', metadata=meta("answer", solution=True)),
            new_markdown_cell("### Check your answer", metadata=meta("checks_heading")),
            new_code_cell(
                'assert ANSWER == "b", "ANSWER should be b"', metadata=meta("test_answer", grade=True, points=2)
            ),
        ]
    )


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = quizcourse.create(tmp_path_factory.mktemp("review"), _quiz())
    answered = quizcourse.answered(course, {"answer": 'ANSWER = "b"'})
    deleted = nbformat.from_dict(answered)
    deleted.cells = [c for c in deleted.cells if c.metadata["nbgrader"]["grade_id"] != "test_answer"]
    quizcourse.submit(course, "deleter", deleted)
    folder = quizcourse.submit(course, "renamer", answered).parent
    (folder / "quiz.ipynb").rename(folder / "quiz-Copy1.ipynb")
    run = coordinator.grade_class(course, "quiz", jobs=1, stream=io.StringIO())
    return course, run


def test_a_deleted_check_cell_is_put_back_graded_and_flagged(course):
    course, run = course
    assert record.cell_scores(course, "quiz")["deleter"]["test_answer"] == (2.0, 2.0)
    graded = nbformat.read(course / "autograded" / "deleter" / "quiz" / "quiz.ipynb", as_version=4)
    names = [c.metadata.get("nbgrader", {}).get("grade_id") for c in graded.cells]
    assert names == ["answer", "checks_heading", "test_answer"]  # after the heading, where it was
    assert review.review_reasons(graded) == [
        "graded cells deleted in the submission were put back and graded: test_answer"
    ]
    last = record.records(course, "quiz")["deleter"]
    assert last["status"] == "graded" and "put back" in last["reason"]
    with record.gradebook(course) as gb:
        assert gb.find_submission_notebook("quiz", "quiz", "deleter").flagged
    assert "why: flagged for review" in coordinator.summary(run)


def test_the_feedback_shows_the_restored_cell_with_its_note(course):
    course, _ = course
    nbgrader("generate_feedback", "quiz", "--force", "--student", "deleter", root=course)
    html = (course / "feedback" / "deleter" / "quiz" / "quiz.html").read_text()
    assert review.RESTORED in html


def test_a_renamed_notebook_is_graded_under_its_released_name(course):
    course, _ = course
    assert record.cell_scores(course, "quiz")["renamer"]["test_answer"] == (2.0, 2.0)
    last = record.records(course, "quiz")["renamer"]
    assert last["status"] == "graded" and "handed in as quiz-Copy1.ipynb" in last["reason"]


def test_two_unknown_notebooks_are_reported_not_guessed(tmp_path):
    release, folder = tmp_path / "release", tmp_path / "submitted" / "s" / "quiz"
    release.mkdir()
    folder.mkdir(parents=True)
    (release / "quiz.ipynb").write_text("{}")
    (folder / "quiz-Copy1.ipynb").write_text("{}")
    (folder / "quiz (1).ipynb").write_text("{}")
    message = job.recognise_renamed(folder, release)
    assert message.startswith("could not tell") and "quiz.ipynb missing" in message
    assert sorted(p.name for p in folder.iterdir()) == ["quiz (1).ipynb", "quiz-Copy1.ipynb"]  # nothing renamed
    assert job.recognise_renamed(release, release) == ""
