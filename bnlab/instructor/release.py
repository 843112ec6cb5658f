"""Generate the student notebooks (release/) and the solutions (solutions/) from source/.

``python -m bnlab.instructor.release`` (``make release``) runs ``nbgrader generate_assignment`` and
``nbgrader generate_solution`` for every assignment under source/. ``--check`` generates into a
scratch copy of the course instead and fails, naming the files, when the committed release/ or
solutions/ differ from what source/ gives (CI runs it through the tests).

A source notebook whose metadata says ``"bnlab": {"handout": "after_deadline"}`` (the lesson's TF1
appendix, a worked solution of the exercise in TF1 code) is left out of release/, so neither
nbgrader's exchange nor the student bundle hands it out before grading; its copy in solutions/ is the
handout the instructor gives students once the deadline has passed.

Generation runs in a scratch copy (source/, the config, a copy of gradebook.db), swapped in only when
every nbgrader step succeeded: a release nbgrader refuses (graded cells added or removed after students
submitted) changes nothing and says what to do. ``--add-cells`` (``make add-cells``) backs the gradebook
up (:func:`backup_gradebook`), registers the new cells as nbgrader's ``SaveCells`` would (existing
submissions get them at 0 points, flagged, for ``make regrade``), then releases; every grade is kept.
Removed cells are refused unless ``--drop-cells`` (their grades are deleted, after the backup).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bnlab.instructor.autograde import record
from bnlab.instructor.nbgrader import nbgrader
from bnlab.instructor.notebooks import ROOT

GENERATED = ("release", "solutions")
AFTER_DEADLINE = "after_deadline"  # the value of a notebook's metadata.bnlab.handout kept out of release/
GRADEBOOK = record.GRADEBOOK
BACKUPS = "backups"
KEEP_BACKUPS = 10
KINDS = ("grade", "solution", "task", "source")  # the cells nbgrader's SaveCells stores, by kind


class ReleaseError(RuntimeError):
    """The release could not be made; nothing was changed (the message says what to do)."""


def assignments(root: Path = ROOT) -> list[str]:
    return sorted(p.name for p in (root / "source").iterdir() if p.is_dir() and not p.name.startswith("."))


def after_deadline(root: Path = ROOT) -> list[Path]:
    """The source notebooks (relative to source/) handed out only after the deadline, from solutions/."""
    found = []
    for path in sorted((root / "source").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        meta = json.loads(path.read_text()).get("metadata", {}).get("bnlab", {})
        if meta.get("handout") == AFTER_DEADLINE:
            found.append(path.relative_to(root / "source"))
    return found


def released_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks (relative to source/) that release/ must hold: every source notebook but the handouts."""
    later = set(after_deadline(root))
    return [
        p.relative_to(root / "source")
        for p in sorted((root / "source").rglob("*.ipynb"))
        if ".ipynb_checkpoints" not in p.parts and p.relative_to(root / "source") not in later
    ]


def generate(root: Path = ROOT, verbose: bool = True) -> None:
    """(Re)generate release/ and solutions/ in ``root`` from its source/; handouts stay out of release/."""
    later = after_deadline(root)
    for name in assignments(root):
        if verbose:
            print(f"generating release/{name} and solutions/{name} ...", flush=True)
        nbgrader("generate_assignment", name, "--force", root=root)
        nbgrader("generate_solution", name, "--force", root=root)
    for rel in later:
        (root / "release" / rel).unlink(missing_ok=True)
        if verbose:
            print(f"  {rel}: after the deadline only (solutions/{rel}), not in release/", flush=True)


def _normalized(path: Path):
    if path.suffix == ".ipynb":
        return json.loads(path.read_text())
    return path.read_bytes()


