"""The parallel grader: limits, records, incremental runs, Dask, regrading.

Fast tests check the sandbox (wall time, memory, network) and the bookkeeping on synthetic data.
The slow ones grade a small class for real: a buggy submission with plain ``nbgrader autograde``
in the course folder (the reference: what the formgrader's button runs), then a class in parallel
(JOBS=2) with that buggy submission, the solution, and submissions that crash, hang, eat memory or
cannot be read; then two of them on a real ``dask.distributed.LocalCluster`` of 2 worker processes,
and a regrade after a test cell changed in source/.
"""

from __future__ import annotations

import io
import os
import sys

import nbformat
import pytest
from submissions import BUGS

from bnlab import exercise
from bnlab.instructor import notebooks, scratch
from bnlab.instructor.autograde import coordinator, job, limits, record
from bnlab.instructor.autograde.limits import GiB, Limits
from bnlab.instructor.nbgrader import nbgrader

SHORT = {"BNLAB_SHORT_BATCHES": os.environ.get("BNLAB_SHORT_BATCHES", "3")}
BUGGY = next(b for b in BUGS if b.name == "keras_training_flag_never_set")
CRASH = "import os\nos._exit(1)  # the kernel dies here\n"
HANG = (
    "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)  # not even an interrupt stops it\n"
    "time.sleep(10**6)\n"
)
HOG = "hog = b'x' * (3 * 2**30)  # 3 GiB on top of TensorFlow's own: over the 3 GiB limit of the test\n"
# generous wall time for the real submissions on a loaded machine; the hanging submission is graded on
# its own with a short one. The memory limit leaves room for a valid submission (kernel, nbgrader and the
# trusted re-run's worker side by side; `make bench` measures their peak).
LIMITS = Limits(wall_seconds=900, memory_bytes=3 * GiB)
HANG_LIMITS = Limits(wall_seconds=30, memory_bytes=3 * GiB)
# the exercise's points, read from the source notebook: checks scored by the autograder, and in all
POINTS = {
    notebooks.grade_id(c): float(c.metadata["nbgrader"]["points"])
    for c in notebooks.read().cells
    if c.metadata.get("nbgrader", {}).get("grade")
}
AUTO = {name for name in POINTS if name.startswith("test_")}
MAX = sum(POINTS.values())


# --- fast: the sandbox and the bookkeeping ----------------------------------------------------
def test_wall_time_limit_kills_the_whole_process_group():
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    out = limits.run_limited([sys.executable, "-c", code], "/tmp", {}, Limits(wall_seconds=1, network="allow"))
    assert out.status == "timeout" and "wall-time limit of 1 s" in out.reason and out.seconds < 10


def test_memory_limit_stops_a_hungry_command():
    code = "import time; hog = b'x' * (1536 * 2**20); time.sleep(30)"
    out = limits.run_limited([sys.executable, "-c", code], "/tmp", {}, Limits(memory_bytes=GiB, network="allow"))
    assert out.status == "memory" and "over the limit of 1 GiB" in out.reason and out.seconds < 20


def test_the_sandbox_follows_make_autogrades_memory_and_wall_time(tmp_path):
    from traitlets.config.loader import KVArgParseConfigLoader

    from bnlab.instructor.preprocessors.execute import SandboxedExecute

    for given, memory in ((Limits(memory_bytes=6 * GiB, wall_seconds=900), 6), (Limits(memory_bytes=None), 0)):
        cmd = job.grading_command(tmp_path, "a", "s", "token", given)
        options = [arg for arg in cmd if arg.startswith("--SandboxedExecute.")]
        execute = SandboxedExecute(config=KVArgParseConfigLoader(argv=options).load_config())
        assert execute.memory_limit == memory and execute.wall_time == given.wall_seconds


