"""The real nbgrader pipeline, end to end, on a scratch course directory.

One run of the grader (``bnlab.instructor.autograde.coordinator``, two submissions at a time, each through
``nbgrader autograde`` in its own scratch course, merged into one gradebook) grades: the solution (full marks), the
untouched release notebook (zero on every graded cell), known-buggy submissions (each loses exactly the points of
the tests that name its bugs), the accepted alternatives (full marks), and a submission that kills its
kernel (reported, kept, and the others are still graded). Then ``generate_feedback`` (hidden
tests not shown) and ``export`` (the CSV holds the expected scores).

The run is the grader's route of shared_grading.py: the other pipeline modules' submissions are graded in the
same run, and its controls (the solution, the untouched release notebook) are this module's.
"""

from __future__ import annotations

import pytest
import shared_grading

# one bug per kind of check and four alternatives (tests/test_grading.py runs every variant in-process)
from submissions import ALL_TESTS, KERAS_LAYER_TESTS
from submissions import PIPELINE_ALTERNATIVES as ALTERNATIVES
from submissions import PIPELINE_BUGS as BUGS

from bnlab.instructor import notebooks, scratch
from bnlab.instructor.autograde import record
from bnlab.instructor.preprocessors import feedback

pytestmark = pytest.mark.slow
# points of the autograded checks, read from the source notebook (manually graded cells excluded)
AUTO_MAX = sum(
    float(c.metadata["nbgrader"]["points"]) for c in notebooks.read().cells if notebooks.grade_id(c) in ALL_TESTS
)


# Variants that change different parts are independent: Part 1 (keras_layers, keras_training),
# Part 2 (nn_layers), and the rest (questions, diagnose task). So each submission carries one
# variant of each part (fewer notebooks to execute); the expected failures are the union.
def _part(variant) -> str:
    if set(variant.cells) <= {"keras_layers", "keras_training"}:
        return "keras"
    return "nn" if set(variant.cells) <= {"nn_layers"} else "other"


def _combine(variants, prefix):
    parts = {}
    for variant in variants:
        parts.setdefault(_part(variant), []).append(variant)
    combined = []
    for i in range(max((len(v) for v in parts.values()), default=0)):
        chosen = [group[i] for group in parts.values() if i < len(group)]
        cells, fails = {}, set()
        for variant in chosen:
            cells.update(variant.cells)
            fails |= variant.fails
        combined.append((f"{prefix}{i:02d}__" + "__".join(v.name for v in chosen), cells, frozenset(fails)))
    return combined


BUGGY = _combine(BUGS, "bug")
ALTERNATIVE = _combine(ALTERNATIVES, "alt")
CRASH = "import os\nos._exit(1)  # the kernel dies here\n"


SOLUTION, UNTOUCHED = shared_grading.HONEST, shared_grading.UNTOUCHED  # the shared run's controls


def _submit(course, _scratch):
    release = scratch.release_notebook(course)
    solution = notebooks.solution_answers()
    for name, cells, _ in BUGGY:
        scratch.submit(course, name, notebooks.fill_in(release, {**solution, **cells}))
    for name, cells, _ in ALTERNATIVE:
        scratch.submit(course, name, notebooks.fill_in(release, {**solution, **cells}))
    scratch.submit(course, "crashes_kernel", notebooks.fill_in(release, {**solution, "keras_layers": CRASH}))


# the length of the training runs does not matter to the checks; two submissions at a time
shared_grading.register("grader", __name__, [b[0] for b in BUGGY + ALTERNATIVE] + ["crashes_kernel"], _submit)
MINE = {SOLUTION, UNTOUCHED} | shared_grading.students("grader", __name__)


@pytest.fixture(scope="module")
def graded(grader_grading):
    return grader_grading.course, grader_grading.run


def _scores(course, student):
    return record.cell_scores(course, scratch.EXERCISE)[student]


def _failed(course, student):
    scores = _scores(course, student)
    assert ALL_TESTS <= set(scores)
    return {name for name, (score, maximum) in scores.items() if name in ALL_TESTS and score < maximum}


def test_solution_scores_full_marks(graded):
    course, run = graded
    scores = _scores(course, SOLUTION)
    assert sum(scores[name][0] for name in ALL_TESTS) == AUTO_MAX, scores


def test_untouched_release_scores_zero_everywhere(graded):
    course, _ = graded
    scores = _scores(course, UNTOUCHED)
    assert all(not score for score, _ in scores.values()), scores


@pytest.mark.parametrize("name,cells,fails", BUGGY, ids=[b[0] for b in BUGGY])
def test_buggy_submission_loses_the_named_tests(graded, name, cells, fails):
    course, _ = graded
    assert _failed(course, name) == set(fails)


@pytest.mark.parametrize("name", [a[0] for a in ALTERNATIVE])
def test_alternatives_score_full_marks(graded, name):
    course, _ = graded
    assert _failed(course, name) == set()


def test_crashing_submission_is_reported_kept_and_others_graded(graded):
    course, run = graded
    assert "crashes_kernel" in run.failed and "submitted/crashes_kernel" in run.failed["crashes_kernel"]
    assert (course / "submitted" / "crashes_kernel" / scratch.EXERCISE / f"{scratch.NOTEBOOK}.ipynb").exists()
    assert {SOLUTION, UNTOUCHED} <= set(run.graded)
    assert len(MINE & set(run.graded)) == 2 + len(BUGGY) + len(ALTERNATIVE)
    last = record.records(course, scratch.EXERCISE)["crashes_kernel"]  # the failure is in the gradebook
    assert last["status"] == "crashed" and "kernel died in keras_layers" in last["reason"]
    assert _failed(course, "crashes_kernel") == KERAS_LAYER_TESTS  # only what the crashed cell defines is lost


def test_feedback_hides_hidden_tests_and_export_has_scores(graded, grader_grading):
    course, _ = graded
    files, rows = grader_grading.feedback()
    solution_html = [f for f in files if f"/{SOLUTION}/" in str(f)]
    assert solution_html, files
    html = solution_html[0].read_text()
    assert "BEGIN HIDDEN TESTS" not in html and "seed=11" not in html
    assert "hidden tests ran here" in html
    assert "check_population_statistics" in html  # the visible tests stay
    by_student = {row["student_id"]: row for row in rows if row["assignment"] == scratch.EXERCISE}
    assert float(by_student[SOLUTION]["score"]) == AUTO_MAX
    assert float(by_student[UNTOUCHED]["score"]) == 0.0
    for name, _, fails in BUGGY:
        lost = sum(_scores(course, name)[t][1] for t in fails)
        assert float(by_student[name]["score"]) == AUTO_MAX - lost
    assert feedback.NOTE.startswith("#")
