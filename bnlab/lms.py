"""What goes in and out of a learning management system (Canvas, Moodle): archives in, grades out.

In: ``python -m bnlab.lms collect ASSIGNMENT --archive submissions.zip`` (``make collect
ARCHIVE=...``) places each student's notebook in ``submitted/STUDENT/ASSIGNMENT/``. File names are
read with nbgrader's own :class:`~nbgrader.plugins.FileNameCollectorPlugin` and the course's
``c.FileNameCollectorPlugin.named_regexp``, which ``nbgrader_config.py`` sets to
:data:`CANVAS_PATTERN` (Canvas names such as ``doejane_12345_67890_Batch_Normalization_Exercises.ipynb``:
name, Canvas user id, submission id, the file the student uploaded; ``_LATE_`` or ``_late_`` after
the name and a resubmission's ``-N`` suffix; names in any script). The Canvas user id becomes the
nbgrader student id. The rules, each printed in the summary:

- **duplicates**: of two files for one student and notebook, the latest attempt wins (the highest
  ``-N`` suffix; no suffix is attempt 0; a tie goes to the later name in sort order);
- **once**: after a collect the archive is kept in ``downloaded/ASSIGNMENT/collected/STAMP/`` (moved
  there when it came from ``downloaded/ASSIGNMENT/archive/``), and an archive with the same content
  is refused the next time (``--again`` collects it anyway);
- **backups**: a ``submitted/STUDENT/ASSIGNMENT/`` that would change is moved to
  ``submitted/.backup/STAMP/STUDENT/ASSIGNMENT/`` first (identical ones are left alone);
- **nothing dropped silently**: every file of the archive that names no student is listed;
- **late work**: Canvas names carry only a LATE marker, no time. With a due date (``c.LatePenalty.duedates``
  in ``nbgrader_config.py``, written into the gradebook as ``nbgrader db assignment add --duedate``
  would), ``timestamp.txt`` says *due date + 1 s* for a LATE file and *the due date* for the others:
  late or not, never by how much. :class:`LatePenalty` (``c.AssignLatePenalties.plugin_class``) then
  takes a share of the score per started day late, so a Canvas LATE file loses one day's share.

Without ``--archive``, ``collect`` runs ``nbgrader collect --update`` (nbgrader's exchange, which
writes real submission times) with the same backups, and only names what is left in
``downloaded/ASSIGNMENT/archive/``: the two routes never mix.

Out: :func:`export` writes nbgrader's ``grades.csv`` (``nbgrader export``, configured with
:class:`GradedCsvExportPlugin` so ungraded notebooks such as the lesson are left out),
``grades_per_question.csv`` (one row per student, one column per graded check, named
``grade_id (max N)``, then the total, the maximum and the autograding status) and
``grades_canvas.csv``, a Canvas gradebook import (:func:`canvas_export`).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import hashlib
import logging
import math
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.plugins.export import CsvExportPlugin
from traitlets import Dict, Float

CANVAS_PATTERN = (r"(?i)^(?:.*[/\\])?[^/\\]+?_(?P<late>late_)?(?P<student_id>\d+)_\d+_"
                  r"(?P<file_id>[^/\\]+?)(?:-(?P<attempt>\d+))?\.ipynb$")
PER_QUESTION = "grades_per_question.csv"
CANVAS_CSV = "grades_canvas.csv"
CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
POINTS_POSSIBLE = "    Points Possible"  # Canvas' own export writes the label with these four spaces
BACKUP = ".backup"
DAY = 86400.0


# --- late work ------------------------------------------------------------------------------------

class LatePenalty(LateSubmissionPlugin):
    """The course's late policy (``c.AssignLatePenalties.plugin_class``): due dates and the penalty.

    nbgrader calls :meth:`late_submission_penalty` only for a submission whose timestamp is after
    its due date in the gradebook, so without a due date nothing is ever late."""

    duedates = Dict({}, help="Due date per assignment, as nbgrader parses it (e.g. '2026-12-15 23:59:00 "
                              "Europe/Berlin'); `make collect` writes it into the gradebook.").tag(config=True)
    percent_per_day = Float(10.0, help="Share of the notebook's score lost per started day late.").tag(config=True)
    max_percent = Float(100.0, help="Largest share of the score lost.").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        if total_seconds_late <= 0 or not score:
            return None
        days = math.ceil(total_seconds_late / DAY)
        percent = min(self.max_percent, days * self.percent_per_day)
        self.log.info("%s is %d started day(s) late: %g%% of %g points", student_id, days, percent, score)
        return score * percent / 100.0


def course_config(course: Path):
    """The course's ``nbgrader_config.py`` as a traitlets Config (empty when the file is missing)."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    if not (Path(course) / "nbgrader_config.py").exists():
        return Config()
    return PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()


