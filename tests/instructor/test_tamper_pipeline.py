"""Tampering and lying through the real nbgrader pipeline, on both routes: the course's grader (`make autograde`,
through the coordinator) and plain `nbgrader autograde` in the course folder.

A submission that rewrites the checks in its kernel fools the kernel, but scores only what its real answers earn,
and the instructor sees it flagged. A submission that lies to the trusted re-run (fake probes in its worker, a
`bnlab` package in its folder, layers whose graphs hold Python callbacks or file operations) scores only what its
real answers earn too: layers are judged by running the graphs they build, in a judge process (issue 26)."""

from __future__ import annotations

import nbformat
import pytest
import shared_grading
from submissions import ALL_TESTS, TAMPERING
from submissions.tampering import BACKWARD_LIES, FILES, LIE_AT_THE_CHECKS_DEPTHS, LIES

from bnlab.instructor import notebooks, scratch
from bnlab.instructor.autograde import record

pytestmark = pytest.mark.slow

KERNEL_TAMPERING = [
    v
    for v in TAMPERING
    if v.name in {"tamper_reassign_checks", "tamper_swallow_errors", "tamper_with_part_one_answered"}
]
# how each lie is flagged: "tampered" where the kernel was fooled and the re-run was not, "unjudgeable" where the
# judge refused the graph of cells the kernel passed, None where the kernel was not fooled either. A pair: the
# first status always shows, the second may too (the probe-shaped lie's callback is in the graph only where the
# re-run's drawn conv depth is one it recognises; elsewhere it does plain ReLU, which the re-run fails)
FLAGGED = {
    "lie_fake_probes_kernel_and_worker": "tampered",
    "lie_fake_probes_worker_only": None,
    "lie_probe_shaped_inputs_numpy_callback": ("unjudgeable", "tampered"),
    "lie_normalizes_only_the_old_probe_shapes": None,
    "lie_py_function_in_nested_tf_function": "unjudgeable",
    "lie_file_operations": "unjudgeable",
    "lie_bnlab_package_in_submission": "tampered",
    # passes the kernel's checks at their depths (11, 12, 3), fails the re-run's drawn ones
    LIE_AT_THE_CHECKS_DEPTHS.name: "tampered",
    # Part 4: the re-run runs the answer cell alone, without TensorFlow. The kernel runs the replaced probe (the lie
    # also silences the notebook's own run of the cell alone); TensorFlow's autodiff the notebook's check refuses too
    "lie_backward_probe_replaced_in_another_cell": "tampered",
    "lie_backward_by_tensorflow_autodiff": None,
}
PIPELINE_LIES = [*LIES, LIE_AT_THE_CHECKS_DEPTHS, *BACKWARD_LIES]
assert set(FLAGGED) == {v.name for v in PIPELINE_LIES}
ROUTES = {"grader": KERNEL_TAMPERING + PIPELINE_LIES, "nbgrader": PIPELINE_LIES}
LOG_MARK = {"tampered": "TAMPERING: student {}:", "unjudgeable": "UNJUDGEABLE: student {}:"}


def _submitter(route):
    def submit(course, _scratch):
        release = scratch.release_notebook(course)
        solution = notebooks.solution_answers()
        for variant in ROUTES[route]:
            path = scratch.submit(course, variant.name, notebooks.fill_in(release, {**solution, **variant.cells}))
            for name, text in FILES.get(variant.name, {}).items():
                (path.parent / name).parent.mkdir(parents=True, exist_ok=True)
                (path.parent / name).write_text(text)

    return submit


# graded in the shared run of each route (shared_grading.py), whose honest control is the solution
for _route in ROUTES:
    shared_grading.register(_route, __name__, [v.name for v in ROUTES[_route]], _submitter(_route))
HONEST = shared_grading.HONEST


@pytest.fixture(scope="module", params=sorted(ROUTES))
def graded(request):
    route = request.param
    grading = request.getfixturevalue(f"{route}_grading")
    if route == "grader":
        mine = shared_grading.students(route, __name__) | {HONEST}
        failed = {student: why for student, why in grading.failed.items() if student in mine}
        assert not failed, failed
    return route, grading.course, grading.notes


