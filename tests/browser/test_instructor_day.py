"""The instructor's day in a real browser: nbgrader's formgrader inside JupyterLab, on a scratch
course that holds one autograded submission (see the ``instructor_lab`` fixture).

The formgrader lists the assignment, generates the student version from its button, shows the
submission's score as the gradebook has it, takes a hand-graded score for the written answer, and
generates feedback (after manual grading) with that score and in which no hidden test shows.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from labdriver import Steps, appears, score_by_hand

from bnlab import exercise
from bnlab.instructor import notebooks
from bnlab.instructor.autograde import record

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


def hidden_lines(source_notebook) -> list[str]:
    """Every non-trivial line of the hidden tests of the course's source notebook."""
    lines = []
    for cell in nbformat.read(source_notebook, as_version=4).cells:
        for block in HIDDEN.findall(cell.source):
            lines += [line.strip() for line in block.splitlines() if len(line.strip()) > 12]
    return lines


def close_modal(frame, modal_id: str) -> str:
    modal = frame.locator(f"#{modal_id}")
    appears(modal, 300, f"the formgrader's {modal_id} dialog")
    message = modal.locator(".modal-body").inner_text()
    modal.locator(".modal-footer button").first.click()
    modal.wait_for(state="detached", timeout=30_000)
    return message


def test_formgrader_day(instructor_lab, page):
    base, course = instructor_lab
    steps = Steps(page, "instructor")
    assignment, student = exercise.ASSIGNMENT, "ada"
    released = course / "release" / notebooks.RELATIVE

    with steps("open the formgrader from JupyterLab's Nbgrader menu"):
        page.goto(f"{base}/lab")
        page.get_by_role("menuitem", name="Nbgrader").click()
        page.get_by_role("menuitem", name="Formgrader", exact=True).click()
        frame = page.frame_locator("#formgrader iframe")
        row = frame.locator("tr", has=frame.locator("td.name", has_text=assignment))
        appears(row, 60, f"the formgrader's row of {assignment}")
        assert row.locator("td.num-submissions").inner_text().strip() == "1", "the submission is not counted"

    with steps("generate the student version from the formgrader"):
        before = released.stat().st_mtime_ns
        row.locator("td.assign a").click()
        message = close_modal(frame, "success-modal")
        assert "Successfully created the student version" in message, message
        assert released.stat().st_mtime_ns != before, "the release notebook was not written again"

    with steps("the autograded submission shows its score"):
        scores = record.cell_scores(course, assignment)[student]
        total = sum(s for s, _ in scores.values())
        maximum = sum(m for _, m in scores.values())
        row.locator("td.num-submissions a").click()
        student_row = frame.locator("tr", has=frame.locator("td.student-id", has_text=student))
        appears(student_row, 60, f"the formgrader's row of student {student}")
        assert student_row.locator("td.student-name").inner_text().strip() == "Lovelace, Ada"
        shown = student_row.locator("td.score").inner_text().strip()
        assert shown == f"{round(total, 2):g} / {round(maximum, 2):g}", (
            f"the formgrader shows {shown!r}, the gradebook {total} / {maximum}"
        )
        tests = {
            notebooks.grade_id(c)
            for c in notebooks.read().cells
            if c.cell_type == "code"
            and c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")
        }
        autograded = {name: s for name, s in scores.items() if name in tests}
        assert autograded and all(s == m for s, m in autograded.values()), f"the solution lost points: {autograded}"

    with steps("grade the written answer by hand in the formgrader"):
        with record.gradebook(course) as gb:
            submitted = gb.find_submission_notebook(exercise.NOTEBOOK, assignment, student)
            manual = [g.name for g in submitted.grades if g.cell.cell_type == "markdown"]
            notebook_id = submitted.id
        assert manual, "the exercise has no written answer to grade by hand"
        grader = page.context.new_page()  # the formgrader's grading view of this submission, as its link opens it
        steps.page = grader
        grader.goto(f"{base}/formgrader/submissions/{notebook_id}/?index=0", referer=f"{base}/lab")
        field = grader.locator(f"input.score#{manual[0]}")
        appears(field, 60, f"the score field of {manual[0]}")
        given = lambda: record.cell_scores(course, assignment)[student][manual[0]][0] == 1.5  # noqa: E731
        score_by_hand(grader, field, "1.5", given)
        steps.page = page
        total += 1.5

    with steps("generate feedback from the formgrader"):
        frame.get_by_role("link", name="Manage Assignments").click()
        row.wait_for(timeout=60_000)
        row.locator("td.generate-feedback a").click()
        message = close_modal(frame, "success-modal")
        assert "Successfully generated feedback" in message, message

    with steps("the feedback shows the score and no hidden test"):
        relative = f"feedback/{student}/{assignment}/{exercise.NOTEBOOK}.html"
        assert (course / relative).is_file(), f"no {relative}"
        feedback = page.context.new_page()  # a new tab, opened from JupyterLab (the server wants the referer)
        steps.page = feedback
        feedback.goto(f"{base}/files/{relative}", referer=f"{base}/lab")
        text = feedback.locator("body").inner_text()
        assert f"{total:g}" in text and "Score" in text, "the feedback does not show the score, manual grade included"
        assert "1.5" in text, "the feedback does not show the hand-graded answer's score"
        hidden = hidden_lines(notebooks.SOURCE)
        assert hidden, "the source notebook has no hidden tests to keep out of the feedback"
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"the feedback shows {len(leaked)} hidden test line(s), e.g. {leaked[0]!r}"
        # (the feedback file itself loads MathJax from a CDN, as nbconvert's HTML does; JupyterLab must not)
        assert not page.external_requests, f"JupyterLab reached beyond the machine: {page.external_requests[:5]}"