def sync_duedate(course: Path, assignment: str) -> datetime.datetime | None:
    """Write the config's due date of ``assignment`` into the gradebook; return the gradebook's (UTC).

    Without a due date in the config, the gradebook's own (``nbgrader db assignment add --duedate``,
    the formgrader) is kept."""
    from nbgrader.api import MissingEntry
    from nbgrader.utils import parse_utc

    from bnlab import graderecord

    wanted = course_config(course).LatePenalty.get("duedates", {}).get(assignment)
    if not wanted and not (Path(course) / "gradebook.db").exists():
        return None
    with graderecord.gradebook(course) as gb:
        if not wanted:
            try:
                return gb.find_assignment(assignment).duedate
            except MissingEntry:
                return None
        record = gb.update_or_create_assignment(assignment)
        if record.duedate != parse_utc(wanted):
            record.duedate = parse_utc(wanted)
            gb.db.commit()
            print(f"due date of {assignment}: {record.duedate} UTC (from nbgrader_config.py, now in the gradebook)")
        return record.duedate


def timestamp_for(late: bool, duedate: datetime.datetime | None) -> str | None:
    """``timestamp.txt`` of a Canvas file: the due date, + 1 s when Canvas marked it LATE; None without one."""
    if duedate is None:
        return None
    moment = duedate + datetime.timedelta(seconds=1) if late else duedate
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


# --- collecting an archive ------------------------------------------------------------------------

@dataclasses.dataclass
class Found:
    """One file of the archive that names a student."""

    name: str          # its path inside the archive
    path: Path         # where it was extracted
    student: str
    notebook: str      # the file name it gets in submitted/STUDENT/ASSIGNMENT/
    attempt: int
    late: bool


@dataclasses.dataclass
class Collected:
    """What a collect did. Every file of the archive is accounted for: collected (its student is new,
    replaced or unchanged), a duplicate's older attempt, or unmatched."""

    archive: Path
    stamp: str
    new: list = dataclasses.field(default_factory=list)          # students
    replaced: dict = dataclasses.field(default_factory=dict)     # student -> backup folder
    unchanged: list = dataclasses.field(default_factory=list)    # students
    duplicates: list = dataclasses.field(default_factory=list)   # (student, kept name, [dropped names])
    unmatched: list = dataclasses.field(default_factory=list)    # archive names that name no student
    unknown_notebooks: list = dataclasses.field(default_factory=list)  # (student, notebook) not in release/
    late: list = dataclasses.field(default_factory=list)         # students Canvas marked LATE
    duedate: datetime.datetime | None = None
    kept_at: Path | None = None

    @property
    def students(self) -> list[str]:
        return sorted([*self.new, *self.replaced, *self.unchanged])


def _stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")


def _safe_name(name: str) -> PurePosixPath | None:
    """The archive member's relative path, or None when it would leave the folder (absolute, ``..``)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    return path


def _members(archive: Path):
    """``(name, read)`` for each file of a zip or tar archive (``read()`` gives its bytes)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                if not member.is_dir():
                    yield member.filename, lambda m=member: zf.read(m)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if member.isfile():
                    yield member.name, lambda m=member: tf.extractfile(m).read()
    else:
        raise SystemExit(f"{archive} is neither a zip nor a tar archive")