def stale_files(root: Path = ROOT) -> list[str]:
    """Files of release/ and solutions/ that differ from a fresh generation (missing, extra or changed)."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        shutil.copytree(root / "source", scratch / "source")
        shutil.copy(root / "nbgrader_config.py", scratch / "nbgrader_config.py")
        generate(scratch, verbose=False)
        problems = []
        for top in GENERATED:
            fresh = {p.relative_to(scratch) for p in (scratch / top).rglob("*") if p.is_file()}
            committed = {
                p.relative_to(root)
                for p in (root / top).rglob("*")
                if p.is_file() and ".ipynb_checkpoints" not in p.parts
            }
            for rel in sorted(fresh | committed):
                if rel not in committed:
                    problems.append(f"{rel}: missing")
                elif rel not in fresh:
                    problems.append(f"{rel}: not generated from source/ (remove it)")
                elif _normalized(scratch / rel) != _normalized(root / rel):
                    problems.append(f"{rel}: differs from what source/ generates")
        return problems


# The gradebook: backups, and graded cells added or removed after students submitted.


def backup_gradebook(course: Path = ROOT, keep: int = KEEP_BACKUPS) -> Path | None:
    """Copy ``course/gradebook.db`` to ``course/backups/gradebook-TIMESTAMP.db`` and return that path
    (None without a gradebook); only the newest ``keep`` backups are kept."""
    source = Path(course) / GRADEBOOK
    if not source.is_file():
        return None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = Path(course) / BACKUPS / f"gradebook-{stamp}.db"
    record.copy_database(source, target)
    for old in sorted(target.parent.glob("gradebook-*.db"))[:-keep]:
        old.unlink()
    return target


@dataclasses.dataclass
class CellChange:
    """How a source notebook's stored cells differ from the gradebook's, for a notebook with submissions."""

    assignment: str
    notebook: str
    submissions: int
    added: dict  # kind -> {grade_id: cell}
    removed: dict  # kind -> {grade_id}

    new = property(lambda self: sorted({n for names in self.added.values() for n in names}))
    gone = property(lambda self: sorted({n for names in self.removed.values() for n in names}))


def _stored_cells(path: Path) -> dict:
    """``{kind: {grade_id: cell}}``: the cells of the source notebook at ``path`` SaveCells would store."""
    import nbformat
    from nbgrader import utils

    tests = {
        "grade": utils.is_grade,
        "solution": utils.is_solution,
        "task": utils.is_task,
        "source": lambda c: utils.is_grade(c) or utils.is_solution(c) or utils.is_locked(c) or utils.is_task(c),
    }
    cells = [c for c in nbformat.read(path, as_version=4).cells if "nbgrader" in c.metadata]
    return {kind: {c.metadata.nbgrader["grade_id"]: c for c in cells if test(c)} for kind, test in tests.items()}


def cell_changes(course: Path = ROOT) -> list[CellChange]:
    """The notebooks with submissions whose graded cells in source/ differ from the gradebook's
    (what makes nbgrader refuse: "Cannot add or remove cells ... because there are submissions")."""
    from nbgrader.api import MissingEntry

    if not (Path(course) / GRADEBOOK).is_file():
        return []
    changes = []
    with record.gradebook(course) as gb:
        for assignment in assignments(course):
            for path in sorted((Path(course) / "source" / assignment).glob("*.ipynb")):
                try:
                    stored = gb.find_notebook(path.stem, assignment)
                except MissingEntry:  # never generated: nothing to compare
                    continue
                if not stored.submissions:
                    continue
                new = _stored_cells(path)
                old = {kind: {c.name for c in getattr(stored, f"{kind}_cells")} for kind in KINDS}
                added = {k: {n: c for n, c in new[k].items() if n not in old[k]} for k in KINDS}
                removed = {k: old[k] - set(new[k]) for k in KINDS}
                if any(added.values()) or any(removed.values()):
                    changes.append(CellChange(assignment, path.stem, len(stored.submissions), added, removed))
    return changes


def explain(changes: list[CellChange]) -> str:
    """What changed in source/ and what the instructor can do, in plain words."""
    lines = []
    for change in changes:
        where = (
            f"source/{change.assignment}/{change.notebook}.ipynb ({change.submissions} submission(s) in the gradebook)"
        )
        if change.new:
            lines.append(f"{where}: new graded cell(s) {', '.join(change.new)}.")
        if change.gone:
            lines.append(f"{where}: removed cell(s) {', '.join(change.gone)}.")
    lines.append("nbgrader cannot add or remove graded cells once students have submitted. To keep every grade:")
    if any(c.new for c in changes):
        lines.append(
            "  make add-cells   registers the new cells (gradebook.db backed up first; existing submissions "
            "get them at 0 points, flagged), then releases; then `make regrade`."
        )
    if any(c.gone for c in changes):
        lines.append(
            "  Put the removed cells back in source/, or `make add-cells DROP_CELLS=1` to delete them and "
            "their grades from the gradebook (backed up first)."
        )
    return "\n".join(lines)


def _cell_info(kind: str, cell) -> dict:
    """The fields SaveCells records for a new cell (generate_assignment then updates them)."""
    from nbgrader import utils

    if kind in ("grade", "task"):
        return {"max_score": float(cell.metadata.nbgrader["points"]), "cell_type": cell.cell_type}
    if kind == "source":
        return {
            "cell_type": cell.cell_type,
            "locked": utils.is_locked(cell),
            "source": cell.source,
            "checksum": cell.metadata.nbgrader.get("checksum"),
        }
    return {}


def _add_cells(gb, change: CellChange) -> None:
    """Register ``change.added`` in the gradebook, and give every existing submission its grades and
    comments (0 points, flagged for grading), as nbgrader's add_submission would have."""
    from nbgrader.api import Comment, Grade

    notebook = gb.find_notebook(change.notebook, change.assignment)
    for kind in KINDS:
        for name, cell in change.added[kind].items():
            stored = getattr(gb, f"update_or_create_{kind}_cell")(
                name, change.notebook, change.assignment, **_cell_info(kind, cell)
            )
            for submitted in notebook.submissions:
                if kind in ("grade", "task"):
                    gb.db.add(Grade(cell_id=stored.id, notebook=submitted, auto_score=0.0, needs_manual_grade=True))
                if kind in ("solution", "task"):
                    gb.db.add(Comment(cell_id=stored.id, notebook=submitted))
                submitted.flagged = True
    gb.db.commit()


