"""Submissions that attack the machine, not the checks, graded through the real pipeline on both
routes: plain ``nbgrader autograde`` in the course folder (what the formgrader's button runs) and the
course's grader (``make autograde``, ``make grade-demo``). Each earns only what its real answers
earn, leaves no file outside its folder and no process behind, and the honest answer keeps full marks."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import shared_grading
from submissions import ALL_TESTS

from bnlab.instructor import isolation, notebooks, scratch
from bnlab.instructor.autograde import record
from bnlab.instructor.nbgrader import nbgrader, nbgrader_command, nbgrader_env

RUNS = isolation.available()[0] or os.environ.get("CI") == "true"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not RUNS, reason=f"no sandbox on this machine: {isolation.available()[1]}"),
]

MARK = f"bnlab-attack-{uuid.uuid4().hex[:12]}"  # in every file and process name an attack leaves
CODE_ANSWERS = list(notebooks.solution_answers())  # every answer cell of source/

# Each answer cell finds the instructor's master notebook in the folders above it (or anywhere it can
# look) and runs that cell's solution, or else copies another student's answer.
STEAL = textwrap.dedent("""
    import glob as _glob, json as _json, os as _os
    def _master_solution(grade_id):
        roots, folder = [], _os.getcwd()
        while folder != "/":
            roots.append(folder)
            folder = _os.path.dirname(folder)
        roots += ["/", _os.environ.get("BNLAB_COURSE_ROOT", "/"), _os.path.expanduser("~"), "/root", "/home", "/work",
                  "/tmp"]
        for root in roots:
            for path in (_glob.glob(_os.path.join(root, "source", "*", "*.ipynb"))
                         + _glob.glob(_os.path.join(root, "*", "source", "*", "*.ipynb"))):
                try:
                    cells = _json.load(open(path))["cells"]
                except Exception:
                    continue
                for cell in cells:
                    if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
                        return "".join(cell["source"])
        for root in roots:  # no master notebook: another student's answer will do
            for path in _glob.glob(_os.path.join(root, "submitted", "*", "*", "*.ipynb")):
                try:
                    cells = _json.load(open(path))["cells"]
                except Exception:
                    continue
                for cell in cells:
                    text = "".join(cell["source"])
                    if (cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id
                            and "NotImplementedError" not in text and "_master_solution" not in text):
                        return text
        return ""
    exec(_master_solution("GRADE_ID"))
""")

# Runs on after grading if it can: sets every score it finds in any gradebook to the maximum.
REWRITER = textwrap.dedent("""
    import glob, os, sqlite3, sys, time
    start = sys.argv[1]
    end = time.time() + 120
    while time.time() < end:
        folders, folder = [], start
        while folder != "/":
            folders.append(folder)
            folder = os.path.dirname(folder)
        for folder in folders + [os.path.expanduser("~")]:
            found = glob.glob(os.path.join(folder, "gradebook.db"))
            for db in found + glob.glob(os.path.join(folder, "*", "gradebook.db")):
                for statement in ("UPDATE grade SET auto_score = 100", "UPDATE grade SET manual_score = 100"):
                    try:
                        with sqlite3.connect(db, timeout=1) as connection:
                            connection.execute(statement)
                    except Exception:
                        pass
        time.sleep(0.2)