def extract(archive: Path, target: Path) -> tuple[dict[str, Path], list[str]]:
    """Extract a zip or tar archive: ``({name: extracted path}, [names refused as unsafe])``."""
    files, unsafe = {}, []
    for name, read in _members(archive):
        relative = _safe_name(name)
        if relative is None:
            unsafe.append(name)
            continue
        path = target.joinpath(*relative.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(read())
        files[name] = path
    return files, unsafe


def collector(course: Path):
    """nbgrader's FileNameCollectorPlugin with the course's config (its warnings are ours to report)."""
    from nbgrader.plugins import FileNameCollectorPlugin

    log = logging.getLogger("bnlab.lms.collector")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    return FileNameCollectorPlugin(config=course_config(course), log=log)


def identify(course: Path, files: dict[str, Path]) -> tuple[list[Found], list[str]]:
    """Which files name a student (``Found``) and which do not (their archive names)."""
    plugin = collector(course)
    found, unmatched = [], []
    for name, path in sorted(files.items()):
        info = plugin.collect(str(path))
        if not info or not info.get("student_id") or not info.get("file_id"):
            unmatched.append(name)
            continue
        notebook = Path(info["file_id"]).stem + path.suffix
        found.append(Found(name, path, info["student_id"], notebook, int(info.get("attempt") or 0),
                           bool(info.get("late"))))
    return found, unmatched


def latest_attempts(found: list[Found]) -> tuple[list[Found], list[tuple[str, str, list[str]]]]:
    """One file per student and notebook, the latest attempt; and each resolved duplicate."""
    groups: dict[tuple[str, str], list[Found]] = {}
    for item in found:
        groups.setdefault((item.student, item.notebook), []).append(item)
    kept, duplicates = [], []
    for (student, _), items in sorted(groups.items()):
        items.sort(key=lambda f: (f.attempt, f.name))
        kept.append(items[-1])
        if len(items) > 1:
            duplicates.append((student, items[-1].name, [f.name for f in items[:-1]]))
    return kept, duplicates


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fingerprint(folder: Path) -> dict[str, str]:
    """``{relative path: SHA-256}`` of every file under ``folder`` (empty when it does not exist)."""
    return {name: hashlib.sha256(data).hexdigest() for name, data in _contents(folder).items()} if folder.exists() else {}


def backup(course: Path, student: str, assignment: str, stamp: str) -> Path:
    """Move ``submitted/STUDENT/ASSIGNMENT/`` to ``submitted/.backup/STAMP/STUDENT/ASSIGNMENT/``."""
    target = Path(course) / "submitted" / BACKUP / stamp / student / assignment
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(Path(course) / "submitted" / student / assignment), str(target))
    return target


def place(course: Path, assignment: str, student: str, files: dict[str, bytes], stamp: str) -> tuple[str, Path | None]:
    """Write one student's files into ``submitted/``: ``("new" | "unchanged" | "replaced", backup)``."""
    folder = Path(course) / "submitted" / student / assignment
    moved = None
    if folder.exists():
        if _contents(folder) == files:
            return "unchanged", None
        moved = backup(course, student, assignment, stamp)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return ("replaced" if moved else "new"), moved


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def already_collected(course: Path, assignment: str, archive: Path) -> Path | None:
    """The kept copy of an earlier collect with the same content as ``archive``, if any."""
    digest = _digest(archive)
    for kept in sorted((Path(course) / "downloaded" / assignment / "collected").glob("*/*")):
        if kept.is_file() and kept.name != "summary.txt" and _digest(kept) == digest:
            return kept
    return None


def keep_archive(course: Path, assignment: str, archive: Path, stamp: str) -> Path:
    """Keep the collected archive in ``downloaded/ASSIGNMENT/collected/STAMP/``: moved from ``archive/``, else copied."""
    folder = Path(course) / "downloaded" / assignment / "collected" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    inbox = (Path(course) / "downloaded" / assignment / "archive").resolve()
    if archive.resolve().parent == inbox:
        return Path(shutil.move(str(archive), str(folder / archive.name)))
    return Path(shutil.copy2(archive, folder / archive.name))


def released(course: Path, assignment: str) -> set[str]:
    return {p.name for p in (Path(course) / "release" / assignment).glob("*.ipynb")}


