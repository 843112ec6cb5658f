"""What goes in and out of a learning management system (Canvas, Moodle): archives in, grades out.

In: ``python -m bnlab.instructor.lms collect ASSIGNMENT --archive submissions.zip`` (``make collect
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
- **whose notebook**: a notebook whose ``STUDENT_ID`` (or the id its outputs show its questions were drawn for) is
  not the student id of its file name is named in the summary as answered for another id; it is collected all the
  same, and graded as the file name's student (:mod:`bnlab.variants`), whose questions differ;
- **late work**: Canvas names carry only a LATE marker, no time. With a due date (``c.LatePenalty.duedates``
  in ``nbgrader_config.py``, written into the gradebook as ``nbgrader db assignment add --duedate``
  would), ``timestamp.txt`` says *due date + 1 s* for a LATE file and *the due date* for the others:
  late or not, never by how much. :class:`LatePenalty` (``c.AssignLatePenalties.plugin_class``) then
  takes a share of the score per started day late, so a Canvas LATE file loses one day's share.

Only regular files are collected (:mod:`bnlab.instructor.admission`): an archive's links, hard links,
pipes and devices, and anything in the exchange that is not a regular file, are never read, and named in the
summary.

Without ``--archive``, ``collect`` reads nbgrader's exchange itself (``inbound/`` of ``c.Exchange.root``;
forged owners are moved aside first, :mod:`bnlab.instructor.identity`), with the same backups, and only names
what is left in ``downloaded/ASSIGNMENT/archive/``: the two routes never mix. Each student's latest hand-in is
collected, and its time is the kernel's: the latest ``ctime`` of its folder and files in ``inbound/``, which no
student can set back. The student's own ``timestamp.txt`` (``inbound/`` is writable by everyone) is replaced
by that time, so the late penalty uses it.

Out: ``python -m bnlab.instructor.lms export`` runs :func:`bnlab.instructor.exports.export`: nbgrader's ``grades.csv``,
``grades_per_question.csv`` and ``grades_canvas.csv``, a Canvas gradebook import.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import logging
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from bnlab import variants
from bnlab.instructor.admission import KINDS, TIMESTAMP, admit, note
from bnlab.instructor.exchange import claimed_note, exchange_course, hand_ins

# grades out live in bnlab.instructor.exports, late work in bnlab.instructor.latework
from bnlab.instructor.exports import (
    canvas_export,  # noqa: F401
    export,
)
from bnlab.instructor.latework import LatePenalty, course_config, sync_duedate, timestamp_for  # noqa: F401

CANVAS_PATTERN = (
    r"(?i)^(?:.*[/\\])?[^/\\]+?_(?P<late>late_)?(?P<student_id>\d+)_\d+_"
    r"(?P<file_id>[^/\\]+?)(?:-(?P<attempt>\d+))?\.ipynb$"
)
BACKUP = ".backup"


# --- collecting an archive ------------------------------------------------------------------------


@dataclasses.dataclass
class Found:
    """One file of the archive that names a student."""

    name: str  # its path inside the archive
    path: Path  # where it was extracted
    student: str
    notebook: str  # the file name it gets in submitted/STUDENT/ASSIGNMENT/
    attempt: int
    late: bool


@dataclasses.dataclass
class Collected:
    """What a collect did. Every file of the archive is accounted for: collected (its student is new,
    replaced or unchanged), a duplicate's older attempt, or unmatched."""

    archive: Path
    stamp: str
    new: list = dataclasses.field(default_factory=list)  # students
    replaced: dict = dataclasses.field(default_factory=dict)  # student -> backup folder
    unchanged: list = dataclasses.field(default_factory=list)  # students
    duplicates: list = dataclasses.field(default_factory=list)  # (student, kept name, [dropped names])
    unmatched: list = dataclasses.field(default_factory=list)  # archive names that name no student
    unknown_notebooks: list = dataclasses.field(default_factory=list)  # (student, notebook) not in release/
    refused: list = dataclasses.field(default_factory=list)  # (archive name, reason): not a regular file
    late: list = dataclasses.field(default_factory=list)  # students Canvas marked LATE
    other_ids: list = dataclasses.field(
        default_factory=list
    )  # (student, notebook, [ids the notebook was answered for])
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


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link (to {member.linkname[:80]!r}), never followed"
    if member.islnk():
        return f"a hard link (to {member.linkname[:80]!r}), never followed"
    return KINDS.get({tarfile.FIFOTYPE: stat.S_IFIFO, tarfile.CHRTYPE: stat.S_IFCHR}.get(member.type, stat.S_IFBLK))


