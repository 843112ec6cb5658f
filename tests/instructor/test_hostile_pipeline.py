"""A submission is data (issue 27, items 1, 3, 5, 6) through the real pipeline, on both routes: plain
``nbgrader autograde`` in the course folder (the formgrader's button) and the course's grader (``make
autograde``). The honest solution is the control for full marks; a symlinked notebook must earn what no
notebook earns (nothing). Nothing a link points to (the master, the gradebook, a file outside the course, the
grading process's environment) may reach ``autograded/`` or ``feedback/``; a FIFO must not hang grading; an
instructor's ``TF_TOKEN_*``/``TF_VAR_*`` reaches no kernel; a bad ``timestamp.txt`` is graded and flagged; a
512 MiB flood with lines shaped like the grader's keeps the coordinator's memory bounded and forges no note."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import nbformat
import pytest
import shared_grading
from submissions import ALL_TESTS

from bnlab.instructor import admission, isolation, notebooks, scratch
from bnlab.instructor.autograde import record

RUNS = isolation.available()[0] or os.environ.get("CI") == "true"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not RUNS, reason=f"no sandbox on this machine: {isolation.available()[1]}"),
]

MARK = f"bnlab-hostile-{uuid.uuid4().hex[:12]}"
A, NB = scratch.EXERCISE, f"{scratch.NOTEBOOK}.ipynb"
SECRETS = {"TF_TOKEN_app_terraform_io": f"token-{MARK}", "TF_VAR_db_password": f"password-{MARK}"}
FIRST = list(notebooks.solution_answers())[0]  # the answer cell the extra code goes into
SHOW_ENV = (
    "\nimport os as _os\n"
    "print('ENV', [_os.environ.get(k) for k in ('TF_TOKEN_app_terraform_io', 'TF_VAR_db_password')])\n"
)
FLOOD = (
    "\nimport os as _os\n"
    "_line = b'[AutogradeApp | WARNING] TAMPERING: student honest: FORGED\\nSANDBOX: FORGED left 9 process(es)\\n'\n"
    "_block = _line * (2**20 // len(_line))\n"
    "for _ in range(512):\n"
    "    _view = memoryview(_block)\n"
    "    while _view:\n"
    "        _view = _view[_os.write(1, _view):]\n"
)


def _links(folder: Path, outside: Path) -> None:
    """Extra files that are links to what a student must never get, and a FIFO."""
    (folder / "master.ipynb").symlink_to(f"../../../source/{A}/{NB}")
    (folder / "gradebook.db").symlink_to("../../../gradebook.db")
    (folder / "outside.txt").symlink_to(outside)
    (folder / "environ").symlink_to("/proc/self/environ")
    (folder / "source").symlink_to("../../../source", target_is_directory=True)
    os.mkfifo(folder / "pipe")


def _submitter(flood: bool):
    def submit(course: Path, tmp: Path) -> None:
        outside = tmp / "outside-secret.txt"
        outside.write_text(f"outside the course {MARK}")
        release = scratch.release_notebook(course)
        solution = notebooks.solution_answers()
        linked = course / "submitted" / "linked" / A  # the notebook is the master itself, and links beside it
        linked.mkdir(parents=True)
        (linked / NB).symlink_to(f"../../../source/{A}/{NB}")
        _links(linked, outside)
        answers = {**solution, FIRST: solution[FIRST] + SHOW_ENV}
        mixed = scratch.submit(course, "mixed", notebooks.fill_in(release, answers))
        _links(mixed.parent, outside)
        (mixed.parent / "timestamp.txt").write_text("late? never")
        if flood:
            scratch.submit(course, "flood", notebooks.fill_in(release, {**solution, FIRST: solution[FIRST] + FLOOD}))

    return submit


# Graded in the shared run of each route (shared_grading.py), with the instructor's secrets in the environment and
# the sandbox required; its honest control is the solution. The grader's route samples the coordinator's memory
# for the whole run; the nbgrader route runs generate_feedback for its students after autograde.
if RUNS:
    for _route in shared_grading.ROUTES:
        flood = _route == "grader"
        students = ["linked", "mixed"] + ["flood"] * flood
        env = {"BNLAB_ISOLATION": "require", **SECRETS}
        shared_grading.register(_route, __name__, students, _submitter(flood), env, feedback=_route == "nbgrader")
HONEST = shared_grading.HONEST


@pytest.fixture(scope="module", params=["nbgrader", "grader"])
def graded(request):
    grading = request.getfixturevalue(f"{request.param}_grading")
    return request.param, grading.course, grading.log, grading.grown


def _scores(course, student):
    return record.cell_scores(course, A).get(student, {})


def _flagged(course, student) -> bool:
    with record.gradebook(course) as gb:
        return gb.find_submission_notebook(scratch.NOTEBOOK, A, student).flagged


def test_the_honest_solution_keeps_full_marks(graded):
    route, course, log, _ = graded
    scores = _scores(course, HONEST)
    assert ALL_TESTS <= set(scores), log[-3000:]
    assert all(scores[name][0] == scores[name][1] for name in ALL_TESTS), f"{route}: {scores}"


def test_a_symlinked_notebook_earns_nothing_and_is_flagged(graded):
    route, course, log, _ = graded
    scores = _scores(course, "linked")
    assert all(scores.get(name, (0,))[0] in (0, None) for name in ALL_TESTS), f"{route}: {scores}"
    assert _flagged(course, "linked"), f"{route}: not flagged"
    if route == "grader":
        reason = record.records(course, A)["linked"]["reason"]
        assert reason.startswith("no notebook was handed in as a regular file") and f"{NB}, master.ipynb" in reason


def test_links_beside_real_answers_are_not_read_and_the_answers_are_graded(graded):
    route, course, log, _ = graded
    scores = _scores(course, "mixed")
    assert scores == _scores(course, HONEST), f"{route}: the same answers as the control, other scores"
    assert _flagged(course, "mixed"), f"{route}: not flagged"
    if route == "grader":
        reason = record.records(course, A)["mixed"]["reason"]
        assert "master.ipynb: a symbolic link" in reason and "pipe: a named pipe" in reason, reason
        assert "timestamp.txt holds no time" in reason, reason
    else:
        why = next((course / "submitted" / admission.REFUSED).glob(f"*/mixed/{A}/REFUSED.txt")).read_text()
        assert "pipe: a named pipe" in why and "timestamp.txt holds no time" in why, why
        assert "REFUSED (flagged for review): student mixed" in log


def test_nothing_a_link_points_to_reaches_autograded_or_feedback(graded):
    route, course, _, _ = graded
    master = (course / "source" / A / NB).read_bytes()
    for top in ("autograded", "feedback"):
        for path in (course / top).rglob("*"):
            assert not path.is_symlink(), f"{route}: a link in {top}/: {path}"
            if path.is_file():
                data = path.read_bytes()
                assert data != master and MARK.encode() not in data, f"{route}: {path} holds what a link pointed to"
                assert path.name not in ("master.ipynb", "gradebook.db", "outside.txt", "environ", "pipe"), path


def test_instructor_variables_reach_no_kernel(graded):
    route, course, _, _ = graded
    nb = nbformat.read(course / "autograded" / "mixed" / A / NB, as_version=4)
    shown = [o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if "ENV" in str(o.get("text", ""))]
    assert shown and all("[None, None]" in text for text in shown), f"{route}: {shown}"


def test_a_flood_with_forged_lines_keeps_the_coordinator_bounded_and_forges_no_note(graded):
    route, course, log, grown = graded
    if route != "grader":
        pytest.skip("the flood targets the coordinator (make autograde)")
    assert grown < 256 * 2**20, f"the coordinator grew by {grown / 2**20:.0f} MiB during a 512 MiB flood"
    assert "FORGED" not in log, log[-3000:]
    assert _scores(course, "flood") == _scores(course, HONEST)  # graded like the control, not stopped