def _noted(notes, student, status) -> bool:
    """Whether the grading log reports ``status`` ("tampered", "unjudgeable") for ``student``."""
    return LOG_MARK[status].format(student) in notes.get(student, "")


def _autograded(course, student):
    path = course / "autograded" / student / scratch.EXERCISE / f"{scratch.NOTEBOOK}.ipynb"
    return nbformat.read(path, as_version=4)


def _lost(course, student):
    scores = record.cell_scores(course, scratch.EXERCISE)[student]
    assert ALL_TESTS <= set(scores)
    return {name for name in ALL_TESTS if scores[name][0] < scores[name][1]}


def _statuses(nb) -> dict:
    return {
        c.metadata["nbgrader"]["grade_id"]: c.metadata["bnlab"]["verification"]
        for c in nb.cells
        if c.get("metadata", {}).get("bnlab", {}).get("verification")
    }


def test_honest_submission_is_confirmed_and_scores_full_marks(graded):
    route, course, notes = graded
    assert _lost(course, HONEST) == set()
    nb = _autograded(course, HONEST)
    assert nb.metadata["bnlab"]["tampered"] is False and "unjudgeable" not in nb.metadata["bnlab"]
    assert set(_statuses(nb).values()) <= {"confirmed", "kernel only"}
    if route == "grader":
        assert not _noted(notes, HONEST, "tampered") and not _noted(notes, HONEST, "unjudgeable")
    # the course config starts the re-run before the kernel, so the two overlap (StartVerification)
    assert nb.metadata["bnlab"]["started"] == "with the kernel"


@pytest.mark.parametrize("variant", KERNEL_TAMPERING, ids=lambda v: v.name)
def test_tampering_scores_what_its_answers_earn_and_is_flagged(graded, variant):
    route, course, notes = graded
    if variant not in ROUTES[route]:
        pytest.skip(f"graded on the grader's route only ({route})")
    assert _lost(course, variant.name) == set(variant.fails)
    nb = _autograded(course, variant.name)
    # the kernel was fooled: it passed cells that the trusted re-run failed; those are flagged
    fooled = {name for name, status in _statuses(nb).items() if status == "tampered"}
    assert fooled <= set(variant.fails)
    assert nb.metadata["bnlab"]["tampered"] is bool(fooled)
    assert nb.metadata["bnlab"]["started"] == "with the kernel"
    assert _noted(notes, variant.name, "tampered") is bool(fooled)
    if variant.name != "tamper_swallow_errors":  # nbgrader still sees the error a swallowed exception leaves
        assert fooled


@pytest.mark.parametrize("variant", PIPELINE_LIES, ids=lambda v: v.name)
def test_a_lie_to_the_trusted_rerun_scores_what_its_answers_earn_and_is_flagged(graded, variant):
    route, course, notes = graded
    assert _lost(course, variant.name) == set(variant.fails), route
    nb = _autograded(course, variant.name)
    statuses = _statuses(nb)
    flagged = {name for name, status in statuses.items() if status in ("tampered", "unjudgeable")}
    assert flagged <= set(variant.fails)
    expected = FLAGGED[variant.name]
    if expected is None:
        assert not flagged and nb.metadata["bnlab"]["tampered"] is False
        return
    always, *maybe = expected if isinstance(expected, tuple) else (expected,)
    seen = {statuses[name] for name in flagged}
    assert always in seen and seen <= {always, *maybe}, statuses
    assert nb.metadata["bnlab"]["tampered"] is ("tampered" in seen)
    assert bool(nb.metadata["bnlab"].get("unjudgeable")) is ("unjudgeable" in seen)
    assert all(_noted(notes, variant.name, status) for status in seen)
    if "unjudgeable" in seen:
        reasons = " ".join(nb.metadata["bnlab"]["unjudgeable"].values())
        assert "Python callback" in reasons or "WriteFile" in reasons