def test_grading_commands_end_when_the_coordinator_is_stopped(tmp_path):
    import signal
    import subprocess
    import time

    import psutil

    marker = tmp_path / "pid"
    child = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    grader = (
        "import signal, sys, threading\nfrom bnlab.instructor.autograde import limits\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
        f"t = threading.Thread(target=limits.run_limited, args=([sys.executable, '-c', {child!r}], '/tmp', {{}},"
        " limits.Limits(network='allow')), daemon=True)\nt.start(); t.join()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", grader])
    deadline = time.time() + 60
    while not (marker.exists() and marker.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    pid = int(marker.read_text())
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 143
    time.sleep(1)
    alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert not alive, "the grading command outlived its coordinator"


def test_network_is_cut_where_the_machine_allows_it():
    available, why = limits.network_isolation()
    if not available:
        pytest.skip(f"network isolation unavailable here: {why}")
    code = (
        "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=2); print('REACHED')\n"
        "except OSError as e: print('BLOCKED', e.errno)\nsocket.create_server(('127.0.0.1', 0)); print('LOOPBACK')"
    )
    out = limits.run_limited([sys.executable, "-c", code], "/tmp", dict(os.environ), Limits())
    assert out.network_isolated and out.status == "ok", out
    assert "BLOCKED 101" in out.output and "LOOPBACK" in out.output, out.output


def test_required_isolation_refuses_when_unavailable(monkeypatch):
    monkeypatch.setattr(limits, "network_isolation", lambda: (False, "no namespaces here"))
    with pytest.raises(RuntimeError, match="no namespaces here"):
        limits.wrap_command(["true"], Limits(network="require"))
    assert limits.wrap_command(["true"], Limits(network="auto")) == (["true"], False)


def test_log_classification_keeps_only_what_deserves_a_look():
    log = "\n".join(
        [
            "[AutogradeApp | WARNING] Attribute 'checksum' for cell test_a has changed! (should be: aaa, got: rel)",
            "[AutogradeApp | WARNING] Attribute 'checksum' for cell test_b has changed! (should be: bbb, got: edited)",
            "/x/nbgrader/api.py:2229: SAWarning: Object of type <SubmittedAssignment> not in session, add operation",
            "  for notebook in submission.assignment.notebooks:",
            "[AutogradeApp | WARNING] Something new",
            "[AutogradeApp | INFO] Writing 123 bytes",
        ]
    )
    notes, expected = job.classify_log(log, {"test_a": "rel", "test_b": "rel"})
    assert expected == 3
    assert notes == ["locked cell test_b was edited in the submission; nbgrader graded the original", "Something new"]


def test_cells_stopped_by_the_per_cell_limit_are_named(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("while True: pass", metadata={"nbgrader": {"grade_id": "slow_cell"}})
    cell.outputs = [nbformat.v4.new_output("error", ename="CellTimeoutError", evalue="", traceback=[])]
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), cell]
    nbformat.write(nb, tmp_path / "a.ipynb")
    notebooks = job._notebooks(tmp_path)
    assert job._cells_with_error(notebooks, "CellTimeoutError") == ["slow_cell"]
    assert job._cells_with_error(notebooks, "KernelDied") == []


def test_progress_line_counts_done_left_failed_and_eta():
    stream = io.StringIO()
    progress = coordinator.Progress(4, stream)
    progress.update({"student": "a", "status": "graded", "score": 30.0, "max_score": 30.0, "seconds": 1.0})
    progress.update({"student": "b", "status": "crashed", "score": 0.0, "max_score": 30.0, "seconds": 1.0})
    line = stream.getvalue().splitlines()[-1]
    assert "b: crashed 0/30" in line and "2/4 done, 2 left, 1 failed" in line and "ETA 0m0" in line


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return scratch.create_course(tmp_path_factory.mktemp("merge"))


@pytest.mark.slow  # a scratch course (nbgrader generate_assignment)
def test_failed_result_gets_a_flagged_gradebook_entry_with_the_reason(course):
    files = {"timestamp.txt": b"2026-11-22 12:00:00.000000 UTC"}
    result = {
        "student": "ghost",
        "assignment": exercise.ASSIGNMENT,
        "status": "memory",
        "reason": "used 9 GiB",
        "notebooks": {},
        "seconds": 3.0,
    }
    row = record.merge(course, result, files, "d1")
    assert (row["status"], row["score"], row["max_score"]) == ("memory", 0.0, MAX)
    with record.gradebook(course) as gb:
        nb = gb.find_submission_notebook(exercise.NOTEBOOK, exercise.ASSIGNMENT, "ghost")
        assert (
            nb.flagged and nb.comments and all("Autograding memory: used 9 GiB" == c.auto_comment for c in nb.comments)
        )
        assert gb.find_submission(exercise.ASSIGNMENT, "ghost").timestamp.year == 2026
    assert record.records(course, exercise.ASSIGNMENT)["ghost"]["reason"] == "used 9 GiB"


