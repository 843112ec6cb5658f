"""Only regular files enter grading: the one reader of a submission's files, on every route.

A submission is data. Whatever brought it (an LMS archive or nbgrader's exchange through ``make collect``,
the folders ``make autograde``'s coordinator reads, plain ``nbgrader autograde`` with the course's
configuration), the trusted side reads only its *regular files with one name on disk*. Each is opened
without following a link (``O_NOFOLLOW``, relative to its folder, itself opened the same way, so nothing
swapped in between the look and the read is followed) and checked again once open. Everything else is
refused, never read, copied or followed, and named with its reason: a symbolic link (to a file or a
folder), a named pipe, a socket, a device, a hard link (the same file under another name, e.g. the
gradebook), a name with control characters, what lies past the limits (:data:`LIMITS`), and a
``timestamp.txt`` that holds no time nbgrader can read (the submission is then graded without a time and
flagged). The submission is graded on its regular files and flagged with the reasons.

- :func:`admit` reads a folder: ``Admitted(files, refused, changed)``; ``changed`` is the latest
  ``ctime`` of what it looked at (the kernel's clock: no owner can set it back), the time of an
  exchange hand-in (:mod:`bnlab.instructor.lms`).
- :func:`before_copy` is nbgrader's ``Autograde.pre_convert_hook`` (``nbgrader_config.py``): it runs after
  nbgrader found the notebooks and before it copies anything from ``submitted/`` to ``autograded/`` or reads
  ``timestamp.txt``, moves what is refused to ``submitted/.refused/STAMP/STUDENT/ASSIGNMENT/`` (a rename:
  nothing is followed; ``REFUSED.txt`` there says why), drops refused notebooks from the list nbgrader
  grades, and flags the submission in the gradebook.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import stat
from pathlib import Path

TIMESTAMP = "timestamp.txt"
REFUSED = ".refused"  # submitted/.refused/STAMP/STUDENT/ASSIGNMENT/: what the plain route moved aside
SKIPPED = frozenset({".ipynb_checkpoints", "__pycache__"})  # editor and Python caches: left out, not flagged
LIMITS = {"files": 500, "file_bytes": 64 * 2**20, "total_bytes": 128 * 2**20, "depth": 8, "entries": 5000}
KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # a FIFO swapped in opens without waiting, then is refused


@dataclasses.dataclass
class Admitted:
    """What :func:`admit` found: ``files`` ``{relative name: bytes}`` (``None`` when not read), ``refused``
    ``{relative name: reason}``, and ``changed``, the latest ctime seen (UTC, ``None`` for no folder)."""

    files: dict
    refused: dict
    changed: datetime.datetime | None = None
    paths: dict = dataclasses.field(default_factory=dict)  # refused name as shown -> its real relative path

    def note(self) -> str:
        """The refusals in one sentence for the instructor (empty when nothing was refused)."""
        return note(self.refused)


def note(refused: dict) -> str:
    """``refused`` ``{name: reason}`` in one sentence, names grouped by reason (at most five named each)."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in sorted(refused.items()):
        by_reason.setdefault(reason, []).append(name)
    parts = []
    for reason, names in by_reason.items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts.append(f"{shown}: {reason}")
    return ("not graded, never read: " + "; ".join(parts)) if parts else ""


def timestamp_problem(data: bytes) -> str:
    """Why ``data`` is not a ``timestamp.txt`` nbgrader can use (empty when it is one)."""
    from nbgrader.utils import parse_utc

    try:
        text = data.decode("utf-8").strip()
        if not text or len(text) > 100:
            raise ValueError("empty or too long")
        parse_utc(text)
    except Exception:  # noqa: BLE001 - whatever the parser raises, the text is no time
        shown = data[:40].decode("utf-8", "replace")
        return (
            f"timestamp.txt holds no time ({shown!r}): graded without a submission time, so no late penalty; "
            "write the real time into it if the work was late"
        )
    return ""


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


class _TooMany(Exception):
    """More entries than LIMITS["entries"]: the submission is not read at all."""