def collect_archive(course: Path, assignment: str, archive: Path, again: bool = False) -> Collected:
    """Collect an LMS archive into ``submitted/`` by the rules of this module's docstring."""
    course, archive = Path(course), Path(archive)
    if not archive.is_file():
        raise SystemExit(f"no such archive: {archive}")
    earlier = None if again else already_collected(course, assignment, archive)
    if earlier:
        raise SystemExit(f"{archive} was collected already (same content as {earlier}); "
                         "pass --again (make collect ARCHIVE=... AGAIN=1) to collect it once more")
    result = Collected(archive, _stamp(), duedate=sync_duedate(course, assignment))
    with tempfile.TemporaryDirectory() as tmp:
        files, result.unmatched = extract(archive, Path(tmp))
        found, unmatched = identify(course, files)
        result.unmatched = sorted([*result.unmatched, *unmatched])
        kept, result.duplicates = latest_attempts(found)
        _place_all(course, assignment, kept, result)
    result.kept_at = keep_archive(course, assignment, archive, result.stamp)
    (result.kept_at.parent / "summary.txt").write_text(summary(result, course) + "\n")
    return result


def _place_all(course: Path, assignment: str, kept: list[Found], result: Collected) -> None:
    """Place every student's kept files (and timestamp) and record the outcome in ``result``."""
    known = released(course, assignment)
    per_student: dict[str, list[Found]] = {}
    for item in kept:
        per_student.setdefault(item.student, []).append(item)
        if known and item.notebook not in known:
            result.unknown_notebooks.append((item.student, item.notebook))
    for student, items in sorted(per_student.items()):
        files = {item.notebook: item.path.read_bytes() for item in items}
        late = any(item.late for item in items)
        if late:
            result.late.append(student)
        stamp = timestamp_for(late, result.duedate)
        if stamp:
            files["timestamp.txt"] = stamp.encode()
        outcome, moved = place(course, assignment, student, files, result.stamp)
        if outcome == "replaced":
            result.replaced[student] = moved
        else:
            getattr(result, outcome).append(student)


def summary(result: Collected, course: Path) -> str:
    """The collect's report: every student, duplicate, backup, late file and unmatched file."""
    rel = lambda p: p.relative_to(course) if p.is_relative_to(course) else p  # noqa: E731
    lines = [f"collected {result.archive.name}: {len(result.students)} student(s) in submitted/"]
    if result.new:
        lines.append(f"  new: {', '.join(result.new)}")
    for student, moved in sorted(result.replaced.items()):
        lines.append(f"  replaced {student}: the previous files are kept in {rel(moved)}/")
    if result.unchanged:
        lines.append(f"  unchanged (same files already in submitted/): {', '.join(result.unchanged)}")
    if result.duplicates:
        lines.append("  duplicates, the latest attempt kept (Canvas -N suffix; none = attempt 0):")
        lines += [f"    {student}: kept {kept}; not collected: {', '.join(dropped)}"
                  for student, kept, dropped in result.duplicates]
    lines += _late_lines(result)
    lines += [f"  {student}: {notebook} is not a notebook of release/ (renamed?); collected under that name"
              for student, notebook in result.unknown_notebooks]
    if result.unmatched:
        lines.append(f"  NOT COLLECTED, {len(result.unmatched)} file(s) name no student "
                     "(c.FileNameCollectorPlugin.named_regexp):")
        lines += [f"    {name}" for name in result.unmatched]
    if result.kept_at:
        lines.append(f"  archive kept in {rel(result.kept_at)} (collected once; --again to repeat)")
    return "\n".join(lines)


def _late_lines(result: Collected) -> list[str]:
    if not result.late:
        return []
    if result.duedate is None:
        return [f"  marked LATE by Canvas: {', '.join(result.late)}; no due date (c.LatePenalty.duedates), "
                "so no timestamp.txt and no late penalty"]
    return [f"  marked LATE by Canvas: {', '.join(result.late)}; timestamp.txt = due date + 1 s "
            f"({result.duedate} UTC; Canvas gives no time), so the penalty of one started day"]


def leftovers(course: Path, assignment: str) -> list[Path]:
    """Files waiting in ``downloaded/ASSIGNMENT/archive/`` (never collected implicitly)."""
    inbox = Path(course) / "downloaded" / assignment / "archive"
    return sorted(p for p in inbox.iterdir() if p.is_file()) if inbox.is_dir() else []


