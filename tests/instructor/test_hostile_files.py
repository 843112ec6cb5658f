"""A submission is data (issue 27, items 1, 3, 5, 6), tested on the pieces, fast: only regular files are read
(bnlab.instructor.admission) by the coordinator, the collect and nbgrader's pre-convert hook; no instructor
variable by prefix reaches student code; what a submission prints is held capped and never becomes a note.
The same attacks through the whole pipeline, both routes, are in test_hostile_pipeline.py."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import nbformat
import pytest

from bnlab import exercise
from bnlab.instructor import admission, isolation
from bnlab.instructor.autograde import coordinator, job, limits

A, NB = exercise.ASSIGNMENT, exercise.FILENAME


def notebook(text: str = "x = 1") -> bytes:
    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(text, id="answer")])).encode()


@pytest.fixture
def secrets(tmp_path):
    """Instructor files outside any submission: a master notebook, a gradebook, a file outside the course."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "master.ipynb").write_bytes(notebook("THE SOLUTION"))
    (outside / "gradebook.db").write_bytes(b"SQLite format 3\0 hidden tests")
    (outside / "private").mkdir()
    (outside / "private" / "key.txt").write_text("INSTRUCTOR SECRET")
    return outside


def hostile_folder(folder, secrets):
    """A submission folder with one of everything that is not a regular file, beside real answers."""
    folder.mkdir(parents=True)
    (folder / NB).write_bytes(notebook("my answer"))
    (folder / "notes.txt").write_text("mine")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.csv").write_text("1,2\n")
    (folder / "master.ipynb").symlink_to(secrets / "master.ipynb")
    (folder / "gradebook.db").symlink_to(os.path.relpath(secrets / "gradebook.db", folder))
    (folder / "environ").symlink_to("/proc/self/environ")
    (folder / "private").symlink_to(secrets / "private", target_is_directory=True)
    (folder / "sub" / "up").symlink_to("../../..")
    os.mkfifo(folder / "pipe")
    os.link(secrets / "private" / "key.txt", folder / "hard.txt")
    (folder / "odd\nname.txt").write_text("a name with a newline")
    # bound by a relative name: a socket's path may hold at most 107 bytes, and pytest-xdist's tmp_path is deep
    with socket.socket(socket.AF_UNIX) as sock, contextlib.chdir(folder):
        sock.bind("sock")
    return folder


def test_only_regular_files_are_read_and_every_other_entry_is_named_with_its_reason(tmp_path, secrets):
    folder = hostile_folder(tmp_path / "submitted" / "eve" / A, secrets)
    done = {}
    reader = threading.Thread(target=lambda: done.update(result=admission.admit(folder)), daemon=True)
    reader.start()
    reader.join(20)
    assert "result" in done, "reading the submission hung (a FIFO was opened)"
    admitted = done["result"]
    assert admitted.files == {NB: notebook("my answer"), "notes.txt": b"mine", "sub/data.csv": b"1,2\n"}
    reasons = admitted.refused
    for name in ("master.ipynb", "gradebook.db", "environ", "private", "sub/up"):
        assert reasons[name].startswith("a symbolic link"), (name, reasons[name])
    assert reasons["pipe"] == "a named pipe (FIFO)" and reasons["sock"] == "a socket"
    assert reasons["hard.txt"].startswith("a hard link")
    assert reasons[ascii("odd\nname.txt")] == "a name with control characters"
    every = b"".join(admitted.files.values())
    assert b"THE SOLUTION" not in every and b"hidden tests" not in every and b"SECRET" not in every
    assert admitted.note().startswith("not graded, never read: ") and "\n" not in admitted.note()
    assert admitted.changed is not None and abs(admitted.changed.timestamp() - time.time()) < 600


def test_a_folder_that_is_a_link_and_a_missing_folder(tmp_path, secrets):
    (tmp_path / "linked").symlink_to(secrets, target_is_directory=True)
    assert admission.admit(tmp_path / "linked").files == {}
    assert "never followed" in admission.admit(tmp_path / "linked").refused["."]
    assert admission.admit(tmp_path / "nothing") == admission.Admitted({}, {})


def test_limits_on_files_bytes_and_depth(tmp_path, monkeypatch):
    monkeypatch.setitem(admission.LIMITS, "files", 10)
    monkeypatch.setitem(admission.LIMITS, "file_bytes", 1000)
    monkeypatch.setitem(admission.LIMITS, "depth", 2)
    (tmp_path / "many").mkdir()
    for i in range(25):
        (tmp_path / "many" / f"f{i:02d}.txt").write_text("x")
    (tmp_path / "many" / "big.bin").write_bytes(b"0" * 1001)
    (tmp_path / "many" / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "many" / "a" / "b" / "c" / "deep.txt").write_text("deep")
    admitted = admission.admit(tmp_path / "many")
    assert len(admitted.files) == 10
    assert admitted.refused["big.bin"] == "larger than the limit of 1000 bytes a file"
    assert admitted.refused["a/b/c/"].startswith("a folder nested deeper")
    assert sum("past the limit of 10 files" in r for r in admitted.refused.values()) == 15
    assert "and 10 more: past the limit of 10 files" in admitted.note()