class _Walk:
    def __init__(self, read: bool):
        self.read, self.files, self.refused, self.paths, self.total, self.ctime = read, {}, {}, {}, 0, 0.0
        self.real = ""  # the real relative path of the entry being looked at
        self.seen = 0  # entries looked at, against LIMITS["entries"]

    def refuse(self, name: str, reason: str) -> None:
        self.refused[name] = reason
        self.paths[name] = self.real

    def folder(self, fd: int, prefix: str, depth: int, real: str = "") -> None:
        self.ctime = max(self.ctime, os.fstat(fd).st_ctime)
        names = []
        with os.scandir(fd) as entries:
            for entry in entries:
                self.seen += 1
                if self.seen > LIMITS["entries"]:
                    raise _TooMany
                names.append(entry.name)
        for name in sorted(names):
            shown = prefix + name if name.isprintable() else prefix + ascii(name)
            self.real = real + name
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as error:
                self.refuse(shown, f"could not be looked at ({error.strerror})")
                continue
            self.ctime = max(self.ctime, info.st_ctime)
            if not name.isprintable():
                self.refuse(shown, "a name with control characters")
            elif stat.S_ISLNK(info.st_mode):
                target = os.readlink(name, dir_fd=fd)
                self.refuse(shown, f"a symbolic link (to {target[:80]!r}), never followed")
            elif stat.S_ISDIR(info.st_mode):
                if name not in SKIPPED:
                    self.subfolder(fd, name, shown, depth, real + name + "/")
            elif stat.S_ISREG(info.st_mode):
                self.file(fd, name, shown, info)
            else:
                self.refuse(shown, KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file"))

    def subfolder(self, fd: int, name: str, shown: str, depth: int, real: str) -> None:
        if depth >= LIMITS["depth"]:
            self.refuse(shown + "/", f"a folder nested deeper than {LIMITS['depth']} levels")
            return
        try:
            child = os.open(name, _DIR, dir_fd=fd)
        except OSError as error:  # swapped for a link since the look: ELOOP / ENOTDIR
            self.refuse(shown + "/", f"changed while it was read ({error.strerror}), not followed")
            return
        try:
            self.folder(child, shown + "/", depth + 1, real)
        finally:
            os.close(child)

    def file(self, fd: int, name: str, shown: str, info: os.stat_result) -> None:
        if len(self.files) >= LIMITS["files"]:
            self.refuse(shown, f"past the limit of {LIMITS['files']} files")
            return
        if not self.read and name != TIMESTAMP:
            problem = self.problem(info)
            if problem:
                self.refuse(shown, problem)
            else:
                self.files[shown] = None
                self.total += info.st_size
            return
        try:
            handle = os.open(name, _FILE, dir_fd=fd)
        except OSError as error:
            self.refuse(shown, f"changed while it was read ({error.strerror}), not followed")
            return
        with os.fdopen(handle, "rb") as stream:
            opened = os.fstat(stream.fileno())
            problem = self.problem(opened) or (
                "changed while it was read" if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) else ""
            )
            if problem:
                self.refuse(shown, problem)
                return
            data = stream.read(opened.st_size + 1)
            self.ctime = max(self.ctime, opened.st_ctime, os.fstat(stream.fileno()).st_ctime)  # a write while read
        if len(data) != opened.st_size:
            self.refuse(shown, "changed while it was read")
            return
        self.files[shown] = data
        self.total += len(data)

    def problem(self, info: os.stat_result) -> str:
        if not stat.S_ISREG(info.st_mode):
            return "changed while it was read: " + KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        if info.st_nlink > 1:
            return f"a hard link (the same file has {info.st_nlink} names on disk, some maybe outside the submission)"
        if info.st_size > LIMITS["file_bytes"]:
            return f"larger than the limit of {_size(LIMITS['file_bytes'])} a file"
        if self.total + info.st_size > LIMITS["total_bytes"]:
            return f"past the limit of {_size(LIMITS['total_bytes'])} for the whole submission"
        return ""


