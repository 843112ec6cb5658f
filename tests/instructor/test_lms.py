"""Collecting submissions (an LMS archive, nbgrader's exchange) and exporting grades, on a scratch course.

No notebook is executed here: these tests check where files land and what the exports contain.
"""

from __future__ import annotations

import getpass
import re
import runpy
import shutil
import zipfile

import nbformat
import pytest

from bnlab import exercise
from bnlab.instructor import lms, notebooks, scratch
from bnlab.instructor.autograde import record
from bnlab.instructor.nbgrader import nbgrader
from bnlab.instructor.notebooks import ROOT

A, NB = exercise.ASSIGNMENT, exercise.FILENAME
pytestmark = pytest.mark.slow  # runs nbgrader (generate, zip_collect, the exchange, export): about a minute


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = scratch.create_course(tmp_path_factory.mktemp("lms"))
    scratch.create_course(course, assignment="batch_norm_lesson")  # the ungraded lesson, as in the real course
    return course


def test_canvas_pattern_is_the_one_configured():
    config = {"get_config": lambda: _Config()}
    runpy.run_path(str(ROOT / "nbgrader_config.py"), init_globals=config)
    assert _Config.seen["FileNameCollectorPlugin.named_regexp"] == lms.CANVAS_PATTERN
    assert _Config.seen["ExportApp.plugin_class"] == "bnlab.instructor.exports.GradedCsvExportPlugin"
    assert _Config.seen["AssignLatePenalties.plugin_class"] == "bnlab.instructor.latework.LatePenalty"
    assert _Config.seen["LatePenalty.duedates"] == {}  # no due date unless the instructor sets one
    assert set(k.split(".", 1)[1] for k in _Config.seen if k.startswith("LatePenalty.")) <= set(
        lms.LatePenalty.class_trait_names()
    )


class _Config:
    seen: dict = {}

    def __getattr__(self, section):
        return _Section(section)


class _Section:
    def __init__(self, name):
        object.__setattr__(self, "name", name)

    def __setattr__(self, key, value):
        _Config.seen[f"{self.name}.{key}"] = value

    def __getattr__(self, key):
        return _Section(f"{self.name}.{key}")


@pytest.mark.parametrize(
    "name,student,late,attempt",
    [
        (f"doejane_12345_67890_{NB}", "12345", False, None),
        (f"doejane_LATE_12345_67891_{NB}", "12345", True, None),
        (f"doejane_late_12345_67891_{NB}", "12345", True, None),
        (f"smithjohn_222_3333_{NB[:-6]}-1.ipynb", "222", False, "1"),
        (f"smithjohn_late_222_3334_{NB[:-6]}-12.ipynb", "222", True, "12"),
        (f"o'brienann_7_8_{NB}", "7", False, None),
        (f"müllerjürgen_12345_67890_{NB}", "12345", False, None),
        (f"ДОСТОЕВСКИЙФЁДОР_9_10_{NB}", "9", False, None),
    ],
)
def test_canvas_names_give_the_student_and_the_notebook(name, student, late, attempt):
    match = re.match(lms.CANVAS_PATTERN, f"/x/extracted/submissions_2026/{name}")
    assert match and match["student_id"] == student and match["file_id"] == NB[:-6]
    assert bool(match["late"]) == late and match["attempt"] == attempt


@pytest.mark.parametrize(
    "name", ["readme.txt", NB, f"doejane_{NB}", f"doejane_12345_{NB}", f"doejane_12345_1_{NB}.txt"]
)
def test_names_that_are_not_canvas_submissions_do_not_match(name):
    assert re.match(lms.CANVAS_PATTERN, f"/x/extracted/{name}") is None


def test_collect_puts_a_canvas_archive_into_submitted(course, tmp_path, capsys):
    release = nbformat.writes(scratch.release_notebook(course))
    archive = tmp_path / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"doejane_12345_67890_{NB}", release)
        zf.writestr(f"roefred_LATE_555_67891_{NB}", release)
        zf.writestr("readme_from_canvas.txt", "not a submission")
    assert lms.main(["collect", A, "--course", str(course), "--archive", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "new: 12345, 555" in out and "    readme_from_canvas.txt" in out and "marked LATE by Canvas: 555" in out
    for student in ("12345", "555"):
        assert nbformat.read(course / "submitted" / student / A / NB, as_version=4).cells


def test_nbgrader_zip_collect_reads_the_same_names(course, tmp_path):
    """The configured pattern also works for ``nbgrader zip_collect`` itself (its extra groups are ignored)."""
    inbox = tmp_path / "zc"
    shutil.copytree(course, inbox, ignore=shutil.ignore_patterns("submitted", "downloaded"))
    (inbox / "downloaded" / A / "archive").mkdir(parents=True)
    release = nbformat.writes(scratch.release_notebook(course))
    (inbox / "downloaded" / A / "archive" / f"müllerjürgen_late_31_32_{NB[:-6]}-2.ipynb").write_text(release)
    result = nbgrader("zip_collect", A, root=inbox, check=False)
    assert (inbox / "submitted" / "31" / A / NB).exists(), result.stdout + result.stderr


def test_exchange_round_trip_release_fetch_submit_collect(course, tmp_path, monkeypatch, capsys):
    exchange, home = tmp_path / "exchange", tmp_path / "student"
    exchange.mkdir()
    exchange.chmod(0o777)
    home.mkdir()
    env = {"BNLAB_EXCHANGE": str(exchange)}
    nbgrader("release_assignment", A, "--force", root=course, env=env)
    student = ["--course=batchnorm", f"--Exchange.root={exchange}"]
    nbgrader("fetch_assignment", A, *student, root=home)
    fetched = home / A / NB
    nb = nbformat.read(fetched, as_version=4)
    assert not any("BEGIN HIDDEN TESTS" in c.source or "BEGIN SOLUTION" in c.source for c in nb.cells)
    nb = notebooks.fill_in(nb, {"keras_layers": "# my answer\n"})
    nbformat.write(nb, fetched)
    nbgrader("submit", A, *student, root=home)
    monkeypatch.setenv("BNLAB_EXCHANGE", str(exchange))
    assert lms.main(["collect", A, "--course", str(course)]) == 0  # make collect without ARCHIVE
    collected = course / "submitted" / getpass.getuser() / A / NB
    assert collected.exists(), capsys.readouterr().out
    assert notebooks.answer_cells(nbformat.read(collected, as_version=4))["keras_layers"] == "# my answer\n"
    assert (collected.parent / "timestamp.txt").exists()


def test_export_leaves_out_the_ungraded_lesson(course):
    record.merge(
        course,
        {"student": "ann", "assignment": A, "status": "graded", "reason": "", "notebooks": {}, "seconds": 1.0},
        {},
        "d",
    )
    grades, per_question, canvas = lms.export(course, A)
    text = grades.read_text()
    assert "batch_norm_lesson" not in text and f"{A},,,ann," in text
    with record.gradebook(course) as gb:
        assert "batch_norm_lesson" in [a.name for a in gb.assignments]  # it is in the gradebook, just not exported
    header, *rows = per_question.read_text().splitlines()
    graded = [c for c in notebooks.read().cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert header.count("(max ") == len(graded) and any(r.startswith("ann,0.0,") for r in rows)
    header, points, *students = canvas.read_text().splitlines()
    assert header == f"Student,ID,SIS User ID,SIS Login ID,Section,{A}" and points.startswith(
        "    Points Possible,,,,,"
    )
    assert ",,,ann,,0" in students  # an exchange user name is the SIS login; nbgrader's score 0