@pytest.mark.slow  # a scratch course (nbgrader generate_assignment)
def test_digest_changes_with_the_submission_and_with_the_tests(course):
    scratch.submit(course, "d", scratch.release_notebook(course))
    first = {s.student: s.digest for s in coordinator.submissions(course, exercise.ASSIGNMENT)}["d"]
    (course / "submitted" / "d" / exercise.ASSIGNMENT / "extra.txt").write_text("more")
    second = {s.student: s.digest for s in coordinator.submissions(course, exercise.ASSIGNMENT)}["d"]
    (course / "nbgrader_config.py").write_text((course / "nbgrader_config.py").read_text() + "\n# changed\n")
    third = {s.student: s.digest for s in coordinator.submissions(course, exercise.ASSIGNMENT)}["d"]
    assert len({first, second, third}) == 3


@pytest.mark.slow  # a scratch course (nbgrader generate_assignment)
def test_kit_holds_the_assignment_and_no_student(course):
    import tarfile

    kit = job.make_kit(course, exercise.ASSIGNMENT)
    names = tarfile.open(fileobj=io.BytesIO(kit)).getnames()
    assert f"source/{exercise.ASSIGNMENT}/{exercise.FILENAME}" in names and "gradebook.db" in names
    assert not any(n.startswith(("submitted", "autograded")) for n in names)


# --- slow: real grading -----------------------------------------------------------------------
def _scores(course, student):
    return record.cell_scores(course, exercise.ASSIGNMENT)[student]


def _fill(course, cells):
    return notebooks.fill_in(scratch.release_notebook(course), {**notebooks.solution_answers(), **cells})


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    """The buggy submission graded the way nbgrader alone does it (``nbgrader autograde`` in the course)."""
    ref = scratch.create_course(tmp_path_factory.mktemp("serial"))
    scratch.submit(ref, "buggy", _fill(ref, BUGGY.cells))
    result = nbgrader("autograde", exercise.ASSIGNMENT, "--force", root=ref, check=False, env=SHORT)
    assert (ref / "autograded" / "buggy" / exercise.ASSIGNMENT / exercise.FILENAME).exists(), result.stderr[-3000:]
    return _scores(ref, "buggy")


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    course = scratch.create_course(tmp_path_factory.mktemp("class"))
    scratch.submit(course, "solution", _fill(course, {}))
    scratch.submit(course, "buggy", _fill(course, BUGGY.cells))
    scratch.submit(course, "crashes", _fill(course, {"keras_layers": CRASH}))
    scratch.submit(course, "hangs", _fill(course, {"keras_layers": HANG}))
    scratch.submit(course, "hog", _fill(course, {"keras_layers": HOG}))
    scratch.submit(course, "garbled", scratch.release_notebook(course)).write_text('{"cells": [')
    stream = io.StringIO()
    others = ["solution", "buggy", "crashes", "hog", "garbled"]
    run = coordinator.grade_class(course, jobs=2, limits=LIMITS, env=SHORT, stream=stream, students=others)
    hang = coordinator.grade_class(
        course, jobs=1, limits=HANG_LIMITS, env=SHORT, stream=io.StringIO(), students=["hangs"]
    )
    run.rows = sorted(run.rows + hang.rows, key=lambda r: r["student"])
    return course, run, stream.getvalue()


@pytest.mark.slow
def test_parallel_grades_equal_serial_grades(graded_class, serial_reference):
    course, run, _ = graded_class
    assert _scores(course, "buggy") == serial_reference
    lost = {name for name, (score, maximum) in serial_reference.items() if score < maximum and name in AUTO}
    assert lost == set(BUGGY.fails)
    scores = _scores(course, "solution")
    assert all(scores[name][0] == POINTS[name] for name in AUTO), scores
    assert (course / "autograded" / "solution" / exercise.ASSIGNMENT / exercise.FILENAME).exists()


@pytest.mark.slow
def test_a_kernel_that_dies_in_one_cell_costs_only_that_cell(graded_class):
    """os._exit in Part 1's answer cell: that cell is skipped, the rest graded, and the submission flagged."""
    course, run, _ = graded_class
    last = record.records(course, exercise.ASSIGNMENT)["crashes"]
    assert last["status"] == "crashed" and "the kernel died in keras_layers" in last["reason"], last
    scores = _scores(course, "crashes")
    lost = {name for name, (score, maximum) in scores.items() if score < maximum and name in AUTO}
    assert lost == {
        "test_keras_fc_structure",
        "test_keras_fc_population",
        "test_keras_fc_outputs",
        "test_keras_conv_structure",
        "test_keras_conv_population",
        "test_keras_conv_outputs",
    }, lost
    assert scores["test_nn_fc_variables"] == (POINTS["test_nn_fc_variables"],) * 2  # Part 2 keeps its points
    assert "crashes" in run.failed  # listed for a look, with the reason
    with record.gradebook(course) as gb:
        assert gb.find_submission_notebook(exercise.NOTEBOOK, exercise.ASSIGNMENT, "crashes").flagged


