"""Who submitted to nbgrader's exchange: the Unix owner of a submission, not the id it claims.

``nbgrader submit --student ID`` writes ``inbound/ID+ASSIGNMENT+TIMESTAMP+RANDOM`` with any ``ID``, and
``nbgrader collect`` only logs a warning when that ``ID`` is not the folder's owner. On a JupyterHub with
real Unix users (``make hub``, docs/jupyterhub.md) the hub name is the Unix name, and only the kernel sets a
folder's owner. :func:`refuse_forged` (run by ``make collect`` before nbgrader collects) moves every
submission whose owner is not the student it names into ``refused/`` beside ``inbound/``, where nbgrader never
looks, and says which: the real owner keeps only what they submitted under their own name.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

REFUSED = "refused"  # beside inbound/ in the exchange's course folder; only the course's owner can read it


@dataclass(frozen=True)
class Forged:
    """A submission folder whose name claims ``claimed`` but whose Unix owner is ``owner``."""

    folder: str
    claimed: str
    owner: str


def owner(path: Path) -> str:
    """The Unix user name owning ``path`` (``uid N`` for a uid without an account)."""
    uid = os.lstat(path).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def claimed_id(folder: str) -> str:
    """The student id in an inbound folder's name, as nbgrader's collect reads it (``ID+ASSIGNMENT+TIME[+RANDOM]``)."""
    parts = folder.rsplit("+", 3)
    return parts[0] if len(parts) == 4 else folder.rsplit("+", 2)[0]


def forged(inbound: Path, assignment: str, collector: str | None = None) -> list[Forged]:
    """The submissions of ``assignment`` in ``inbound`` whose owner is not the student their name claims.

    A folder owned by ``collector`` (default: the user running this) is let through: where every folder
    belongs to one account (a lone instructor, a hub whose users share one Unix account) ownership tells
    nothing, and only root can give a folder away, so no student can make one look like the collector's."""
    collector = collector or pwd.getpwuid(os.geteuid()).pw_name
    found = []
    for path in sorted(Path(inbound).glob(f"*+{assignment}+*")):
        claimed, actual = claimed_id(path.name), owner(path)
        if actual not in (claimed, collector):
            found.append(Forged(path.name, claimed, actual))
    return found


def refuse_forged(exchange_course: Path, assignment: str) -> list[Forged]:
    """Move every forged submission of ``assignment`` out of ``inbound/`` into ``refused/``; return them.

    ``exchange_course`` is the course's folder in the exchange (``EXCHANGE/COURSE_ID``). nbgrader's submit
    leaves each submission folder writable by all, so the course's owner can move it; ``refused/`` is private
    to that owner (mode 700)."""
    exchange_course = Path(exchange_course)
    inbound = exchange_course / "inbound"
    if not inbound.is_dir():
        return []
    found = forged(inbound, assignment)
    if found:
        refused = exchange_course / REFUSED
        refused.mkdir(mode=0o700, exist_ok=True)
        for item in found:
            os.rename(inbound / item.folder, refused / f"{item.folder}+owner={item.owner}")
    return found


def report(found: list[Forged], exchange_course: Path) -> list[str]:
    """One line per refused submission, for the instructor."""
    return [
        f"refused: {item.folder} claims student {item.claimed!r} but was submitted by {item.owner!r} "
        f"(kept in {Path(exchange_course) / REFUSED}/; not collected, not graded)"
        for item in found
    ]