def _drop_cells(gb, change: CellChange) -> None:
    """Delete ``change.removed`` from the gradebook, with their grades and comments."""
    for kind in KINDS:
        for name in change.removed[kind]:
            cell = getattr(gb, f"find_{kind}_cell")(name, change.notebook, change.assignment)
            for row in [*getattr(cell, "grades", []), *getattr(cell, "comments", [])]:
                gb.db.delete(row)
            gb.db.delete(cell)
    gb.db.commit()


def register_cells(course: Path, changes: list[CellChange], drop: bool = False) -> None:
    """Make ``course/gradebook.db`` agree with source/ on ``changes`` (added cells; removed ones with ``drop``)."""
    with record.gradebook(course) as gb:
        for change in changes:
            _add_cells(gb, change)
            if drop:
                _drop_cells(gb, change)


# Releasing in a scratch copy, swapped in only when every step succeeded.


def scratch_course(root: Path, scratch: Path) -> Path:
    """A copy of the course in ``root`` for generating: source/, the config, a copy of gradebook.db."""
    shutil.copytree(root / "source", scratch / "source", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copy(root / "nbgrader_config.py", scratch / "nbgrader_config.py")
    if (root / GRADEBOOK).is_file():
        record.copy_database(root / GRADEBOOK, scratch / GRADEBOOK)
    return scratch


def _replace(fresh: Path, target: Path) -> None:
    """Put the folder ``fresh`` where ``target`` is, the old one moved aside until the new one is in."""
    staged, old = target.with_name(f".{target.name}.new"), target.with_name(f".{target.name}.old")
    for leftover in (staged, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(fresh, staged)
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def swap_in(scratch: Path, root: Path) -> None:
    """Move the generated release/ and solutions/ of every assignment, and the gradebook, into ``root``."""
    for top in GENERATED:
        for name in assignments(scratch):
            if (scratch / top / name).is_dir():
                (root / top).mkdir(exist_ok=True)
                _replace(scratch / top / name, root / top / name)
    if (scratch / GRADEBOOK).is_file():
        record.copy_database(scratch / GRADEBOOK, root / f".{GRADEBOOK}.new")
        os.replace(root / f".{GRADEBOOK}.new", root / GRADEBOOK)


def _failed(error: RuntimeError, root: Path) -> ReleaseError:
    changes = cell_changes(root)
    why = explain(changes) if changes else f"nbgrader said:\n{str(error)[-3000:]}"
    return ReleaseError(f"release/, solutions/ and gradebook.db are unchanged.\n{why}")


def _version(path: Path):
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None


def generate_safely(root: Path = ROOT, verbose: bool = True, prepare=None) -> None:
    """:func:`generate` in a scratch copy of the course (``prepare(scratch)`` first, if given), swapped into
    ``root`` only when every step succeeded; raises :class:`ReleaseError`, with nothing changed, otherwise."""
    root = Path(root)
    with tempfile.TemporaryDirectory(prefix="bnlab-release-") as tmp:
        copied, scratch = _version(root / GRADEBOOK), scratch_course(root, Path(tmp))
        try:
            if prepare:
                prepare(scratch)
            generate(scratch, verbose=verbose)
        except RuntimeError as error:
            raise _failed(error, root) from None
        if _version(root / GRADEBOOK) != copied:  # a grading run wrote to it meanwhile: its grades win
            raise ReleaseError(
                "gradebook.db changed during the release (a grading run?). Nothing was changed: run it again."
            )
        swap_in(scratch, root)


def add_cells(root: Path = ROOT, drop: bool = False, verbose: bool = True) -> Path | None:
    """Register the graded cells added to source/ after students submitted (``drop``: delete the removed
    ones), then release; return the gradebook's backup (None when nothing needed registering)."""
    root = Path(root)
    changes = cell_changes(root)
    if not changes:
        print("The gradebook already has every graded cell of source/: `make release` needs no add-cells.")
        return None
    removed = [name for c in changes for name in c.gone]
    if removed and not drop:
        raise ReleaseError(
            f"refused: cell(s) {', '.join(removed)} were removed from source/, and removing them "
            f"deletes their grades. Nothing was changed.\n" + explain(changes)
        )
    backup = backup_gradebook(root)
    print(f"gradebook backed up to {backup}")
    generate_safely(root, verbose, prepare=lambda scratch: register_cells(scratch, changes, drop))
    for change in changes:
        if change.new:
            print(
                f"{change.notebook}: added {', '.join(change.new)}: {change.submissions} "
                f"submission(s) get them at 0 points, flagged; `make regrade` grades them."
            )
        if drop and change.gone:
            print(f"{change.notebook}: deleted {', '.join(change.gone)} and their grades.")
    return backup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that release/ and solutions/ are up to date")
    parser.add_argument("--add-cells", action="store_true", help="register graded cells new in source/, then release")
    parser.add_argument("--drop-cells", action="store_true", help="with --add-cells: delete removed cells and grades")
    parser.add_argument("--backup-gradebook", action="store_true", help="only copy gradebook.db into backups/")
    parser.add_argument("--course", type=Path, default=ROOT, help="the course folder (default: this repository)")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files(args.course)
        if problems:
            print("release/ or solutions/ are stale; run `make release` and commit:\n  " + "\n  ".join(problems))
            return 1
        print("release/ and solutions/ are up to date with source/.")
        return 0
    if args.backup_gradebook:
        backup = backup_gradebook(args.course)
        print(f"gradebook backed up to {backup}" if backup else "no gradebook.db to back up")
        return 0
    try:
        if args.add_cells:
            if add_cells(args.course, drop=args.drop_cells) is None:
                return 0
        else:
            generate_safely(args.course)
    except ReleaseError as error:
        print(f"make {'add-cells' if args.add_cells else 'release'}: {error}", file=sys.stderr)
        return 1
    print("done: commit release/ and solutions/.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