def exchange_collect(course: Path, assignment: str) -> int:
    """``nbgrader collect --update`` (the exchange), backing up every ``submitted/`` folder it changes.

    Every existing folder is copied to ``submitted/.backup/STAMP/`` first (so an interrupted run loses
    nothing); the copies of the folders nbgrader left unchanged are removed afterwards."""
    from bnlab.release import nbgrader

    course = Path(course)
    for path in leftovers(course, assignment):
        print(f"not collected: {path.relative_to(course)} (an LMS download; this collect uses nbgrader's exchange "
              f"only). To collect it: make collect ARCHIVE={path.relative_to(course)}")
    backups = course / "submitted" / BACKUP / _stamp()
    before = {p.parent.name: _fingerprint(p) for p in (course / "submitted").glob(f"*/{assignment}")}
    for student in before:
        shutil.copytree(course / "submitted" / student / assignment, backups / student / assignment)
    result = nbgrader("collect", assignment, "--update", root=course, check=False)
    print(result.stdout + result.stderr)
    for student, files in before.items():
        if _fingerprint(course / "submitted" / student / assignment) == files:
            shutil.rmtree(backups / student)
        else:
            print(f"replaced {student}: the previous files are kept in {(backups / student / assignment).relative_to(course)}/")
    if backups.exists() and not any(backups.iterdir()):
        backups.rmdir()
    sync_duedate(course, assignment)
    return result.returncode


# --- exporting ------------------------------------------------------------------------------------

def graded_assignments(gradebook) -> list[str]:
    """Names of the assignments worth points (the ungraded lesson, max score 0, is left out)."""
    return [a.name for a in gradebook.assignments if a.max_score and a.max_score > 0]


class GradedCsvExportPlugin(CsvExportPlugin):
    """nbgrader's CSV export without ungraded assignments (``c.ExportApp.plugin_class``)."""

    def export(self, gradebook) -> None:
        graded = graded_assignments(gradebook)
        wanted = [str(a) for a in self.assignment]
        self.assignment = [a for a in graded if not wanted or a in wanted]
        if not self.assignment:
            self.log.warning("No graded assignment to export (only ungraded notebooks in the gradebook).")
            self.assignment = ["(none)"]
        super().export(gradebook)


def _source_order(course: Path, assignment: str, notebook: str):
    """Sort key: a graded cell's position in the source notebook (unknown cells last)."""
    import nbformat

    path = Path(course) / "source" / assignment / f"{notebook}.ipynb"
    order = {}
    if path.exists():
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            order[cell.metadata.get("nbgrader", {}).get("grade_id")] = i
    return lambda cell: (order.get(cell.name, len(order)), cell.name)


def per_question(course: Path, assignment: str, path: Path | None = None) -> Path:
    """Write the per-question CSV of ``assignment`` (one row per student, one column per graded check)."""
    from bnlab import graderecord

    course = Path(course)
    path = Path(path or course / PER_QUESTION)
    status = graderecord.records(course, assignment)
    with graderecord.gradebook(course) as gb:
        cells = [(cell.name, cell.max_score) for nb in gb.find_assignment(assignment).notebooks
                 for cell in sorted(nb.grade_cells, key=_source_order(course, assignment, nb.name))]
        header = ["student_id", *(f"{name} (max {maximum:g})" for name, maximum in cells),
                  "total", "max_score", "status"]
        rows = []
        for submission in sorted(gb.assignment_submissions(assignment), key=lambda s: s.student.id):
            scores = {g.name: g.score for nb in submission.notebooks for g in nb.grades}
            record = status.get(submission.student.id, {})
            rows.append([submission.student.id, *(scores.get(name, 0.0) for name, _ in cells),
                         submission.score, submission.max_score, record.get("status", "graded by nbgrader")])
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def canvas_name(student) -> str:
    """Canvas' "Last, First" from nbgrader's student (empty when unknown); a leading ``=`` is quoted as Canvas does."""
    name = ", ".join(part for part in (student.last_name, student.first_name) if part)
    return f'="{name}"' if name.startswith("=") else name


def canvas_ids(student_id: str) -> list[str]:
    """``[ID, SIS User ID, SIS Login ID]``: a numeric id is the Canvas user id (from the Canvas file
    names); any other (a JupyterHub user name, from the exchange) is taken as the SIS login."""
    return [student_id, "", ""] if student_id.isdigit() else ["", "", student_id]


