"""Editing the assignment after students submitted: nothing is lost, and there is a way forward.

Each test works in a scratch course holding one small assignment (``tiny``: an answer cell, a test
cell, a hand-graded written answer) with the course's own ``nbgrader_config.py``; nbgrader generates
it for real, and a student's submission is recorded through nbgrader's API (nothing is executed).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import nbformat
import pytest

from bnlab.instructor import release
from bnlab.instructor.autograde import record

ROOT = Path(__file__).resolve().parents[2]
TINY = Path("tiny") / "Tiny.ipynb"


def _cell(kind: str, source: str, grade_id: str, **meta) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    cell.metadata["nbgrader"] = {
        "schema_version": 3,
        "grade": False,
        "solution": False,
        "locked": False,
        "grade_id": grade_id,
        **meta,
    }
    return cell


TEST_MORE = _cell("code", "assert double(3) == 6;", "test_double_more", grade=True, points=2)


def _write_source(course: Path, cells: list) -> None:
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny"), *cells]
    (course / "source" / TINY).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, course / "source" / TINY)


def _source_cells() -> list:
    return [
        _cell(
            "code",
            "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
            "answer_double",
            solution=True,
        ),
        _cell("code", "assert double(2) == 4;", "test_double", grade=True, points=1),
        _cell("markdown", "Why?", "why", solution=True, grade=True, points=2),
    ]


@pytest.fixture(scope="module")
def submitted_template(tmp_path_factory) -> Path:
    """A generated tiny course whose gradebook has student s1's submission: 1/1 automatic, 1.5/2 by hand."""
    course = tmp_path_factory.mktemp("template")
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    _write_source(course, _source_cells())
    release.generate_safely(course, verbose=False)
    with record.gradebook(course) as gb:
        gb.update_or_create_student("s1")
        gb.add_submission("tiny", "s1")
        for name, score in (("test_double", 1.0), ("why", 1.5)):
            grade = gb.find_grade(name, "Tiny", "tiny", "s1")
            grade.auto_score, grade.manual_score = (score, None) if name == "test_double" else (None, score)
            grade.needs_manual_grade = False
        gb.db.commit()
    return course


@pytest.fixture
def course(submitted_template, tmp_path) -> Path:
    return Path(shutil.copytree(submitted_template, tmp_path / "course"))


