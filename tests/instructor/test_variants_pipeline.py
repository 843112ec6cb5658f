"""Answers that differ per student, through the real nbgrader pipeline on both routes (the course's grader and
plain ``nbgrader autograde``): the solution scores full marks under any id; answers worked out for one student
lose their points under another's id and are flagged; a kernel told another id is contradicted by the re-run."""

from __future__ import annotations

import nbformat
import pytest
import shared_grading

from bnlab import questions
from bnlab.instructor import notebooks, scratch
from bnlab.instructor.autograde.record import gradebook

pytestmark = pytest.mark.slow

OWNER = "variants_ann"  # the student the copied answers were worked out for (not graded itself)
SOLVED = "variants_solution"  # the solution, under an id of its own (beside the shared run's honest control)
COPIED = "variants_from_ann"  # OWNER's answers, STUDENT_ID = OWNER, handed in under this id
ENV_CHANGED = "variants_as_ann"  # OWNER's answers, the kernel's BNLAB_STUDENT set to OWNER by the submission
STUDENTS = (SOLVED, COPIED, ENV_CHANGED)
QUESTIONS = {  # answer cell -> its test cell
    "q_plain_network_answer": "test_q_plain_network",
    "q_single_images_answer": "test_q_single_images",
    "q_statistics_answer": "test_q_statistics",
    "q_diagnose_memory_answer": "test_q_diagnose_memory",
    "q_upstream_shift_answer": "test_q_upstream_shift",
}
RIGHT = {"plain_network": "shrinks", "single_images": "same", "upstream_shift": "dbeta_only"}


def literal_answers(student: str) -> dict:
    """The right answers of ``student`` written as literals: what a classmate could copy from their notebook."""
    letters = {q: {key: letter for letter, key in questions.choices(q, student).items()} for q in RIGHT}
    batch, height, width, _ = questions.statistics_case(student)["shape"]
    rows = questions.classmate(student)["trace"]
    shares = sorted((r["after"] - r["before"]) / (r["batch"] - r["before"]) for r in rows)
    return {
        "q_plain_network_answer": f'ANSWER_PLAIN_NETWORK = "{letters["plain_network"][RIGHT["plain_network"]]}"',
        "q_single_images_answer": f'ANSWER_SINGLE_IMAGES = "{letters["single_images"][RIGHT["single_images"]]}"',
        "q_upstream_shift_answer": f'ANSWER_UPSTREAM_SHIFT = "{letters["upstream_shift"][RIGHT["upstream_shift"]]}"',
        "q_statistics_answer": f"ANSWER_STATISTICS = {batch * height * width}",
        "q_diagnose_memory_answer": f"ANSWER_DIAGNOSE_MEMORY = {round(shares[len(shares) // 2], 2)}",
    }


def differing(student: str) -> set[str]:
    """The test cells whose answer for OWNER is not ``student``'s."""
    mine, theirs = literal_answers(student), literal_answers(OWNER)
    return {QUESTIONS[cell] for cell in QUESTIONS if mine[cell] != theirs[cell]}


def _with_id(nb, student_id: str):
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("STUDENT_ID"):
            cell.source = f'STUDENT_ID = "{student_id}"'
    return nb


def _submit(course, _scratch):
    release = scratch.release_notebook(course)
    solution = notebooks.solution_answers()
    copied = {**solution, **literal_answers(OWNER)}
    scratch.submit(course, SOLVED, notebooks.fill_in(release, solution))
    scratch.submit(course, COPIED, _with_id(notebooks.fill_in(release, copied), OWNER))
    told = "import os\nos.environ['BNLAB_STUDENT'] = " + repr(OWNER) + "\n"
    first = {"q_plain_network_answer": told + copied["q_plain_network_answer"]}
    scratch.submit(course, ENV_CHANGED, notebooks.fill_in(release, {**copied, **first}))


for _route in shared_grading.ROUTES:
    shared_grading.register(_route, __name__, STUDENTS, _submit)


@pytest.fixture(scope="module", params=shared_grading.ROUTES)
def graded(request):
    grading = request.getfixturevalue(f"{request.param}_grading")
    failed = {s: why for s, why in grading.failed.items() if s in STUDENTS}
    assert not failed, failed
    return grading


def _autograded(course, student):
    path = course / "autograded" / student / scratch.EXERCISE / f"{scratch.NOTEBOOK}.ipynb"
    return nbformat.read(path, as_version=4)


def _lost(scores: dict) -> set[str]:
    return {name for name, (score, top) in scores.items() if score < top and not name.startswith("diagnose_explain")}


def test_the_ids_draw_different_questions():
    assert len(differing(COPIED)) >= 3 and len(differing(ENV_CHANGED)) >= 3
    assert len({questions.statistics_case(s)["shape"] for s in (shared_grading.HONEST, SOLVED, OWNER)}) > 1


def test_the_solution_scores_full_marks_under_two_ids(graded):
    for student in (shared_grading.HONEST, SOLVED):
        why = graded.failed.get(student) or graded.notes.get(student, "")[-2000:]
        assert _lost(graded.scores[student]) == set(), (graded.route, student, why)


def test_answers_worked_out_for_another_id_lose_their_points_and_are_flagged(graded):
    assert _lost(graded.scores[COPIED]) == differing(COPIED)
    nb = _autograded(graded.course, COPIED)
    assert nb.metadata["bnlab"]["answered_for"] == [OWNER]
    marked = {
        c.metadata["nbgrader"]["grade_id"]
        for c in nb.cells
        if c.metadata.get("bnlab", {}).get("verification") == "tampered"
    }
    assert marked == differing(COPIED)
    with gradebook(graded.course) as gb:
        assert gb.find_submission_notebook(scratch.NOTEBOOK, scratch.EXERCISE, COPIED).flagged


def test_a_kernel_told_another_id_is_contradicted_by_the_trusted_re_run(graded):
    """The kernel grades OWNER's answers under OWNER's id (the submission changed BNLAB_STUDENT) and passes them;
    the re-run grades them under the id nbgrader grades, and fails those that differ: tampered, zero, flagged."""
    assert _lost(graded.scores[ENV_CHANGED]) == differing(ENV_CHANGED)
    nb = _autograded(graded.course, ENV_CHANGED)
    assert set(nb.metadata["bnlab"]["disagreements"]) == differing(ENV_CHANGED)
    assert nb.metadata["bnlab"]["tampered"]
    with gradebook(graded.course) as gb:
        assert gb.find_submission_notebook(scratch.NOTEBOOK, scratch.EXERCISE, ENV_CHANGED).flagged