def admit(folder: str | os.PathLike, read: bool = True) -> Admitted:
    """The regular files of ``folder`` (read when ``read``; else only ``timestamp.txt`` is read) and what was
    refused, with why; empty when ``folder`` does not exist. ``folder`` itself must be a real folder."""
    try:
        top = os.open(folder, _DIR)
    except FileNotFoundError:
        return Admitted({}, {})
    except OSError as error:
        return Admitted({}, {".": f"the submission folder is not a folder ({error.strerror}), never followed"})
    walk = _Walk(read)
    try:
        walk.folder(top, "", 0)
    except _TooMany:
        return Admitted({}, {".": f"more than {LIMITS['entries']} files and folders: nothing of it was read"})
    finally:
        os.close(top)
    if TIMESTAMP in walk.files:
        problem = timestamp_problem(walk.files[TIMESTAMP])
        if problem:
            del walk.files[TIMESTAMP]
            walk.real = TIMESTAMP
            walk.refuse(TIMESTAMP, problem)
    changed = datetime.datetime.fromtimestamp(walk.ctime, datetime.timezone.utc) if walk.ctime else None
    return Admitted(walk.files, walk.refused, changed, walk.paths)


def set_aside(folder: Path, admitted: Admitted, stamp: str) -> Path:
    """Move the refused entries of ``submitted/STUDENT/ASSIGNMENT`` (``folder``) to
    ``submitted/.refused/STAMP/STUDENT/ASSIGNMENT/`` by renaming them (nothing is followed or read), with a
    ``REFUSED.txt`` that says why; return that folder."""
    target = folder.parents[1] / REFUSED / stamp / folder.parent.name / folder.name
    target.mkdir(parents=True, exist_ok=True)
    if "." in admitted.refused:  # the whole of it: the student's link, or the submission folder itself
        whole = folder.parent if folder.parent.is_symlink() else folder
        os.rename(whole, target / ("STUDENT-FOLDER-LINK" if whole == folder.parent else "SUBMISSION"))
    for name in admitted.refused:
        real = admitted.paths.get(name, "")
        if real and os.path.lexists(folder / real):
            (target / real).parent.mkdir(parents=True, exist_ok=True)
            os.rename(folder / real, target / real)
    (target / "REFUSED.txt").write_text(
        "Moved out of the submission before grading (bnlab.instructor.admission):\n"
        + "".join(f"{name}: {reason}\n" for name, reason in sorted(admitted.refused.items()))
    )
    return target


def _flag(course: Path, assignment: str, student: str) -> None:
    """Flag every notebook of the submission in the gradebook (the formgrader shows it)."""
    from nbgrader.api import MissingEntry

    from bnlab.instructor.autograde.record import gradebook

    with gradebook(course) as gb:
        gb.update_or_create_student(student)
        try:
            submission = gb.update_or_create_submission(assignment, student)
        except MissingEntry:  # not generated: nbgrader says so next
            return
        for notebook in submission.notebooks:
            notebook.flagged = True
        gb.db.commit()


def before_copy(assignment: str, student: str, notebooks: list) -> None:
    """nbgrader's ``Autograde.pre_convert_hook``: admit one ``submitted/STUDENT/ASSIGNMENT/`` before nbgrader
    copies from it (see the module's docstring). ``notebooks`` is nbgrader's own list of the folder's
    notebooks; refused ones leave it. Any failure here stops the run (``SystemExit``; nbgrader catches
    ``Exception`` and would go on copying)."""
    from traitlets.log import get_logger

    log = get_logger()
    found = list(notebooks)
    notebooks.clear()  # until admitted
    try:
        if not found:
            return
        folder = Path(os.path.dirname(os.path.abspath(found[0])))
        if folder.parent.is_symlink():  # submitted/STUDENT is a link: the folder nbgrader found is elsewhere
            admitted = Admitted({}, {".": "the student's folder is a symbolic link, never followed"}, paths={".": ""})
        else:
            admitted = admit(folder, read=False)
        if admitted.refused:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
            aside = set_aside(folder, admitted, stamp)
            try:
                _flag(folder.parents[2], folder.name, folder.parent.name)
            except Exception as error:  # noqa: BLE001 - the refusal stands; the log says it
                log.warning("could not flag the submission in the gradebook (%s); flag it by hand", error)
            log.warning(
                "REFUSED (flagged for review): student %s: %s; moved to %s",
                folder.parent.name,
                admitted.note(),
                aside,
            )
        notebooks.extend(path for path in found if os.path.basename(path) in admitted.files)
    except Exception as error:
        log.error("the course's admission check failed, nothing copied: %s: %s", type(error).__name__, error)
        raise SystemExit(f"bnlab.instructor.admission.before_copy failed: {error}") from error