def _digests(course: Path) -> dict:
    files = [p for top in ("release", "solutions") for p in (course / top).rglob("*") if p.is_file()]
    return {
        str(p.relative_to(course)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in [*files, course / "gradebook.db"]
    }


def _dump(path: Path) -> list[str]:
    """The SQL text of a database (a backup is the same data, not the same bytes)."""
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def _grades(course: Path) -> dict:
    with record.gradebook(course) as gb:
        notebook = gb.find_submission_notebook("Tiny", "tiny", "s1")
        return {
            "flagged": notebook.flagged,
            **{g.name: (g.auto_score, g.manual_score, g.needs_manual_grade) for g in notebook.grades},
        }


# --------------------------------------------------------------------------------------------
# Backups (no nbgrader)
# --------------------------------------------------------------------------------------------


def test_backup_gradebook_copies_it_under_backups_and_keeps_the_last_ten(tmp_path):
    assert release.backup_gradebook(tmp_path) is None
    with sqlite3.connect(tmp_path / "gradebook.db") as db:
        db.execute("CREATE TABLE grade (score REAL)")
    paths = []
    for score in range(12):
        with sqlite3.connect(tmp_path / "gradebook.db") as db:
            db.execute("INSERT INTO grade VALUES (?)", (score,))
        paths.append(release.backup_gradebook(tmp_path))
    kept = sorted((tmp_path / "backups").glob("gradebook-*.db"))
    assert kept == paths[2:] and len(set(paths)) == 12
    with sqlite3.connect(kept[-1]) as db:
        assert db.execute("SELECT count(*) FROM grade").fetchone() == (12,)
    assert (tmp_path / "gradebook.db").is_file()


def test_make_clean_keeps_the_gradebook_and_backs_it_up(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    os.symlink(ROOT / "bnlab", tmp_path / "bnlab")
    with sqlite3.connect(tmp_path / "gradebook.db") as db:
        db.execute("CREATE TABLE grade (score REAL)")
    (tmp_path / ".venv").mkdir()
    (tmp_path / "autograded" / "s1").mkdir(parents=True)
    python = str(ROOT / ".venv" / "bin" / "python")
    result = subprocess.run(
        ["make", "clean", f"PYTHON={python}"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    backups = list((tmp_path / "backups").glob("gradebook-*.db"))
    assert len(backups) == 1 and str(backups[0]) in result.stdout
    assert (tmp_path / "gradebook.db").is_file() and (tmp_path / "autograded" / "s1").is_dir()
    assert not (tmp_path / ".venv").exists() and "Kept gradebook.db" in result.stdout


# --------------------------------------------------------------------------------------------
# A release that cannot be made changes nothing
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_release_nbgrader_refuses_changes_nothing_and_names_the_new_cell(course, capsys):
    before = _digests(course)
    _write_source(course, [*_source_cells(), TEST_MORE])
    assert release.main(["--course", str(course)]) == 1
    err = capsys.readouterr().err
    assert "unchanged" in err and "test_double_more" in err and "make add-cells" in err
    assert _digests(course) == before  # the released notebook was deleted by nbgrader before
    assert not list(course.glob(".*.new")) and not list((course / "release").glob(".*"))


@pytest.mark.slow
def test_a_release_without_submissions_replaces_release_and_solutions(submitted_template, tmp_path):
    course = tmp_path / "fresh"
    shutil.copytree(submitted_template / "source", course / "source")
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    (course / "release" / "tiny").mkdir(parents=True)
    (course / "release" / "tiny" / "Old.ipynb").write_text("{}")
    release.generate_safely(course, verbose=False)
    assert sorted(p.name for p in (course / "release" / "tiny").iterdir()) == ["Tiny.ipynb"]
    assert (course / "solutions" / TINY).is_file() and (course / "gradebook.db").is_file()
    assert not [p for p in (course / "release").iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------------
# make add-cells
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_add_cells_registers_a_new_graded_cell_keeps_every_grade_and_regrade_scores_it(course, capsys):
    old_gradebook = _dump(course / "gradebook.db")
    _write_source(course, [*_source_cells(), TEST_MORE])
    assert release.main(["--course", str(course), "--add-cells"]) == 0
    out = capsys.readouterr().out
    backup = next((course / "backups").glob("gradebook-*.db"))
    assert f"backed up to {backup}" in out and _dump(backup) == old_gradebook
    assert "test_double_more" in out and "make regrade" in out
    released = nbformat.read(course / "release" / TINY, as_version=4)
    assert "test_double_more" in [c.metadata.get("nbgrader", {}).get("grade_id") for c in released.cells]
    assert _grades(course) == {
        "flagged": True,
        "test_double": (1.0, None, False),
        "why": (None, 1.5, False),
        "test_double_more": (0.0, None, True),
    }
    assert release.cell_changes(course) == []
    release.generate_safely(course, verbose=False)  # `make release` works again
    # `make regrade` writes each grading result through record.merge: the new cell gets its score
    result = {
        "student": "s1",
        "assignment": "tiny",
        "status": "graded",
        "reason": "",
        "notebooks": {
            "Tiny": {
                "grades": {
                    "test_double": {"auto_score": 1.0, "needs_manual_grade": False},
                    "test_double_more": {"auto_score": 2.0, "needs_manual_grade": False},
                    "why": {"auto_score": None, "needs_manual_grade": True},
                }
            }
        },
    }
    row = record.merge(course, result, {}, "digest")
    assert (row["score"], row["max_score"]) == (4.5, 5.0)
    assert _grades(course)["why"][1] == 1.5


@pytest.mark.slow
def test_add_cells_refuses_a_removed_cell_and_drop_cells_deletes_it_after_a_backup(course, capsys):
    before = _digests(course)
    _write_source(course, [c for c in _source_cells() if c.metadata.nbgrader["grade_id"] != "test_double"])
    with pytest.raises(release.ReleaseError, match="test_double.*removed.*Nothing was changed"):
        release.add_cells(course)
    assert _digests(course) == before and not (course / "backups").exists()
    assert release.add_cells(course, drop=True).is_file()
    assert "deleted test_double" in capsys.readouterr().out
    assert _grades(course) == {"flagged": False, "why": (None, 1.5, False)}
    released = nbformat.read(course / "release" / TINY, as_version=4)
    assert "test_double" not in [c.metadata.get("nbgrader", {}).get("grade_id") for c in released.cells]


def test_add_cells_with_nothing_new_changes_nothing(tmp_path, capsys):
    assert release.add_cells(tmp_path) is None
    assert "needs no add-cells" in capsys.readouterr().out and not (tmp_path / "backups").exists()


def _make(course: Path, *args: str) -> subprocess.CompletedProcess:
    """``make ARGS`` in ``course`` with the course's Makefile and library copied in (so that bnlab.instructor.release's
    ROOT is ``course``), the venv's python, and an install stamp that says set-up is done."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, course / name)
    if not (course / "bnlab").exists():
        shutil.copytree(ROOT / "bnlab", course / "bnlab", ignore=shutil.ignore_patterns("__pycache__"))
    (course / "stamp").touch()
    return subprocess.run(
        ["make", *args, f"BIN={ROOT / '.venv' / 'bin'}", f"STAMP={course / 'stamp'}"],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_instructors_commands_make_release_then_make_add_cells_then_make_release(course):
    _write_source(course, [*_source_cells(), TEST_MORE])
    before = _digests(course)
    refused = _make(course, "release")
    assert refused.returncode != 0 and "test_double_more" in refused.stderr and "make add-cells" in refused.stderr
    assert _digests(course) == before
    added = _make(course, "add-cells")
    assert added.returncode == 0, added.stderr
    assert "backed up to" in added.stdout and _grades(course)["why"] == (None, 1.5, False)
    assert _grades(course)["test_double_more"] == (0.0, None, True)
    again = _make(course, "release")
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_a_grade_written_during_a_release_is_not_overwritten(course):
    """A grading run that writes the gradebook while the release generates: the release gives way."""

    def grade_meanwhile(scratch):
        with record.gradebook(course) as gb:
            gb.find_grade("why", "Tiny", "tiny", "s1").manual_score = 2.0
            gb.db.commit()

    releases = {p: p.read_bytes() for p in (course / "release").rglob("*.ipynb")}
    with pytest.raises(release.ReleaseError, match="changed during the release.*Nothing was changed"):
        release.generate_safely(course, verbose=False, prepare=grade_meanwhile)
    assert _grades(course)["why"] == (None, 2.0, False)
    assert {p: p.read_bytes() for p in (course / "release").rglob("*.ipynb")} == releases
