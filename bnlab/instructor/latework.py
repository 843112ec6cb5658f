"""Late work: due dates, the timestamps of LMS files, and the course's late penalty.

``nbgrader_config.py`` sets the due dates (``c.LatePenalty.duedates``) and :class:`LatePenalty` as the
plugin of nbgrader's ``AssignLatePenalties``. ``make collect`` writes the due date into the gradebook
(:func:`sync_duedate`), and gives each Canvas file the ``timestamp.txt`` of :func:`timestamp_for`:
Canvas names carry a LATE marker but no time, so a file is late or not, never by how much.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Dict, Float

from bnlab.instructor.autograde import record

DAY = 86400.0


class LatePenalty(LateSubmissionPlugin):
    """The course's late policy (``c.AssignLatePenalties.plugin_class``): due dates and the penalty.

    nbgrader calls :meth:`late_submission_penalty` only for a submission whose timestamp is after
    its due date in the gradebook, so without a due date nothing is ever late."""

    duedates = Dict(
        {},
        help="Due date per assignment, as nbgrader parses it (e.g. '2026-12-15 23:59:00 "
        "Europe/Berlin'); `make collect` writes it into the gradebook.",
    ).tag(config=True)
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

    wanted = course_config(course).LatePenalty.get("duedates", {}).get(assignment)
    if not wanted and not (Path(course) / record.GRADEBOOK).exists():
        return None
    with record.gradebook(course) as gb:
        if not wanted:
            try:
                return gb.find_assignment(assignment).duedate
            except MissingEntry:
                return None
        entry = gb.update_or_create_assignment(assignment)
        if entry.duedate != parse_utc(wanted):
            entry.duedate = parse_utc(wanted)
            gb.db.commit()
            print(f"due date of {assignment}: {entry.duedate} UTC (from nbgrader_config.py, now in the gradebook)")
        return entry.duedate


def timestamp_for(late: bool, duedate: datetime.datetime | None) -> str | None:
    """``timestamp.txt`` of a Canvas file: the due date, + 1 s when Canvas marked it LATE; None without one."""
    if duedate is None:
        return None
    moment = duedate + datetime.timedelta(seconds=1) if late else duedate
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
