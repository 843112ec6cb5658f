"""The one exception a failing check raises, shown as its message alone."""
from __future__ import annotations

import textwrap


class CheckFailed(AssertionError):
    """A graded check failed. A subclass of :class:`AssertionError`, so nbgrader counts it as a failure.

    IPython shows an exception through its ``_render_traceback_`` when it has one: this one shows
    only its message (what is wrong, why, what to try), with no grader frames and no line of the
    test cell, so a hidden test's code or arguments never reach a student's output.
    """

    def _render_traceback_(self) -> list:
        lines = ["\x1b[0;31mCheck failed\x1b[0m"]
        for paragraph in str(self).split("\n"):
            lines.extend(textwrap.wrap(paragraph, 110) or [""])
        return lines


def fail(message: str) -> None:
    """Raise :class:`CheckFailed` with ``message``, chained to nothing (no grader context shown)."""
    __tracebackhide__ = True
    raise CheckFailed(message) from None
