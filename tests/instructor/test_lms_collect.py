"""Collecting an LMS archive (duplicates, once per archive, backups, unmatched files, names), late work
and the Canvas gradebook import, on a small scratch course.

Fast: no notebook runs and no nbgrader subprocess (nbgrader's collector plugin, gradebook and late-penalty
preprocessor run in this process); ``tests/test_lms.py`` runs the nbgrader commands themselves.
"""

from __future__ import annotations

import csv
import datetime
import getpass
import io
import os
import shutil
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbgrader.utils import parse_utc

from bnlab import exercise
from bnlab.instructor import lms
from bnlab.instructor.autograde import record
from bnlab.instructor.notebooks import ROOT

A, NB = exercise.ASSIGNMENT, exercise.FILENAME
STEM = NB[: -len(".ipynb")]
DUE = "2026-12-15 23:59:00 UTC"


@pytest.fixture
def course(tmp_path):
    """A course with the real config and a released notebook (nbgrader's names for the collect)."""
    course = tmp_path / "course"
    (course / "release" / A).mkdir(parents=True)
    (course / "release" / A / NB).write_text(nbformat.writes(nbformat.v4.new_notebook()))
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    return course


def with_duedate(course, when=DUE):
    with open(course / "nbgrader_config.py", "a") as handle:
        handle.write(f"\nc.LatePenalty.duedates = {{{A!r}: {when!r}}}\n")


def notebook(text: str) -> str:
    """A notebook whose content is ``text`` (the same text gives the same bytes)."""
    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(text, id="answer")]))


