"""Reading nbgrader's exchange as the course collects it: each student's latest hand-in, its regular files
only, and its time by the kernel's clock.

``nbgrader submit`` writes ``inbound/STUDENT+ASSIGNMENT+TIME[+RANDOM]/`` with a ``timestamp.txt``, and
``inbound/`` is writable by everyone: the student writes both the time in the name and the file. The kernel's
``ctime`` of the folder and of what it holds is set by the kernel on every change and cannot be set back by
the owner, so :func:`hand_ins` takes the latest of those as the time of a hand-in, picks each student's latest
hand-in by it, and reads only regular files (:mod:`bnlab.instructor.admission`). ``make collect``
(:func:`bnlab.instructor.lms.exchange_collect`) writes that time into ``submitted/.../timestamp.txt``.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import stat
from pathlib import Path

from bnlab.instructor.admission import TIMESTAMP, admit
from bnlab.instructor.latework import course_config


def exchange_course(course: Path) -> Path:
    """The course's folder in nbgrader's exchange (``c.Exchange.root``/course id, as the course's config says)."""
    config = course_config(course)
    root = config.Exchange.get("root") or "/srv/nbgrader/exchange"  # nbgrader's default
    return Path(root) / config.CourseDirectory.course_id


@dataclasses.dataclass
class HandIn:
    """One submission folder in the exchange's ``inbound/``, read: its regular files and what was refused."""

    folder: str  # its name in inbound/: STUDENT+ASSIGNMENT+TIME[+RANDOM], as nbgrader submit writes it
    student: str
    time: datetime.datetime  # the kernel's clock: the latest ctime of the folder and of what it holds (UTC)
    files: dict
    refused: dict
    claimed: str  # the student's own timestamp.txt, as written ('' without one): never used


def hand_ins(inbound: Path, assignment: str) -> tuple[list[HandIn], list[str]]:
    """Each student's latest hand-in of ``assignment`` in ``inbound`` (latest by the kernel's clock, not by the
    time in its name, which the student writes), and why entries that are not folders were left alone."""
    from bnlab.instructor.identity import claimed_id

    if not Path(inbound).is_dir():
        return [], []
    with os.scandir(inbound) as entries:
        names = sorted(entry.name for entry in entries if f"+{assignment}+" in entry.name)
    latest, problems = {}, []
    for name in names:
        if not stat.S_ISDIR(os.lstat(Path(inbound) / name).st_mode):
            problems.append(f"{name}: not a folder (a link or a file), never read")
            continue
        admitted = admit(Path(inbound) / name)
        claimed = admitted.files.pop(TIMESTAMP, None)  # replaced by the kernel's time, whatever it held
        unreadable = admitted.refused.pop(TIMESTAMP, None)
        said = claimed.decode("utf-8", "replace") if claimed is not None else ("(no time)" if unreadable else "")
        hand = HandIn(name, claimed_id(name), admitted.changed, admitted.files, admitted.refused, said)
        kept = latest.get(hand.student)
        if kept is None or (hand.time, hand.folder) > (kept.time, kept.folder):
            latest[hand.student] = hand
    return [latest[student] for student in sorted(latest)], problems


def claimed_note(hand: HandIn) -> str:
    """A note when the student's own ``timestamp.txt`` claims an earlier time than the kernel recorded."""
    from nbgrader.utils import parse_utc

    if not hand.claimed:
        return ""
    try:
        claimed = parse_utc(hand.claimed.strip())
    except Exception:  # noqa: BLE001 - any text that is no time
        return f"timestamp.txt in inbound/ holds no time ({hand.claimed[:40]!r}); the kernel's time is used"
    if claimed < hand.time.replace(tzinfo=None) - datetime.timedelta(minutes=1):
        return (
            f"timestamp.txt in inbound/ claims {claimed} UTC, but the files were last changed at "
            f"{hand.time:%Y-%m-%d %H:%M:%S} UTC (the kernel's clock): that time is used"
        )
    return ""
