"""Tampering through the real nbgrader pipeline: a submission that rewrites the checks in its kernel
fools the kernel, but scores only what its real answers earn, and the instructor sees it flagged."""

from __future__ import annotations

import nbformat
import pytest
from submissions import ALL_TESTS, TAMPERING

from bnlab.instructor import notebooks, scratch
from bnlab.instructor.autograde import record

pytestmark = pytest.mark.slow

SUBMISSIONS = [
    v
    for v in TAMPERING
    if v.name in {"tamper_reassign_checks", "tamper_swallow_errors", "tamper_with_part_one_answered"}
]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = scratch.create_course(tmp_path_factory.mktemp("tamper_course"))
    release = scratch.release_notebook(course)
    solution = notebooks.solution_answers()
    scratch.submit(course, "honest", notebooks.fill_in(release, solution))
    for variant in SUBMISSIONS:
        scratch.submit(course, variant.name, notebooks.fill_in(release, {**solution, **variant.cells}))
    run = scratch.autograde(course, env={"BNLAB_SHORT_BATCHES": "2"})
    assert not run.failed, run.failed
    return course, run


def _tampering_noted(run, student) -> bool:
    """Whether the grading log's lines worth a look for ``student`` report tampering."""
    return any(note.startswith(f"TAMPERING: student {student}:") for note in run.notes.get(student, []))


def _autograded(course, student):
    path = course / "autograded" / student / scratch.EXERCISE / f"{scratch.NOTEBOOK}.ipynb"
    return nbformat.read(path, as_version=4)


def _lost(course, student):
    scores = record.cell_scores(course, scratch.EXERCISE)[student]
    assert ALL_TESTS <= set(scores)
    return {name for name in ALL_TESTS if scores[name][0] < scores[name][1]}


def test_honest_submission_is_confirmed_and_scores_full_marks(graded):
    course, run = graded
    assert _lost(course, "honest") == set()
    nb = _autograded(course, "honest")
    assert nb.metadata["bnlab"]["tampered"] is False
    assert not _tampering_noted(run, "honest")
    # the course config starts the re-run before the kernel, so the two overlap (StartVerification)
    assert nb.metadata["bnlab"]["started"] == "with the kernel"


@pytest.mark.parametrize("variant", SUBMISSIONS, ids=lambda v: v.name)
def test_tampering_scores_what_its_answers_earn_and_is_flagged(graded, variant):
    course, run = graded
    assert _lost(course, variant.name) == set(variant.fails)
    nb = _autograded(course, variant.name)
    # the kernel was fooled: it passed cells that the trusted re-run failed; those are flagged
    fooled = {
        c.metadata["nbgrader"]["grade_id"]
        for c in nb.cells
        if c.get("metadata", {}).get("bnlab", {}).get("verification") == "tampered"
    }
    assert fooled <= set(variant.fails)
    assert nb.metadata["bnlab"]["tampered"] is bool(fooled)
    assert nb.metadata["bnlab"]["started"] == "with the kernel"
    assert _tampering_noted(run, variant.name) is bool(fooled)
    if variant.name != "tamper_swallow_errors":  # nbgrader still sees the error a swallowed exception leaves
        assert fooled