def archive(path, files: dict[str, str]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def submitted(course, student, name=NB):
    return (course / "submitted" / student / A / name).read_text()


def test_duplicates_keep_the_latest_attempt_and_are_named(course, tmp_path):
    zipped = archive(
        tmp_path / "submissions.zip",
        {
            f"doejane_12345_1_{NB}": notebook("attempt 0"),
            f"doejane_12345_3_{STEM}-2.ipynb": notebook("attempt 2"),
            f"doejane_12345_2_{STEM}-1.ipynb": notebook("attempt 1"),
            f"roefred_555_4_{NB}": notebook("only one"),
        },
    )
    result = lms.collect_archive(course, A, zipped)
    assert result.new == ["12345", "555"]
    assert submitted(course, "12345") == notebook("attempt 2")
    assert result.duplicates == [
        ("12345", f"doejane_12345_3_{STEM}-2.ipynb", [f"doejane_12345_1_{NB}", f"doejane_12345_2_{STEM}-1.ipynb"])
    ]
    text = lms.summary(result, course)
    assert f"12345: kept doejane_12345_3_{STEM}-2.ipynb; not collected: doejane_12345_1_{NB}" in text


def test_a_notebook_answered_for_another_id_is_collected_and_named(course, tmp_path):
    """The id entered in STUDENT_ID (or shown by the saved outputs) must be the one the LMS file name gives: a
    mismatch is reported, and the file is still collected, under the file name's id."""
    shown = nbformat.v4.new_code_cell("variants.use(STUDENT_ID)", id="setup")
    shown.outputs = [
        nbformat.v4.new_output("stream", text="The questions of this notebook are drawn for student '777'.\n")
    ]
    copied = nbformat.writes(nbformat.v4.new_notebook(cells=[shown]))
    zipped = archive(
        tmp_path / "submissions.zip",
        {
            f"doejane_12345_1_{NB}": notebook('STUDENT_ID = "555"  # my friend\'s'),
            f"roefred_555_2_{NB}": notebook('STUDENT_ID = "555"'),
            f"moemary_888_3_{NB}": copied,
            f"lonelou_999_4_{NB}": notebook('STUDENT_ID = ""'),
        },
    )
    result = lms.collect_archive(course, A, zipped)
    assert result.students == ["12345", "555", "888", "999"]
    assert submitted(course, "12345") == notebook('STUDENT_ID = "555"  # my friend\'s')  # collected all the same
    assert result.other_ids == [("12345", NB, ["555"]), ("888", NB, ["777"])]
    text = lms.summary(result, course)
    assert "ANSWERED FOR ANOTHER ID" in text
    assert f"12345: {NB} was answered for '555'" in text and f"888: {NB} was answered for '777'" in text


def test_every_file_that_names_no_student_is_listed_and_nothing_leaves_the_folder(course, tmp_path):
    zipped = archive(
        tmp_path / "submissions.zip",
        {
            f"doejane_12345_1_{NB}": notebook("mine"),
            "readme_from_canvas.txt": "not a submission",
            "doejane_12345_9_notes.py": "x = 1",
            f"{NB}": notebook("no name, no id"),
            f"../../evil_7_8_{NB}": notebook("escape"),
        },
    )
    result = lms.collect_archive(course, A, zipped)
    assert result.students == ["12345"]
    assert result.unmatched == sorted(
        [f"../../evil_7_8_{NB}", NB, "doejane_12345_9_notes.py", "readme_from_canvas.txt"]
    )
    assert not list(tmp_path.glob("evil*")) and not (course / "submitted" / "7").exists()
    text = lms.summary(result, course)
    assert "NOT COLLECTED, 4 file(s)" in text and "    readme_from_canvas.txt" in text


@pytest.mark.parametrize(
    "name,student,late",
    [
        (f"müllerjürgen_12345_67890_{NB}", "12345", False),
        (f"smithjohn_late_222_3333_{NB}", "222", True),
        (f"O'BRIENANN_LATE_7_8_{NB}", "7", True),
        (f"Σωκράτης_31_32_{STEM}-3.ipynb", "31", False),
        (f"李小龙_41_42_{NB}", "41", False),
    ],
)
def test_names_in_any_case_and_script_are_collected(course, tmp_path, name, student, late):
    result = lms.collect_archive(course, A, archive(tmp_path / "s.zip", {name: notebook(name)}))
    assert result.new == [student] and submitted(course, student) == notebook(name)
    assert result.late == ([student] if late else []) and not result.unmatched


def test_an_archive_is_collected_once_and_moves_out_of_the_inbox(course, tmp_path):
    inbox = course / "downloaded" / A / "archive"
    inbox.mkdir(parents=True)
    files = {f"doejane_12345_1_{NB}": notebook("a"), f"roefred_555_2_{NB}": notebook("b")}
    first = lms.collect_archive(course, A, archive(inbox / "submissions.zip", files))
    assert lms.leftovers(course, A) == [] and first.kept_at.exists()
    assert first.kept_at.parent.parent == course / "downloaded" / A / "collected"
    assert "collected submissions.zip" in (first.kept_at.parent / "summary.txt").read_text()
    again = archive(tmp_path / "submissions (1).zip", files)  # the same download saved a second time
    with pytest.raises(SystemExit, match="collected already"):
        lms.collect_archive(course, A, again)
    repeated = lms.collect_archive(course, A, again, again=True)
    assert repeated.unchanged == ["12345", "555"] and not repeated.duplicates and not repeated.replaced
    assert again.exists()  # an archive from outside the course is copied, not moved


def test_a_changed_submission_is_backed_up_before_it_is_replaced(course, tmp_path):
    lms.collect_archive(
        course,
        A,
        archive(
            tmp_path / "submissions.zip",
            {f"doejane_1009_1_{NB}": notebook("first"), f"roefred_555_2_{NB}": notebook("b")},
        ),
    )
    fixed = course / "submitted" / "1009" / A / NB
    fixed.write_text(notebook("fixed by hand"))
    result = lms.collect_archive(
        course,
        A,
        archive(
            tmp_path / "submissions (1).zip",
            {f"doejane_1009_3_{STEM}-1.ipynb": notebook("second"), f"roefred_555_2_{NB}": notebook("b")},
        ),
    )
    assert result.unchanged == ["555"] and list(result.replaced) == ["1009"]
    backup = result.replaced["1009"]
    assert backup.is_relative_to(course / "submitted" / ".backup")
    assert (backup / NB).read_text() == notebook("fixed by hand") and submitted(course, "1009") == notebook("second")
    assert f"replaced 1009: the previous files are kept in submitted/.backup/{result.stamp}/1009/{A}/" in lms.summary(
        result, course
    )
    assert sorted(p.parent.name for p in (course / "submitted").glob(f"*/{A}")) == ["1009", "555"]  # not a student


def test_without_a_due_date_late_files_get_no_timestamp_and_the_summary_says_so(course, tmp_path):
    result = lms.collect_archive(course, A, archive(tmp_path / "s.zip", {f"roefred_LATE_555_2_{NB}": notebook("b")}))
    assert result.late == ["555"] and result.duedate is None
    assert not (course / "submitted" / "555" / A / "timestamp.txt").exists()
    assert "no due date (c.LatePenalty.duedates), so no timestamp.txt and no late penalty" in lms.summary(
        result, course
    )


def test_the_config_due_date_reaches_the_gradebook_and_the_timestamps(course, tmp_path):
    with_duedate(course)
    result = lms.collect_archive(
        course,
        A,
        archive(
            tmp_path / "s.zip",
            {f"roefred_late_555_2_{NB}": notebook("late"), f"doejane_12345_1_{NB}": notebook("on time")},
        ),
    )
    due = parse_utc(DUE)
    assert result.duedate == due
    with record.gradebook(course) as gb:
        assert gb.find_assignment(A).duedate == due
    late = parse_utc((course / "submitted" / "555" / A / "timestamp.txt").read_text())
    on_time = parse_utc((course / "submitted" / "12345" / A / "timestamp.txt").read_text())
    assert late - due == datetime.timedelta(seconds=1) and on_time == due
    assert "timestamp.txt = due date + 1 s" in lms.summary(result, course)


@pytest.mark.parametrize("seconds,percent", [(0, None), (1, 10), (86400, 10), (86401, 20), (40 * 86400, 100)])
def test_late_penalty_per_started_day(seconds, percent):
    penalty = lms.LatePenalty().late_submission_penalty("s", 30.0, seconds)
    assert penalty == (None if percent is None else pytest.approx(30.0 * percent / 100))


def graded_gradebook(course, students: dict[str, dict], duedate=None, points=35.0):
    """A gradebook with the graded exercise (one cell worth ``points``) and the ungraded lesson."""
    with record.gradebook(course) as gb:
        gb.add_assignment(A, duedate=duedate)
        gb.add_notebook(STEM, A)
        gb.add_grade_cell("cell", STEM, A, max_score=points, cell_type="code")
        gb.add_assignment("batch_norm_lesson")
        for student, info in students.items():
            gb.add_student(student, **info.get("name", {}))
            if "score" in info:
                gb.update_or_create_submission(A, student, timestamp=info.get("timestamp"))
                gb.find_grade("cell", STEM, A, student).auto_score = info["score"]
                nb = gb.find_submission_notebook(STEM, A, student)
                nb.late_submission_penalty = info.get("penalty")
        gb.db.commit()


def test_a_late_canvas_file_loses_one_days_share_through_nbgraders_preprocessor(course, tmp_path):
    from nbgrader.preprocessors import AssignLatePenalties

    with_duedate(course)
    lms.collect_archive(
        course,
        A,
        archive(
            tmp_path / "s.zip",
            {f"roefred_LATE_555_2_{NB}": notebook("late"), f"doejane_12345_1_{NB}": notebook("on time")},
        ),
    )
    stamps = {s: parse_utc((course / "submitted" / s / A / "timestamp.txt").read_text()) for s in ("555", "12345")}
    (course / "gradebook.db").unlink()  # the collect made one with the due date only; build the graded one
    graded_gradebook(course, {s: {"score": 30.0, "timestamp": stamps[s]} for s in stamps}, duedate=parse_utc(DUE))
    config = lms.course_config(course)
    for student in stamps:
        resources = {
            "nbgrader": {
                "notebook": STEM,
                "assignment": A,
                "student": student,
                "db_url": f"sqlite:///{course / 'gradebook.db'}",
            }
        }
        AssignLatePenalties(config=config).preprocess(nbformat.v4.new_notebook(), resources)
    with record.gradebook(course) as gb:
        assert gb.find_submission_notebook(STEM, A, "555").late_submission_penalty == pytest.approx(3.0)
        assert gb.find_submission_notebook(STEM, A, "12345").late_submission_penalty is None


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_canvas_export_has_canvas_gradebook_layout(course):
    graded_gradebook(
        course,
        {
            "12345": {"name": {"first_name": "Jane", "last_name": "Doe"}, "score": 30.0, "penalty": 3.0},
            "555": {"score": 35.0},
            "jdoe": {"name": {"first_name": "John", "last_name": "Roe"}, "score": 12.5},
            "777": {"name": {"first_name": "Nobody", "last_name": "Submitted"}},
        },
    )
    rows = read_csv(lms.canvas_export(course))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", A]  # the lesson is left out
    assert rows[1] == ["    Points Possible", "", "", "", "", "35"]
    assert rows[2:] == [
        ["Doe, Jane", "12345", "", "", "", "27"],  # 30 less the late penalty of 3
        ["Roe, John", "", "", "jdoe", "", "12.5"],  # exchange user name: SIS Login ID
        ["Submitted, Nobody", "777", "", "", "", ""],  # no submission: Canvas keeps its grade
        ["", "555", "", "", "", "35"],
    ]
    named = read_csv(lms.canvas_export(course, columns={A: "Batch Normalization (4711)"}))
    assert named[0][-1] == "Batch Normalization (4711)"


def hand_in(exchange, student, when: str, files: dict) -> Path:
    """A folder in the exchange's inbound/ as ``nbgrader submit`` writes it (the student writes it all)."""
    folder = exchange / "batchnorm" / "inbound" / f"{student}+{A}+{when}"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def exchange(tmp_path, monkeypatch):
    root = tmp_path / "exchange"
    (root / "batchnorm" / "inbound").mkdir(parents=True)
    monkeypatch.setenv("BNLAB_EXCHANGE", str(root))
    return root


def test_exchange_collect_never_touches_the_lms_inbox_and_backs_up_what_it_replaces(course, exchange, capsys):
    me = getpass.getuser()
    inbox = course / "downloaded" / A / "archive"
    inbox.mkdir(parents=True)
    leftover = archive(inbox / "submissions.zip", {f"doejane_12345_1_{NB}": notebook("canvas")})
    mine = course / "submitted" / me / A / NB
    mine.parent.mkdir(parents=True)
    mine.write_text(notebook("fixed by hand"))
    hand_in(exchange, me, "2026-12-01 10:00:00.000000 UTC", {NB: notebook("from the exchange")})
    assert lms.main(["collect", A, "--course", str(course)]) == 0
    out = capsys.readouterr().out
    assert leftover.exists() and not (course / "submitted" / "12345").exists()
    assert f"make collect ARCHIVE=downloaded/{A}/archive/submissions.zip" in out
    assert submitted(course, me) == notebook("from the exchange")
    backups = list((course / "submitted" / ".backup").glob(f"*/*/{A}/{NB}"))
    assert len(backups) == 1 and backups[0].read_text() == notebook("fixed by hand")
    assert f"the previous files are kept in {backups[0].parent.relative_to(course)}/" in out
    assert lms.main(["collect", A, "--course", str(course)]) == 0  # again: nothing changes
    assert "unchanged " + me in capsys.readouterr().out


def test_the_exchange_time_is_the_kernels_not_the_students(course, exchange, capsys):
    """A student writes timestamp.txt (and the time in the folder's name) themselves: both are ignored; the
    latest ctime of what they handed in is the time, and it decides which hand-in is the latest."""
    me = getpass.getuser()
    with_duedate(course, "2026-01-01 00:00:00 UTC")  # long past: a hand-in written now is late
    hand_in(exchange, me, "2030-01-01 00:00:00.000000 UTC", {NB: notebook("first"), "timestamp.txt": "2030-01-01"})
    time.sleep(0.05)
    second = hand_in(
        exchange,
        me,
        "2025-12-31 23:00:00.000000 UTC",
        {NB: notebook("second"), "timestamp.txt": "2025-12-31 23:00:00.000000 UTC"},  # forged: before the due date
    )
    before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert lms.main(["collect", A, "--course", str(course)]) == 0
    out = capsys.readouterr().out
    assert submitted(course, me) == notebook("second")  # the latest by the kernel's clock, not by its name
    stamp = parse_utc(submitted(course, me, "timestamp.txt"))
    written = datetime.datetime.fromtimestamp(os.lstat(second / NB).st_ctime, datetime.timezone.utc)
    assert abs(stamp - written.replace(tzinfo=None)) < datetime.timedelta(seconds=1)
    assert stamp > parse_utc("2026-01-01 00:00:00 UTC") and stamp >= before - datetime.timedelta(seconds=60)
    assert "claims 2025-12-31 23:00:00 UTC" in out and "the kernel's clock" in out


def test_a_malformed_timestamp_in_the_exchange_loses_nothing(course, exchange, capsys):
    me = getpass.getuser()
    hand_in(exchange, me, "late? never", {NB: notebook("mine"), "timestamp.txt": "late? never"})
    assert lms.main(["collect", A, "--course", str(course)]) == 0
    assert submitted(course, me) == notebook("mine")
    parse_utc(submitted(course, me, "timestamp.txt"))  # a time nbgrader reads
    assert "holds no time" in capsys.readouterr().out


def test_the_exchange_collects_regular_files_only_and_names_the_rest(course, exchange, tmp_path, capsys):
    me = getpass.getuser()
    secret = tmp_path / "secret.txt"
    secret.write_text("INSTRUCTOR SECRET")
    folder = hand_in(exchange, me, "2026-12-01 10:00:00.000000 UTC", {NB: notebook("mine"), "notes.txt": "ok"})
    (folder / "link.txt").symlink_to(secret)
    (folder / "environ").symlink_to("/proc/self/environ")
    (folder / "up").symlink_to("../..", target_is_directory=True)
    os.mkfifo(folder / "pipe")
    os.link(secret, folder / "hard.txt")
    inbound = exchange / "batchnorm" / "inbound"
    (inbound / f"{me}+{A}+2027-01-01 00:00:00.000000 UTC").symlink_to(tmp_path, target_is_directory=True)
    assert lms.main(["collect", A, "--course", str(course)]) == 0
    out = capsys.readouterr().out
    got = sorted(p.name for p in (course / "submitted" / me / A).iterdir())
    assert got == sorted([NB, "notes.txt", "timestamp.txt"])
    for name in ("link.txt", "environ", "up", "pipe", "hard.txt"):
        assert name in out, out
    assert f"NOT COLLECTED: {me}+{A}+2027-01-01 00:00:00.000000 UTC: not a folder" in out
    assert "SECRET" not in "".join(p.read_text() for p in (course / "submitted" / me / A).iterdir())


def test_an_archive_s_links_pipes_and_devices_are_named_and_not_collected(course, tmp_path):
    path = tmp_path / "submissions.tar"
    with tarfile.open(path, "w") as tar:
        data = notebook("mine").encode()
        info = tarfile.TarInfo(f"doejane_12345_1_{NB}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name, kind, target in [
            ("roe_777_1_" + NB, tarfile.SYMTYPE, "../../source/x.ipynb"),
            ("doe_888_1_" + NB, tarfile.LNKTYPE, f"doejane_12345_1_{NB}"),
            ("pipe_999_1_" + NB, tarfile.FIFOTYPE, ""),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    collected = lms.collect_archive(course, A, path)
    assert collected.students == ["12345"]
    refused = dict(collected.refused)
    assert refused["roe_777_1_" + NB].startswith("a symbolic link") and refused["doe_888_1_" + NB].startswith(
        "a hard link"
    )
    assert refused["pipe_999_1_" + NB] == "a named pipe (FIFO)"
    assert "NOT COLLECTED, 3 entr(ies) that are not regular files" in lms.summary(collected, course)
    linked = tmp_path / "linked.zip"
    with zipfile.ZipFile(linked, "w") as zf:
        info = zipfile.ZipInfo(f"eve_4242_1_{NB}")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/proc/self/environ")
    collected = lms.collect_archive(course, A, linked)
    assert collected.students == [] and dict(collected.refused)[f"eve_4242_1_{NB}"].startswith("a symbolic link")
