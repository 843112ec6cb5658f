"""The monitor's plain displays: nothing at all, or the original exercise's log lines."""

from __future__ import annotations

__all__ = ["SilentDisplay", "TextDisplay"]


class SilentDisplay:
    """Shows nothing: the monitor only records the history."""

    mode = "silent"

    def log(self, run, line: str) -> None:
        pass

    def finish(self, run) -> None:
        pass  # text and silence have nothing to redraw; the summary at close says it all

    def close(self, summary: str) -> None:
        pass

    def backlog(self) -> list[str]:
        return []  # nothing is held back: every line is printed already, or never shown


class TextDisplay(SilentDisplay):
    """Prints each log line as it comes, and the summary at close.

    With several runs a ``--- run name ---`` line comes before each run's first line. Also the
    display a monitor falls back to when its panel fails.
    """

    mode = "text"

    def __init__(self, monitor):
        self._monitor = monitor
        self._announced: set[str] = set()

    def log(self, run, line: str) -> None:
        if len(self._monitor.history) > 1 and run.name not in self._announced:
            self._monitor.print(f"--- {run.name} ---")
        self._announced.add(run.name)
        self._monitor.print(line)

    def close(self, summary: str) -> None:
        self._monitor.print(summary)