def _members(archive: Path):
    """``(name, read, refusal)`` for each entry of a zip or tar archive that is not a folder: ``read()`` gives a
    regular file's bytes; anything else (a link, a pipe, a device) has ``read`` None and says why."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                mode = member.external_attr >> 16
                if member.is_dir():
                    continue
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: written without Unix modes
                    kind = "a symbolic link, never followed" if stat.S_ISLNK(mode) else KINDS.get(stat.S_IFMT(mode))
                    yield member.filename, None, kind or "not a regular file"
                else:
                    yield member.filename, lambda m=member: zf.read(m), ""
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if member.isfile():
                    yield member.name, lambda m=member: tf.extractfile(m).read(), ""
                elif not member.isdir():
                    yield member.name, None, _tar_kind(member)
    else:
        raise SystemExit(f"{archive} is neither a zip nor a tar archive")


def extract(archive: Path, target: Path, refused: list | None = None) -> tuple[dict[str, Path], list[str]]:
    """Extract a zip or tar archive's regular files: ``({name: extracted path}, [names refused as unsafe])``;
    ``(name, reason)`` of every entry that is not a regular file goes to ``refused``."""
    files, unsafe = {}, []
    for name, read, refusal in _members(archive):
        relative = _safe_name(name)
        if relative is None:
            unsafe.append(name)
            continue
        if read is None:
            if refused is not None:
                refused.append((name, refusal))
            continue
        path = target.joinpath(*relative.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(read())
        files[name] = path
    return files, unsafe


def collector(course: Path):
    """nbgrader's FileNameCollectorPlugin with the course's config (its warnings are ours to report)."""
    from nbgrader.plugins import FileNameCollectorPlugin

    log = logging.getLogger("bnlab.instructor.lms.collector")
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
        found.append(
            Found(name, path, info["student_id"], notebook, int(info.get("attempt") or 0), bool(info.get("late")))
        )
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


def backup(course: Path, student: str, assignment: str, stamp: str) -> Path:
    """Move ``submitted/STUDENT/ASSIGNMENT/`` to ``submitted/.backup/STAMP/STUDENT/ASSIGNMENT/``."""
    target = Path(course) / "submitted" / BACKUP / stamp / student / assignment
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(Path(course) / "submitted" / student / assignment), str(target))
    return target


def place(course: Path, assignment: str, student: str, files: dict[str, bytes], stamp: str) -> tuple[str, Path | None]:
    """Write one student's files into ``submitted/``.

    Args:
        course: the course folder.
        assignment: the assignment the files belong to.
        student: the student's id (the folder ``submitted/STUDENT/``).
        files: ``{name: bytes}`` to write.
        stamp: the name of the backup folder for files this replaces.

    Returns:
        ``("new" | "unchanged" | "replaced", the backup folder or None)``.
    """
    folder = Path(course) / "submitted" / student / assignment
    moved = None
    if folder.exists() or folder.is_symlink():
        if admit(folder).files == files and not admit(folder, read=False).refused:
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
    wanted = _digest(archive)
    for kept in sorted((Path(course) / "downloaded" / assignment / "collected").glob("*/*")):
        if kept.is_file() and kept.name != "summary.txt" and _digest(kept) == wanted:
            return kept
    return None


def keep_archive(course: Path, assignment: str, archive: Path, stamp: str) -> Path:
    """Keep the collected archive in ``downloaded/ASSIGNMENT/collected/STAMP/``: moved from ``archive/``, else
    copied."""
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
        raise SystemExit(
            f"{archive} was collected already (same content as {earlier}); "
            "pass --again (make collect ARCHIVE=... AGAIN=1) to collect it once more"
        )
    result = Collected(archive, _stamp(), duedate=sync_duedate(course, assignment))
    with tempfile.TemporaryDirectory() as tmp:
        files, result.unmatched = extract(archive, Path(tmp), result.refused)
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
        for notebook, content in files.items():
            others = answered_for(content) - {student}
            if others:
                result.other_ids.append((student, notebook, sorted(others)))
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


def answered_for(content: bytes) -> set[str]:
    """The student ids a notebook file says it was answered for (:func:`bnlab.variants.entered_in`: its
    ``STUDENT_ID`` and the ids its outputs show); empty for a file that is not a readable notebook."""
    import nbformat

    try:
        return variants.entered_in(nbformat.reads(content.decode("utf-8"), as_version=4))
    except Exception:  # noqa: BLE001 - not a notebook: nothing to compare, and it is collected all the same
        return set()


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
        lines += [
            f"    {student}: kept {kept}; not collected: {', '.join(dropped)}"
            for student, kept, dropped in result.duplicates
        ]
    lines += _late_lines(result)
    if result.other_ids:
        lines.append(
            "  ANSWERED FOR ANOTHER ID (collected all the same; graded as the file name's student, whose questions "
            "differ, and flagged):"
        )
        lines += [
            f"    {student}: {notebook} was answered for {', '.join(repr(i) for i in ids)}"
            for student, notebook, ids in result.other_ids
        ]
    lines += [
        f"  {student}: {notebook} is not a notebook of release/ (renamed?); collected under that name"
        for student, notebook in result.unknown_notebooks
    ]
    if result.refused:
        lines.append(f"  NOT COLLECTED, {len(result.refused)} entr(ies) that are not regular files (never read):")
        lines += [f"    {name}: {reason}" for name, reason in result.refused]
    if result.unmatched:
        lines.append(
            f"  NOT COLLECTED, {len(result.unmatched)} file(s) name no student "
            "(c.FileNameCollectorPlugin.named_regexp):"
        )
        lines += [f"    {name}" for name in result.unmatched]
    if result.kept_at:
        lines.append(f"  archive kept in {rel(result.kept_at)} (collected once; --again to repeat)")
    return "\n".join(lines)


def _late_lines(result: Collected) -> list[str]:
    if not result.late:
        return []
    if result.duedate is None:
        return [
            f"  marked LATE by Canvas: {', '.join(result.late)}; no due date (c.LatePenalty.duedates), "
            "so no timestamp.txt and no late penalty"
        ]
    return [
        f"  marked LATE by Canvas: {', '.join(result.late)}; timestamp.txt = due date + 1 s "
        f"({result.duedate} UTC; Canvas gives no time), so the penalty of one started day"
    ]


def leftovers(course: Path, assignment: str) -> list[Path]:
    """Files waiting in ``downloaded/ASSIGNMENT/archive/`` (never collected implicitly)."""
    inbox = Path(course) / "downloaded" / assignment / "archive"
    return sorted(p for p in inbox.iterdir() if p.is_file()) if inbox.is_dir() else []


def exchange_collect(course: Path, assignment: str) -> int:
    """Collect the latest hand-in of every student from nbgrader's exchange into ``submitted/``.

    Forged owners are moved aside first (:func:`refuse_forged`); only regular files are read; ``timestamp.txt``
    is the kernel's time of the hand-in (:class:`HandIn`); a folder that would change is backed up first
    (:func:`place`)."""
    course = Path(course)
    for path in leftovers(course, assignment):
        print(
            f"not collected: {path.relative_to(course)} (an LMS download; this collect uses nbgrader's exchange "
            f"only). To collect it: make collect ARCHIVE={path.relative_to(course)}"
        )
    refuse_forged(course, assignment)
    inbound = exchange_course(course) / "inbound"
    if not inbound.is_dir():
        print(f"error: no exchange at {inbound} (set BNLAB_EXCHANGE to nbgrader's exchange folder)")
        return 1
    found, problems = hand_ins(inbound, assignment)
    stamp = _stamp()
    lines = [f"collected {len(found)} student(s) from {inbound}"]
    for hand in found:
        files = {**hand.files, TIMESTAMP: hand.time.strftime("%Y-%m-%d %H:%M:%S.%f UTC").encode()}
        outcome, moved = place(course, assignment, hand.student, files, stamp)
        where = f": the previous files are kept in {moved.relative_to(course)}/" if moved else ""
        lines.append(f"  {outcome} {hand.student} ({hand.folder}, handed in {hand.time:%Y-%m-%d %H:%M:%S} UTC){where}")
        lines += [f"    {text}" for text in (note(hand.refused), claimed_note(hand)) if text]
    lines += [f"  NOT COLLECTED: {problem}" for problem in problems]
    print("\n".join(lines))
    sync_duedate(course, assignment)
    return 0


def refuse_forged(course: Path, assignment: str) -> None:
    """Before collecting: a submission whose Unix owner is not the student it names is moved aside and
    reported (bnlab.instructor.identity; the exchange and course id as the course's nbgrader config says)."""
    from bnlab.instructor import identity

    exchange = exchange_course(course)
    for line in identity.report(identity.refuse_forged(exchange, assignment), exchange):
        print(line)


def _columns(pairs: list[str]) -> dict[str, str]:
    """``["assignment=Canvas column", ...]`` as a dict."""
    if any("=" not in pair for pair in pairs):
        raise SystemExit("--canvas-column takes ASSIGNMENT=COLUMN, e.g. batch_norm_exercises='Batch Norm (4711)'")
    return dict(pair.split("=", 1) for pair in pairs)


def main(argv: list[str] | None = None) -> int:
    from bnlab.exercise import ASSIGNMENT
    from bnlab.instructor.notebooks import ROOT

    parser = argparse.ArgumentParser(
        description="Collect submissions from an LMS archive or the exchange; export grades."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "collect", help="--archive PATH: an LMS download into submitted/; else nbgrader collect (exchange)"
    )
    e = sub.add_parser("export", help="grades.csv (graded assignments), grades_per_question.csv, grades_canvas.csv")
    for p in (c, e):
        p.add_argument("assignment", nargs="?", default=ASSIGNMENT)
        p.add_argument("--course", default=str(ROOT))
    c.add_argument("--archive", type=Path, help="zip (or tar) downloaded from the LMS")
    c.add_argument("--again", action="store_true", help="collect an archive that was collected already")
    e.add_argument(
        "--canvas-column",
        action="append",
        default=[],
        metavar="ASSIGNMENT=COLUMN",
        help="column name in grades_canvas.csv (default: the assignment's name)",
    )
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