@pytest.mark.slow
@pytest.mark.parametrize(
    "student,status,reason",
    [
        ("hangs", "timeout", "wall-time limit of 30 s"),
        ("hog", "memory", "over the limit of 3 GiB"),
        ("garbled", "unreadable", "cannot be read as a notebook"),
    ],
)
def test_each_bad_submission_has_a_failure_record(graded_class, student, status, reason):
    course, run, _ = graded_class
    last = record.records(course, exercise.ASSIGNMENT)[student]
    assert last["status"] == status and reason in last["reason"], last
    assert f"submitted/{student}/{exercise.ASSIGNMENT}" in last["reason"]
    assert student in run.failed and last["score"] == 0 and last["max_score"] == MAX
    with record.gradebook(course) as gb:
        assert gb.find_submission_notebook(exercise.NOTEBOOK, exercise.ASSIGNMENT, student).flagged


@pytest.mark.slow
def test_progress_summary_report_and_exports(graded_class):
    course, run, progress = graded_class
    assert "5/5 done, 0 left, 3 failed" in progress
    table = coordinator.summary(run)
    assert "solution" in table and f"/{MAX:g}" in table and "crashed" in table
    report = coordinator.write_report(course, exercise.ASSIGNMENT).read_text()
    assert report.count("\n") == 7 and "hog,memory" in report
    from bnlab.instructor import lms

    grades, per_question, _canvas = lms.export(course, exercise.ASSIGNMENT)
    assert "batch_norm_lesson" not in grades.read_text()
    rows = per_question.read_text().splitlines()
    first = next(c for c in notebooks.read().cells if c.metadata.get("nbgrader", {}).get("grade"))  # in source order
    assert rows[0].startswith(f"student_id,{notebooks.grade_id(first)} (max {POINTS[notebooks.grade_id(first)]:g}),")
    assert rows[0].endswith(",total,max_score,status")
    assert len(rows) == 7 and any(r.startswith("solution,") and r.endswith(f",{MAX},graded") for r in rows)


@pytest.mark.slow
def test_second_run_grades_only_new_or_changed_submissions(graded_class):
    course, _, _ = graded_class
    scratch.submit(course, "garbled", scratch.release_notebook(course)).write_text("still not a notebook")
    run = coordinator.grade_class(course, jobs=2, limits=LIMITS, env=SHORT, stream=io.StringIO())
    assert [r["student"] for r in run.rows] == ["garbled"]
    assert sorted(run.skipped) == ["buggy", "crashes", "hangs", "hog", "solution"]


@pytest.mark.slow
def test_dask_cluster_grades_the_same_and_regrade_lists_only_changes(tmp_path):
    from distributed import Client, LocalCluster

    course = scratch.create_course(tmp_path / "dask")
    scratch.submit(course, "buggy", _fill(course, BUGGY.cells))
    scratch.submit(course, "crashes", _fill(course, {"keras_layers": CRASH}))
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        run = coordinator.grade_class(course, client=client, limits=LIMITS, env=SHORT, stream=io.StringIO())
        workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1") for w in workers)
    assert run.graded == ["buggy"] and "crashes" in run.failed
    buggy_before = _scores(course, "buggy")
    assert {n for n, (s, m) in buggy_before.items() if s < m and n in AUTO} == set(BUGGY.fails)

    # a test cell changes in source/: every check of test_keras_fc_structure now fails
    path = course / "source" / exercise.ASSIGNMENT / exercise.FILENAME
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if notebooks.grade_id(c) == "test_keras_fc_structure")
    cell.source += "\nassert False, 'the check changed'"
    nbformat.write(nb, path)
    run, changes = coordinator.regrade(course, jobs=2, limits=LIMITS, env=SHORT, stream=io.StringIO())
    with record.gradebook(course) as gb:
        stored = gb.find_source_cell("test_keras_fc_structure", exercise.NOTEBOOK, exercise.ASSIGNMENT).source
    assert "the check changed" in stored
    total = sum(score or 0 for score, _ in buggy_before.values())  # the manually graded cell has no score yet
    assert changes == [("buggy", total, total - 1, {"test_keras_fc_structure": (1.0, 0.0)})]
