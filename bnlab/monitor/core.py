"""The monitor's history and events: :class:`TrainingMonitor` and its :class:`Run` objects.

A monitor records every point of every run and hands each event to one *display* (see
:class:`Display`): the widget panel (:mod:`bnlab.monitor.widget`), text lines or nothing
(:mod:`bnlab.monitor.text`). A display that raises is swapped for a text display, so the monitor
never stops training.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Protocol

from bnlab.monitor.formats import format_duration, metric_label  # noqa: F401  (part of this module's API)

__all__ = ["TrainingMonitor", "Run", "Display", "TRAIN_FORMAT", "VALIDATION_FORMAT", "MODES", "COLORS"]

#: The original exercise's log lines.
TRAIN_FORMAT = "Batch: {batch:>3}: Training loss: {loss:>3.5f}, Training accuracy: {acc:>3.5f}"
VALIDATION_FORMAT = "Batch: {batch:>3}: Validation loss: {loss:>3.5f}, Validation accuracy: {acc:>3.5f}"

MODES = ("auto", "widget", "text", "silent")
SPLITS = ("train", "validation")
# matplotlib's "tab10" colors, so that run colors do not depend on the style in effect.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

Point = tuple[int, float, float]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")


class Display(Protocol):
    """One way of showing a monitor. Displays are built with the monitor they show.

    ``mode`` is the name :attr:`TrainingMonitor.mode` reports. Any method may raise: the monitor
    then swaps the display for a text display, which first prints :meth:`backlog`.
    """

    mode: str

    def log(self, run: "Run", line: str) -> None:
        """A point was recorded; ``line`` is the original exercise's log line for it."""

    def finish(self, run: "Run") -> None:
        """``run`` finished (or got new final figures)."""

    def close(self, summary: str) -> None:
        """Leave the final picture (and print ``summary`` if this display prints)."""

    def backlog(self) -> list[str]:
        """Log lines this display showed only in a form that is lost when it is swapped out."""