@pytest.mark.parametrize(
    "stamp, good",
    [
        (b"2026-12-15 23:59:00.000000 UTC", True),
        (b"2026-12-15 23:59:00 Europe/Berlin", True),
        (b"late? never", False),
        (b"", False),
        (b"\xff\xfe", False),
        (b"9" * 40, False),
        (b"2026-12-15 " + b"1" * 500, False),
    ],
)
def test_a_timestamp_that_holds_no_time_is_refused_and_named(tmp_path, stamp, good):
    (tmp_path / NB).write_bytes(notebook())
    (tmp_path / "timestamp.txt").write_bytes(stamp)
    admitted = admission.admit(tmp_path)
    assert ("timestamp.txt" in admitted.files) == good
    if not good:
        assert admitted.refused["timestamp.txt"].startswith("timestamp.txt holds no time")
        assert NB in admitted.files


def test_the_coordinator_reads_only_regular_files_and_keeps_the_reasons(tmp_path, secrets):
    course = tmp_path
    (course / "source" / A).mkdir(parents=True)
    (course / "source" / A / NB).write_bytes(notebook("master"))
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    hostile_folder(course / "submitted" / "eve" / A, secrets)
    (course / "submitted" / "bob" / A).mkdir(parents=True)
    (course / "submitted" / "bob" / A / NB).symlink_to(course / "source" / A / NB)  # the master itself
    (course / "submitted" / "mallory").symlink_to(course / "submitted" / "eve", target_is_directory=True)
    found = {s.student: s for s in coordinator.submissions(course, A)}
    assert set(found["eve"].files) == {NB, "notes.txt", "sub/data.csv"}
    assert found["bob"].files == {} and found["bob"].refused[NB].startswith("a symbolic link")
    assert found["mallory"].files == {} and "symbolic link" in found["mallory"].refused["."]


def test_a_refusal_flags_the_result_with_its_reason():
    result = {"status": "graded", "reason": "", "notes": [], "notebooks": {"nb": {"flagged": False}}}
    job._refusals(result, {"master.ipynb": "a symbolic link (to '../../../source/x.ipynb'), never followed"})
    assert result["notebooks"]["nb"]["flagged"]
    assert result["reason"].startswith("flagged for review: not graded, never read: master.ipynb: a symbolic link")
    assert result["notes"][0].startswith("not graded, never read: master.ipynb")


def test_the_pre_convert_hook_moves_aside_what_is_not_a_regular_file_before_nbgrader_copies(
    tmp_path, secrets, monkeypatch
):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])  # alembic
    folder = hostile_folder(tmp_path / "submitted" / "eve" / A, secrets)
    (folder / "Other.ipynb").symlink_to(secrets / "master.ipynb")
    (folder / "timestamp.txt").write_text("late? never")
    listed = [str(folder / NB), str(folder / "Other.ipynb")]
    admission.before_copy(assignment=A, student="eve", notebooks=listed)
    assert listed == [str(folder / NB)]  # nbgrader grades the regular notebook only
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted([NB, "notes.txt", "sub"]) and sorted(p.name for p in (folder / "sub").iterdir()) == [
        "data.csv"
    ]
    aside = next((tmp_path / "submitted" / admission.REFUSED).glob(f"*/eve/{A}"))
    assert (aside / "master.ipynb").is_symlink() and (aside / "pipe").exists() and (aside / "timestamp.txt").exists()
    why = (aside / "REFUSED.txt").read_text()
    assert "Other.ipynb: a symbolic link" in why and "timestamp.txt holds no time" in why
    assert (secrets / "private" / "key.txt").read_text() == "INSTRUCTOR SECRET"  # moved links, not their targets
    assert (tmp_path / "gradebook.db").exists()  # flagged there (the assignment is unknown here: nothing to flag)


def test_instructor_variables_reach_no_sandboxed_process_by_prefix():
    env = isolation.sandbox_env(
        {
            "TF_TOKEN_app_terraform_io": "terraform-secret",
            "TF_VAR_db_password": "hunter2",
            "CUDA_SECRET_THING": "x",
            "OMP_SECRET": "x",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "0",
            "OMP_NUM_THREADS": "2",
        }
    )
    assert not {"TF_TOKEN_app_terraform_io", "TF_VAR_db_password", "CUDA_SECRET_THING", "OMP_SECRET"} & set(env)
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "3" and env["CUDA_VISIBLE_DEVICES"] == "0" and env["OMP_NUM_THREADS"] == "2"
    assert isolation.KEEP_PREFIXES == ()


