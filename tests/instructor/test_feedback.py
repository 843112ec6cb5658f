"""Feedback students receive: no hidden-test line or argument anywhere, and a failure's message first.

The unit tests run :class:`bnlab.instructor.preprocessors.feedback.HideHiddenTests` on hand-made cells. The slow
test grades failing submissions (the untouched release notebook; a notebook whose visible checks pass but whose
hidden checks fail) with the real nbgrader pipeline and reads the feedback HTML it produces.
"""

from __future__ import annotations

import html
import os
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from bnlab import exercise
from bnlab.instructor import notebooks, scratch
from bnlab.instructor.preprocessors import feedback

HIDDEN_CALL = 'grading.check_choice(ANSWER, "abcd", expected="d", question="single_images");'
VISIBLE_CALL = 'grading.check_choice(ANSWER, "abcd")'


def _test_cell(outputs):
    cell = new_code_cell(
        "\n".join(
            [
                "# Check (2 points)",
                VISIBLE_CALL,
                'print("recorded")',
                "### BEGIN HIDDEN TESTS",
                HIDDEN_CALL,
                "### END HIDDEN TESTS",
            ]
        ),
        metadata={
            "nbgrader": {
                "grade": True,
                "grade_id": "test_q",
                "points": 2,
                "locked": True,
                "solution": False,
                "schema_version": 3,
                "task": False,
            }
        },
        outputs=outputs,
    )
    return cell


def _ipython_traceback(message):
    """An error output shaped like IPython's: a frame that quotes the cell, hidden line included."""
    return new_output(
        "error",
        ename="CheckFailed",
        evalue=message,
        traceback=[
            "\x1b[0;31m-----------------------------------------------------------------\x1b[0m",
            'Cell \x1b[0;32mIn[12], line 5\x1b[0m\n      3 print("recorded")\n      4 ### BEGIN HIDDEN TESTS\n'
            f"----> 5 {HIDDEN_CALL}\n      6 ### END HIDDEN TESTS",
            f"\x1b[0;31mCheckFailed\x1b[0m: {message}",
        ],
    )


def _preprocess(cell):
    nb = new_notebook(cells=[cell])
    nb, _ = feedback.HideHiddenTests().preprocess(nb, {})
    return nb.cells[0]


def test_hidden_region_is_replaced_by_the_note():
    cell = _preprocess(_test_cell([]))
    assert "BEGIN HIDDEN TESTS" not in cell.source and HIDDEN_CALL not in cell.source
    assert VISIBLE_CALL in cell.source and cell.source.endswith(feedback.NOTE)


def test_failing_traceback_is_reduced_to_its_message():
    message = "'b' is not the expected answer. Think about the variance of a single value."
    stream = new_output("stream", name="stdout", text="recorded\n")
    cell = _preprocess(_test_cell([stream, _ipython_traceback(message)]))
    error = cell.outputs[1]
    assert error.traceback == [f"CheckFailed: {message}"]
    text = str(cell.outputs)
    assert "expected=" not in text and "HIDDEN TESTS" not in text and "In[12]" not in text


def test_printed_hidden_lines_are_redacted_and_visible_output_kept():
    stream = new_output("stream", name="stdout", text=f"recorded\nrunning {HIDDEN_CALL.rstrip(';')}\n")
    cell = _preprocess(_test_cell([stream]))
    assert cell.outputs[0].text.split("\n")[:2] == ["recorded", feedback.REDACTED]


def test_answer_cells_keep_their_tracebacks():
    """A student's own cell (no hidden tests, not a test cell) keeps its full traceback."""
    cell = new_code_cell(
        "1 / 0",
        metadata={
            "nbgrader": {
                "grade": False,
                "solution": True,
                "grade_id": "a",
                "locked": False,
                "schema_version": 3,
                "task": False,
            }
        },
        outputs=[
            new_output(
                "error",
                ename="ZeroDivisionError",
                evalue="division by zero",
                traceback=["frame 1", "frame 2", "ZeroDivisionError: division by zero"],
            )
        ],
    )
    assert len(_preprocess(cell).outputs[0].traceback) == 3