class Run:
    """One training run of a :class:`TrainingMonitor` (one color in the panel).

    Attributes
    ----------
    name:
        The label in the legend and the summary.
    train, validation:
        Lists of ``(batch, loss, accuracy)`` tuples in the order they were logged.
    final:
        The figures passed to :meth:`finish` (e.g. ``test_accuracy``).
    total_batches:
        Planned number of batches (for the progress bar and remaining time), or ``None``.
    """

    def __init__(self, monitor: "TrainingMonitor", name: str, total_batches: int | None, color: str):
        self._monitor = monitor
        self.name = name
        self.total_batches = total_batches
        self.color = color
        self.train: list[Point] = []
        self.validation: list[Point] = []
        self.final: dict[str, float] = {}
        self.finished = False
        self.batches_done = 0
        self.start_time = monitor._clock()
        self.end_time: float | None = None

    # -- recording -------------------------------------------------------------------------
    def start(self) -> None:
        """(Re)start this run's clock: elapsed time and batches per second count from now."""
        self.start_time = self._monitor._clock()
        self.end_time = None

    def log(self, batch: int, loss: float, accuracy: float, split: str = "train") -> None:
        """Record one point: ``batch`` batches done (1-based), the loss and accuracy on ``split``.

        ``split`` is ``"train"`` or ``"validation"``. In text mode the original exercise's line
        is printed; in widget mode it goes to the panel's log and the panel redraws (throttled).
        """
        _check_split(split)
        point = (int(batch), float(loss), float(accuracy))
        self.points(split).append(point)
        self.batches_done = max(self.batches_done, point[0])
        if self.done and self.end_time is None:  # all batches logged: the clock stops even without finish()
            self.end_time = self._monitor._clock()
        self._monitor._on_log(self, split, point)

    @property
    def done(self) -> bool:
        """Finished, or all ``total_batches`` batches logged."""
        return self.finished or (self.total_batches is not None and self.batches_done >= self.total_batches)

    def finish(self, **final_metrics: float) -> None:
        """Mark the run as done and record its final figures (floats), shown in panel and summary.

        May be called more than once; later figures are merged into :attr:`final`.
        """
        self.final.update({key: float(value) for key, value in final_metrics.items()})
        if not self.finished:
            self.finished = True
            self.end_time = self._monitor._clock()
        self._monitor._on_finish(self)

    # -- figures ---------------------------------------------------------------------------
    def points(self, split: str = "validation") -> list[Point]:
        """The list of points logged on ``split`` (``"train"`` or ``"validation"``)."""
        _check_split(split)
        return self.train if split == "train" else self.validation

    def best(self, split: str = "validation") -> Point | None:
        """The ``(batch, loss, accuracy)`` point with the highest accuracy (earliest on ties)."""
        best = None
        for point in self.points(split):
            if best is None or point[2] > best[2]:
                best = point
        return best

    def last(self, split: str = "validation") -> Point | None:
        """The last ``(batch, loss, accuracy)`` point logged on ``split``, or ``None``."""
        points = self.points(split)
        return points[-1] if points else None

    def elapsed(self) -> float:
        """Seconds since the run started (frozen when it finished)."""
        end = self.end_time if self.end_time is not None else self._monitor._clock()
        return max(end - self.start_time, 0.0)

    def batches_per_second(self) -> float | None:
        """Average speed since the run started, or ``None`` before any time has passed."""
        elapsed = self.elapsed()
        if elapsed <= 0 or self.batches_done <= 0:
            return None
        return self.batches_done / elapsed

    def remaining(self) -> float | None:
        """Estimated seconds until ``total_batches``, or ``None`` when unknown."""
        if self.done:
            return 0.0
        rate = self.batches_per_second()
        if self.total_batches is None or rate is None:
            return None
        return max(self.total_batches - self.batches_done, 0) / rate

    def summary(self) -> str:
        """``name: best val acc 0.9712 @ batch 700, final val 0.9690, test acc 0.9600``."""
        parts = []
        best = self.best("validation")
        if best is not None:
            parts.append(f"best val acc {best[2]:.4f} @ batch {best[0]}")
            final_val = self.final.get("validation_accuracy", self.validation[-1][2])
            parts.append(f"final val {final_val:.4f}")
        elif self.train:
            batch, _, acc = self.train[-1]
            parts.append(f"final train acc {acc:.4f} @ batch {batch}")
        for key, value in self.final.items():
            if key == "validation_accuracy" and best is not None:
                continue
            parts.append(f"{metric_label(key)} {value:.4f}")
        return f"{self.name}: " + (", ".join(parts) if parts else "no data")

    def __repr__(self) -> str:
        return (
            f"Run({self.name!r}, train={len(self.train)} points, "
            f"validation={len(self.validation)} points, final={self.final})"
        )