""")

# No answer: writes into the course library, every folder above it and the home folder, and starts
# the gradebook rewriter in a new session and through a double fork.
VANDAL = textwrap.dedent(f"""
    import os, subprocess, sys
    import bnlab
    def _write(path):
        try:
            with open(path, "w") as handle:
                handle.write("x = 1\\n")
        except Exception:
            pass
    _write(os.path.join(os.path.dirname(bnlab.__file__), "pwned_{MARK}.py"))
    folder = os.getcwd()
    while folder != "/":
        _write(os.path.join(folder, "pwned_{MARK}.txt"))
        folder = os.path.dirname(folder)
    _write(os.path.expanduser("~/pwned_{MARK}.txt"))
    REWRITER = {REWRITER!r}
    subprocess.Popen([sys.executable, "-c", REWRITER, os.getcwd(), "{MARK}"], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", REWRITER, os.getcwd(), "{MARK}"])
        os._exit(0)
""")

# The solution, plus a process in a new session that would outlive grading.
LINGER = textwrap.dedent(f"""
    import subprocess as _subprocess, sys as _sys
    _subprocess.Popen([_sys.executable, "-c", "import time; time.sleep(300)", "{MARK}"], start_new_session=True,
                      stdin=_subprocess.DEVNULL, stdout=_subprocess.DEVNULL, stderr=_subprocess.DEVNULL)
""")


def _submissions() -> dict:
    solution = notebooks.solution_answers()
    return {
        "steal": {name: STEAL.replace("GRADE_ID", name) for name in CODE_ANSWERS},
        "vandal": {"keras_layers": VANDAL},
        "linger": {**solution, "keras_training": solution["keras_training"] + "\n" + LINGER},
    }


EXPECTED_LOST = {"steal": ALL_TESTS, "vandal": ALL_TESTS, "linger": set()}


def _alive() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if MARK in line]


def _scores(course, student=None):
    scores = record.cell_scores(course, scratch.EXERCISE)
    return scores if student is None else scores[student]


def _nbgrader_autograde(course, env: dict) -> tuple[list, str]:
    """Plain ``nbgrader autograde`` in the course folder: the students it graded, and its log."""
    result = nbgrader("autograde", scratch.EXERCISE, "--force", root=course, check=False, env=env)
    graded = sorted(p.parent.name for p in (course / "autograded").glob(f"*/{scratch.EXERCISE}"))
    return graded, result.stdout + result.stderr


def _submit(course, _scratch):
    release = scratch.release_notebook(course)
    for student, cells in _submissions().items():
        scratch.submit(course, student, notebooks.fill_in(release, cells))


# graded in the shared run of each route (shared_grading.py), which then waits 3 s for a surviving rewriter
# before it reads the scores; the sandbox is required there
if RUNS:
    for _route in shared_grading.ROUTES:
        shared_grading.register(_route, __name__, sorted(EXPECTED_LOST), _submit, {"BNLAB_ISOLATION": "require"})


@pytest.fixture(scope="module", params=["nbgrader", "grader"])
def graded(request):
    grading = request.getfixturevalue(f"{request.param}_grading")
    return request.param, grading.course, grading.graded, grading.log, grading.scores


@pytest.mark.parametrize("student", sorted(EXPECTED_LOST))
def test_an_attack_earns_only_what_its_answers_earn(graded, student):
    route, course, graded_students, log, scores = graded
    assert student in graded_students, log[-3000:]
    assert ALL_TESTS <= set(scores[student])
    lost = {name for name in ALL_TESTS if scores[student][name][0] < scores[student][name][1]}
    assert lost == EXPECTED_LOST[student], f"{route}: {student} lost {sorted(lost)}"
    later = _scores(course, student)
    assert later == scores[student], "the gradebook changed after grading"
    assert all(later[name][0] == 0 for name in EXPECTED_LOST[student])


def test_no_file_outside_the_submission_and_no_process_behind(graded):
    route, course, _, log, _ = graded
    places = [isolation.PACKAGE, Path.home(), Path("/tmp")]
    left = [p for place in places for p in place.glob(f"pwned_{MARK}*")]
    left += list(course.rglob(f"pwned_{MARK}*"))
    assert left == [], f"{route}: files written outside the submission: {left}"
    deadline = time.monotonic() + 10
    while _alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive() == [], f"{route}: processes outlived grading"
    assert "NOT sandboxed" not in log
    # the processes the vandal and the lingerer left are named for the instructor (log, notes of make autograde)
    assert "SANDBOX: the submission in" in log and "left" in log


def test_the_attack_is_real_without_the_sandbox(tmp_path):
    """The control: with the sandbox off, the same stealing submission takes the instructor's answers."""
    course = scratch.create_course(tmp_path)
    release = scratch.release_notebook(course)
    scratch.submit(course, "steal", notebooks.fill_in(release, _submissions()["steal"]))
    _, log = _nbgrader_autograde(course, {"BNLAB_SHORT_BATCHES": "2", "BNLAB_ISOLATION": "off"})
    scores = _scores(course, "steal")
    assert "NOT sandboxed (BNLAB_ISOLATION=off)" in log
    assert all(scores[name][0] == scores[name][1] for name in ALL_TESTS), scores


def test_the_formgrader_route_sandboxes_too(tmp_path, monkeypatch):
    """The formgrader's Autograde button calls NbGraderAPI.autograde in the server's own process, with
    the course's nbgrader_config.py: the stealing submission earns nothing there either."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    course = scratch.create_course(tmp_path)
    release = scratch.release_notebook(course)
    scratch.submit(course, "steal", notebooks.fill_in(release, _submissions()["steal"]))
    monkeypatch.setenv("BNLAB_SHORT_BATCHES", "2")
    monkeypatch.setenv("BNLAB_ISOLATION", "require")
    monkeypatch.setenv("BNLAB_COURSE_ROOT", str(course))
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    api = NbGraderAPI(CourseDirectory(config=config), config=config)
    result = api.autograde(scratch.EXERCISE, "steal")
    assert result["success"], result.get("error")
    scores = _scores(course, "steal")
    assert ALL_TESTS <= set(scores) and all(scores[name][0] == 0 for name in ALL_TESTS), scores


# --- Resources (issue 27): every route, plain `nbgrader autograde` included, bounds what a submission takes.
# The limits are set small for the test on nbgrader's command line, as an instructor would in nbgrader_config.py.
LIMIT_FLAGS = [
    "--SandboxedExecute.tmp_size=64",
    "--SandboxedExecute.work_size=64",
    "--SandboxedExecute.max_processes=64",
    "--SandboxedExecute.memory_limit=3",
]
FILLER = textwrap.dedent(f"""
    # {MARK}
    def _fill(path, mib):
        try:
            with open(path, "wb") as handle:
                for _ in range(mib):
                    handle.write(b"1" * (1 << 20))
        except OSError:
            pass
""")
HOLD = "\nimport time as _time\n_time.sleep(30)\n"
RESOURCE_ATTACKS = {  # each after the answer of the upstream-shift question, the last cell before its check
    "tmpfill": FILLER + "_fill('/tmp/fill', 4608)" + HOLD,  # 4.5 GiB
    "diskfill": FILLER + "_fill('fill', 2048)" + HOLD,  # 2 GiB in the working folder
    "hog": "_blocks = [b'1' * (64 << 20) for _ in range(96)]" + HOLD,  # 6 GiB
    "flood": f"import subprocess as _sp\n_procs = []\ntry:\n    for _ in range(500):\n"
    f"        _procs.append(_sp.Popen(['sleep', '120', '{MARK}']))\nexcept OSError:\n    pass" + HOLD,
}
LIMIT_REASON = {
    "tmpfill": "filled /tmp to its limit of 64 MiB",
    "diskfill": "filled the working folder to its limit of 64 MiB",
    "hog": "over the sandbox's limit of 3 GiB",
    "flood": "processes, over the sandbox's limit of 64",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    course = scratch.create_course(tmp_path_factory.mktemp("limited"))
    release = scratch.release_notebook(course)
    solution = notebooks.solution_answers()
    for student, attack in {"honest": "", **RESOURCE_ATTACKS}.items():
        answers = {**solution, "q_upstream_shift_answer": solution["q_upstream_shift_answer"] + "\n" + attack}
        scratch.submit(course, student, notebooks.fill_in(release, answers))
    env = nbgrader_env({"BNLAB_SHORT_BATCHES": "2", "BNLAB_ISOLATION": "require", "BNLAB_COURSE_ROOT": str(course)})
    before = shutil.disk_usage(course).used
    result = subprocess.run(
        nbgrader_command("autograde", scratch.EXERCISE, "--force", *LIMIT_FLAGS, root=course),
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
    )
    grown = shutil.disk_usage(course).used - before
    return course, result.stdout + result.stderr, _scores(course), grown


@pytest.mark.parametrize("student", sorted(RESOURCE_ATTACKS))
def test_a_resource_attack_costs_only_its_own_cell_and_is_flagged(limited, student):
    course, log, scores, _ = limited
    assert student in scores, log[-3000:]
    lost = {name for name in ALL_TESTS if scores[student][name][0] < scores[student][name][1]}
    assert lost == {"test_q_upstream_shift"}, f"{student} lost {sorted(lost)}\n{log[-3000:]}"
    assert LIMIT_REASON[student] in log, log[-3000:]
    with record.gradebook(course) as gb:
        assert gb.find_submission_notebook(scratch.NOTEBOOK, scratch.EXERCISE, student).flagged
    graded = (course / "autograded" / student / scratch.EXERCISE / f"{scratch.NOTEBOOK}.ipynb").read_text()
    assert LIMIT_REASON[student] in graded  # the reason is in the cell's output, for the formgrader and feedback


def test_the_honest_solution_keeps_its_marks_under_the_limits(limited):
    course, log, scores, grown = limited
    assert all(scores["honest"][name][0] == scores["honest"][name][1] for name in ALL_TESTS), log[-3000:]
    with record.gradebook(course) as gb:
        assert not gb.find_submission_notebook(scratch.NOTEBOOK, scratch.EXERCISE, "honest").flagged
    assert "SANDBOX LIMIT" not in "\n".join(line for line in log.splitlines() if "honest" in line)
    assert grown < 256 * 1024**2, f"the course folder's disk grew by {grown} bytes"  # no fill reached the disk
    assert not list(course.rglob("fill"))
    deadline = time.monotonic() + 10
    while _alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive() == [], "processes outlived grading"