def canvas_score(gb, assignment: str, student_id: str) -> str:
    """The score after any late penalty, as nbgrader's grades.csv computes it; empty without a submission
    (Canvas leaves an empty cell's grade as it is)."""
    from nbgrader.api import MissingEntry

    try:
        submission = gb.find_submission(assignment, student_id)
    except MissingEntry:
        return ""
    return f"{max(0.0, submission.score - (submission.late_submission_penalty or 0.0)):g}"


def canvas_rows(gb, columns: dict[str, str] | None = None) -> list[list[str]]:
    """Canvas' gradebook layout: header, the Points Possible row, then one row per student."""
    assignments = [gb.find_assignment(name) for name in graded_assignments(gb)]
    columns = columns or {}
    rows = [[*CANVAS_COLUMNS, *(columns.get(a.name, a.name) for a in assignments)],
            [POINTS_POSSIBLE, "", "", "", "", *(f"{a.max_score:g}" for a in assignments)]]
    students = sorted(gb.students, key=lambda s: (canvas_name(s) == "", canvas_name(s).lower(), s.id))
    for student in students:
        rows.append([canvas_name(student), *canvas_ids(student.id), "",
                     *(canvas_score(gb, a.name, student.id) for a in assignments)])
    return rows


def canvas_export(course: Path, path: Path | None = None, columns: dict[str, str] | None = None) -> Path:
    """Write ``grades_canvas.csv``: a Canvas gradebook import (``columns`` renames assignment columns,
    e.g. to Canvas' own ``Title (assignment id)`` so that the import fills that assignment)."""
    from bnlab import graderecord

    path = Path(path or Path(course) / CANVAS_CSV)
    with graderecord.gradebook(course) as gb:
        rows = canvas_rows(gb, columns)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def export(course: Path, assignment: str, columns: dict[str, str] | None = None) -> list[Path]:
    """``nbgrader export`` (graded assignments only), the per-question CSV and the Canvas import; return the paths."""
    from bnlab.release import nbgrader

    course = Path(course)
    nbgrader("export", root=course)
    return [course / "grades.csv", per_question(course, assignment), canvas_export(course, columns=columns)]


def _columns(pairs: list[str]) -> dict[str, str]:
    """``["assignment=Canvas column", ...]`` as a dict."""
    if any("=" not in pair for pair in pairs):
        raise SystemExit("--canvas-column takes ASSIGNMENT=COLUMN, e.g. batch_norm_exercises='Batch Norm (4711)'")
    return dict(pair.split("=", 1) for pair in pairs)


def main(argv: list[str] | None = None) -> int:
    from bnlab.exercise import ASSIGNMENT
    from bnlab.release import ROOT

    parser = argparse.ArgumentParser(description="Collect submissions from an LMS archive or the exchange; export grades.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="--archive PATH: an LMS download into submitted/; else nbgrader collect (exchange)")
    e = sub.add_parser("export", help="grades.csv (graded assignments), grades_per_question.csv, grades_canvas.csv")
    for p in (c, e):
        p.add_argument("assignment", nargs="?", default=ASSIGNMENT)
        p.add_argument("--course", default=str(ROOT))
    c.add_argument("--archive", type=Path, help="zip (or tar) downloaded from the LMS")
    c.add_argument("--again", action="store_true", help="collect an archive that was collected already")
    e.add_argument("--canvas-column", action="append", default=[], metavar="ASSIGNMENT=COLUMN",
                   help="column name in grades_canvas.csv (default: the assignment's name)")
    args = parser.parse_args(argv)
    course = Path(args.course).resolve()
    if args.command == "export":
        for path in export(course, args.assignment, _columns(args.canvas_column)):
            print("wrote", path)
        return 0
    if args.archive:
        print(summary(collect_archive(course, args.assignment, args.archive, args.again), course))
    else:  # nbgrader's exchange (c.Exchange.root; BNLAB_EXCHANGE sets it)
        code = exchange_collect(course, args.assignment)
        if code != 0:
            return code
    print("next: make autograde")
    return 0


if __name__ == "__main__":
    sys.exit(main())