class TrainingMonitor:
    """A live panel of loss/accuracy curves for one or more training runs.

    Use it as a context manager, or call :meth:`close` when training is over.
    :attr:`redraw_count` and :attr:`draw_seconds` say how often and how long the panel drew.

    Args:
        title: shown above the curves.
        total_batches: default planned number of batches of each run (progress bar, remaining time).
        mode: ``"auto"`` | ``"widget"`` | ``"text"`` | ``"silent"`` (see :mod:`bnlab.monitor`).
        min_interval: minimum seconds between two redraws of the panel (a last redraw is forced at close).
        max_overhead: redraws are also spaced so that rendering takes at most this fraction of wall time.
        render_only: in widget mode, render the figure (and update widgets) but never display anything.
        clock: function returning seconds (default :func:`time.monotonic`); injectable for tests.
        stream: where text mode and the summary print (default: ``sys.stdout`` at print time).
    """

    def __init__(
        self,
        title: str = "Training",
        total_batches: int | None = None,
        mode: str = "auto",
        *,
        min_interval: float = 0.5,
        max_overhead: float = 0.03,
        render_only: bool = False,
        clock: Callable[[], float] | None = None,
        stream=None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.title = title
        self.total_batches = total_batches
        self.min_interval = float(min_interval)
        self.max_overhead = float(max_overhead)
        self.render_only = bool(render_only)
        self._clock = clock or time.monotonic
        self._stream = stream
        self.history: dict[str, Run] = {}
        self.redraw_count = 0
        self.draw_seconds = 0.0
        self.closed = False
        self.current: Run | None = None  # the run that logged last (the progress bar follows it)

        from bnlab.monitor import text, widget

        if mode == "auto":
            mode = "widget" if widget.available() else "text"
        self.display: Display = text.SilentDisplay() if mode == "silent" else text.TextDisplay(self)
        if mode == "widget":  # text lines stay the display if the panel cannot be built
            self._call(self._open_panel, widget.WidgetDisplay)

    @property
    def mode(self) -> str:
        """``"widget"``, ``"text"`` or ``"silent"``: how the monitor shows itself now."""
        return self.display.mode

    # -- public API ------------------------------------------------------------------------
    def run(self, name: str, total_batches: int | None = None) -> Run:
        """Start a new run called ``name`` (one color), optionally with its own ``total_batches``.

        A name already used returns that run again.
        """
        if name in self.history:
            return self.history[name]
        color = COLORS[len(self.history) % len(COLORS)]
        run = Run(self, name, total_batches if total_batches is not None else self.total_batches, color)
        self.history[name] = run
        self.current = run
        return run

    def keras_callback(self, name: str, log_every: int = 25, total_batches: int | None = None):
        """A ``keras.callbacks.Callback`` that logs ``model.fit`` into the run ``name``.

        Every ``log_every`` batches (counted over all epochs) it logs ``logs["loss"]`` and the
        first accuracy-like entry of the logs as a training point; at each epoch end it logs
        ``val_loss`` and the first ``val_*acc*`` entry as a validation point, when present.
        Keras reports running averages over the current epoch. The run is finished at the end
        of training (call ``run.finish(...)`` again to add test figures).
        """
        from bnlab.monitor.keras import make_keras_callback

        return make_keras_callback(self, name, int(log_every), total_batches)

    def summary(self) -> str:
        """One line: ``Summary: run: best val acc … @ batch …, final val … | other run: …``."""
        if not self.history:
            return f"Summary: {self.title}: no runs"
        return "Summary: " + " | ".join(run.summary() for run in self.history.values())

    def close(self) -> None:
        """Final redraw, static figure in place of the live panel, one summary line. Idempotent.

        Returns ``None`` (so that a cell ending in ``monitor.close()`` does not show the summary
        twice); :meth:`summary` gives the line.
        """
        if self.closed:
            return
        self.closed = True
        summary = self.summary()
        if not self._call(self.display.close, summary):
            self.display.close(summary)  # the text display that replaced the failed one

    def __enter__(self) -> "TrainingMonitor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TrainingMonitor({self.title!r}, mode={self.mode!r}, runs={list(self.history)})"

    # -- events ----------------------------------------------------------------------------
    def print(self, text: str) -> None:
        """Print one line to the monitor's stream (``sys.stdout`` unless one was given)."""
        print(text, file=self._stream or sys.stdout, flush=True)

    def _on_log(self, run: Run, split: str, point: Point) -> None:
        self.current = run
        fmt = TRAIN_FORMAT if split == "train" else VALIDATION_FORMAT
        self._call(self.display.log, run, fmt.format(batch=point[0], loss=point[1], acc=point[2]))

    def _on_finish(self, run: Run) -> None:
        self._call(self.display.finish, run)

    def _open_panel(self, display_class: Callable[["TrainingMonitor"], Display]) -> None:
        self.display = display_class(self)

    def _call(self, method: Callable, *args) -> bool:
        """``method(*args)``; on any exception swap the display for text lines. True on success."""
        try:
            method(*args)
        except Exception as exc:  # the monitor must never stop training
            self._fall_back(exc)
            return False
        return True

    def _fall_back(self, exc: BaseException) -> None:
        """Swap the failed display for a text display, with one warning line on stdout."""
        from bnlab.monitor.text import TextDisplay

        failed, self.display = self.display, TextDisplay(self)
        self.print(
            f"bnlab.monitor: the live panel failed ({type(exc).__name__}: {exc}); continuing with text progress lines."
        )
        try:
            backlog = failed.backlog()
        except Exception:  # a broken display may not even give its lines back
            backlog = []
        for line in backlog:
            self.print(line)