# --------------------------------------------------------------------------------------------
# the real pipeline


def _hidden_fragments(source_nb, release_nb) -> set[str]:
    """Every hidden test line of the source notebook, and each of its keyword arguments that the
    released notebook does not show anyway."""
    fragments = set()
    for cell in source_nb.cells:
        inside = False
        for line in cell.source.split("\n"):
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and line.strip():
                fragments.add(line.strip().rstrip(";"))
                fragments.update(re.findall(r"\b\w+=[^,)]+", line))
    visible = "\n".join(c.source for c in release_nb.cells)
    return {f for f in fragments if f not in visible}  # e.g. api="keras" is also in the visible checks


@pytest.fixture(scope="module")
def graded_failures(tmp_path_factory):
    course = scratch.create_course(tmp_path_factory.mktemp("feedback_course"))
    release = scratch.release_notebook(course)
    scratch.submit(course, "untouched", release)
    # visible checks pass, hidden ones fail: valid but wrong multiple-choice answers
    solution = notebooks.solution_answers()
    wrong = {
        **solution,
        "q_single_images_answer": 'ANSWER_SINGLE_IMAGES = "b"',
        "q_statistics_answer": 'ANSWER_STATISTICS = "a"',
    }
    scratch.submit(course, "wrong_choices", notebooks.fill_in(release, wrong))
    run = scratch.autograde(course, env={"BNLAB_SHORT_BATCHES": os.environ.get("BNLAB_SHORT_BATCHES", "3")})
    assert set(run.graded) == {"untouched", "wrong_choices"}, run.failed
    files, _ = scratch.feedback_and_export(course)
    return course, {f.parent.parent.name: f.read_text() for f in files}


@pytest.mark.slow
def test_feedback_of_failing_submissions_shows_no_hidden_test(graded_failures):
    course, pages = graded_failures
    assert set(pages) == {"untouched", "wrong_choices"}
    fragments = _hidden_fragments(notebooks.read(), scratch.release_notebook(course))
    assert any("expected=" in f for f in fragments)  # the fragments include the hidden answers
    for student, page in pages.items():
        text = html.unescape(re.sub(r"<[^>]+>", "", page))
        assert "HIDDEN TESTS" not in text, student
        leaked = sorted(f for f in fragments if f in text)
        assert leaked == [], (student, leaked)
        # a graded test cell shows its source and then the failure's message: no traceback frames
        for segment in text.split("Grade cell: ")[1:]:
            if segment.startswith("test_"):
                cell = re.split(r"\nIn[\s\xa0]\[", segment)[0]  # up to the next cell's prompt
                assert "Traceback (most recent call last)" not in cell and "Cell In[" not in cell, (student, cell)


@pytest.mark.slow
def test_failure_message_comes_first_in_each_failing_test_cell(graded_failures):
    course, pages = graded_failures
    for student in pages:
        nb = nbformat.read(course / "autograded" / student / scratch.EXERCISE / exercise.FILENAME, as_version=4)
        nb, _ = feedback.HideHiddenTests().preprocess(nb, {})
        failing = 0
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            if cell.cell_type != "code" or not meta.get("grade") or not errors:
                continue
            failing += 1
            error = errors[0]
            assert len(error.traceback) == 1 and error.traceback[0].startswith(f"{error.ename}: "), error.traceback
            # only the visible checks' own "OK" lines may come before the message
            before = "".join(o.get("text", "") for o in cell.outputs[: cell.outputs.index(error)])
            assert len(before.splitlines()) <= 3, (meta["grade_id"], before)
        assert failing > 0, student
    # a wrong choice gets a teaching message that does not name the right option
    page = html.unescape(pages["wrong_choices"])
    assert "'b' is not the expected answer" in page and "'a' is not the expected answer" in page