def test_output_is_held_capped_head_and_tail(tmp_path):
    flood = (
        "import os, sys\n"
        "os.write(1, b'FIRST LINE\\n')\n"
        "block = b'[AutogradeApp | WARNING] TAMPERING: student bob: forged\\n' * 20000\n"
        "for _ in range(int(sys.argv[1])): os.write(1, block)\n"
        "os.write(1, b'LAST LINE\\n')\n"
    )
    size = len(b"[AutogradeApp | WARNING] TAMPERING: student bob: forged\n") * 20000
    rounds = (512 * 2**20) // size + 1  # 512 MiB
    start = time.perf_counter()
    outcome = limits.run_limited(
        [sys.executable, "-c", flood, str(rounds)], tmp_path, dict(os.environ), limits.Limits(network="allow")
    )
    assert outcome.status == "ok", outcome.reason
    assert outcome.output.startswith("FIRST LINE") and outcome.output.rstrip().endswith("LAST LINE")
    assert len(outcome.output) < 3 * limits.OUTPUT_KEPT and "bytes of output left out here" in outcome.output
    assert time.perf_counter() - start < 120


def test_the_coordinator_memory_stays_bounded_under_a_512_mib_flood(tmp_path):
    """In a fresh interpreter (its peak resident memory is its own): run_limited under a 512 MiB flood."""
    probe = (
        "import os, resource, sys\n"
        "from bnlab.instructor.autograde import limits\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "cmd = [sys.executable, '-c', 'import os\\nb = b\"SANDBOX: x\\\\n\" * 100000\\n"
        "for _ in range(480): os.write(1, b)']\n"
        "out = limits.run_limited(cmd, '.', dict(os.environ), limits.Limits(network='allow'))\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(out.status, len(out.output), (after - before) // 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    status, kept, grew_mib = result.stdout.split()
    assert status == "ok" and int(kept) < 3 * limits.OUTPUT_KEPT
    assert int(grew_mib) < 64, f"the reader grew by {grew_mib} MiB for 512 MiB of output"


def test_log_records_need_the_run_token_and_a_line_of_their_own():
    token = "c0ffee"
    text = "\n".join(
        [
            f"[AutogradeApp | WARNING] {token} SANDBOX: the submission in /x left 1 process(es) running: sleep",
            "[AutogradeApp | WARNING] TAMPERING: student bob: printed by the submission",
            f"[AutogradeApp | WARNING] {token} a message that goes on",
            "[AutogradeApp | WARNING] deadbeef TAMPERING: student bob: continued onto a line of its own",
            f"  [AutogradeApp | WARNING] {token} indented: not a record",
        ]
    )
    kept = job.log_records(text, token)
    assert kept.splitlines() == [
        "[AutogradeApp | WARNING] SANDBOX: the submission in /x left 1 process(es) running: sleep",
        "[AutogradeApp | WARNING] a message that goes on",
    ]
    notes, _ = job.classify_log(kept, {})
    assert not any("TAMPERING" in note for note in notes)


def test_a_flood_of_entries_is_not_read_at_all_and_the_hook_moves_it_aside_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])  # alembic
    monkeypatch.setitem(admission.LIMITS, "entries", 20)
    folder = tmp_path / "submitted" / "eve" / A
    (folder / "many").mkdir(parents=True)
    (folder / NB).write_bytes(notebook())
    for i in range(30):
        (folder / "many" / f"{i}.txt").write_text("x")
    admitted = admission.admit(folder)
    assert admitted.files == {} and admitted.refused["."].startswith("more than 20 files and folders")
    listed = [str(folder / NB)]
    admission.before_copy(assignment=A, student="eve", notebooks=listed)
    assert listed == [] and not folder.exists()
    aside = next((tmp_path / "submitted" / admission.REFUSED).glob(f"*/eve/{A}"))
    assert (aside / "SUBMISSION" / NB).exists() and "more than 20" in (aside / "REFUSED.txt").read_text()


def test_the_hook_never_follows_a_student_folder_that_is_a_link(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])  # alembic
    eve = tmp_path / "submitted" / "eve" / A
    eve.mkdir(parents=True)
    (eve / NB).write_bytes(notebook("eve's own"))
    (tmp_path / "submitted" / "mallory").symlink_to(tmp_path / "submitted" / "eve", target_is_directory=True)
    listed = [str(tmp_path / "submitted" / "mallory" / A / NB)]
    admission.before_copy(assignment=A, student="mallory", notebooks=listed)
    assert listed == [] and not (tmp_path / "submitted" / "mallory").exists()
    assert (eve / NB).read_bytes() == notebook("eve's own")  # the link moved, not what it points to
    aside = next((tmp_path / "submitted" / admission.REFUSED).glob(f"*/mallory/{A}"))
    assert (aside / "STUDENT-FOLDER-LINK").is_symlink()
