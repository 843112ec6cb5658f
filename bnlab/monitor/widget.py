"""The monitor's live panel in a notebook: one ipywidgets panel updated in place.

The panel is a VBox of an HTML header (title and training device), the PNG of an off-screen
:class:`~bnlab.monitor.figure.ChartFigure`, a progress bar, a status table and the last log
lines. The cheap parts (progress, status, log) follow the training every ``min_interval``
seconds; the chart is rendered only as often as its cost allows (``max_overhead`` of the wall
time). At close the panel is replaced, through its display id, by one static PNG of the final
figure, so an executed or saved notebook keeps a picture instead of a dead widget.
"""

from __future__ import annotations

import collections
import functools
import html
import time

from bnlab.monitor.figure import ChartFigure
from bnlab.monitor.formats import format_duration, metric_label

__all__ = ["WidgetDisplay", "available", "device_line", "device_caption", "LOG_LINES"]

LOG_LINES = 12
_LOG_PRE = "<pre style='font-size:80%;margin:0'>"
_STATUS_COLUMNS = ("run", "batches", "speed", "elapsed", "remaining", "best val acc", "last val acc", "final")


@functools.lru_cache(maxsize=1)
def device_line() -> str:
    """:func:`bnlab.device.describe`, computed once per process (never raises)."""
    try:
        from bnlab.device import describe

        return describe()
    except Exception as exc:  # the monitor must not fail on the device report
        return f"device unknown ({type(exc).__name__})"


def device_caption() -> str:
    """The device part of :func:`device_line`, short enough for the chart:
    ``"trains on the CPU (2 cores)"`` or ``"trains on 1 GPU(s): NVIDIA H100 80GB HBM3"``."""
    line = device_line().split(";", 1)[0]
    _, found, where = line.partition(" will train on ")
    return f"trains on {where}" if found else line


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter kernel (a ZMQ-connected IPython), where widgets can be shown."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    return type(shell).__name__ == "ZMQInteractiveShell" or getattr(shell, "kernel", None) is not None


def available() -> bool:
    """True where a panel can be shown: inside a Jupyter kernel with ipywidgets installed."""
    if not in_jupyter_kernel():
        return False
    try:
        import ipywidgets  # noqa: F401
    except Exception:
        return False
    return True


class WidgetDisplay:
    """The live panel of a :class:`~bnlab.monitor.TrainingMonitor` (its ``"widget"`` mode).

    With ``monitor.render_only``, or outside a Jupyter kernel, it renders and updates the widgets
    without displaying them (what the course's monitor benchmark measures). It adds its
    chart renders to ``monitor.redraw_count`` and its whole drawing time to ``monitor.draw_seconds``.
    """

    mode = "widget"

    def __init__(self, monitor):
        import ipywidgets as widgets

        self._monitor = monitor
        self.figure = ChartFigure(monitor.title, caption=device_caption())
        self._log_lines: collections.deque[tuple[str, str]] = collections.deque(maxlen=LOG_LINES)
        self._last_chart: float | None = None
        self._last_text: float | None = None
        self._chart_costs: collections.deque[float] = collections.deque(maxlen=2)
        self._dirty = False
        self._closed = False
        self.widgets = {
            "header": widgets.HTML(
                f"<b>{html.escape(monitor.title)}</b><br><span style='font-size:85%'>"
                f"{html.escape(device_line())}</span>"
            ),
            # hidden until it holds a chart: an empty image shows as a broken-image icon
            "image": widgets.Image(format="png", layout=widgets.Layout(max_width="100%", display="none")),
            "progress": widgets.IntProgress(
                value=0,
                min=0,
                max=max(monitor.total_batches or 1, 1),
                description="batches",
                bar_style="info",
                layout=widgets.Layout(width="60%"),
            ),
            "status": widgets.HTML("<i>waiting for the first batches…</i>"),
            "log": widgets.HTML(""),
        }
        self.widgets["panel"] = widgets.VBox(
            [self.widgets[key] for key in ("header", "image", "progress", "status", "log")]
        )
        self._handle = None
        if not monitor.render_only and in_jupyter_kernel():
            from IPython.display import display

            self._handle = display(self.widgets["panel"], display_id=True)

    # -- the Display interface -------------------------------------------------------------
    def log(self, run, line: str) -> None:
        self._log_lines.append((run.name, line))
        self._dirty = True
        self._refresh()

    def finish(self, run) -> None:
        self._dirty = True
        self._refresh(force=True)

    def close(self, summary: str) -> None:
        """The final chart as a static PNG in place of the panel, then the summary line."""
        if self._dirty or self._last_chart is None:
            self._draw_chart()
        png = self.widgets["image"].value
        if self._handle is not None:
            from IPython.display import Image

            self._handle.update(Image(data=bytes(png), format="png"))
        # Empty the widgets before closing them, so that a notebook executed headless (whose
        # widget state nbclient stores in the metadata) does not keep a second copy of the PNG.
        self.widgets["image"].value = b""
        self.widgets["log"].value = ""
        for widget in self.widgets.values():
            widget.close()
        self._closed = True
        self._monitor.print(summary)

    def backlog(self) -> list[str]:
        """The log lines the panel showed (the text display that replaces it prints them)."""
        lines = [line for _, line in self._log_lines]
        self._log_lines.clear()
        return lines

    # -- drawing ---------------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        """The chart when due (or ``force``), else the cheap parts every ``min_interval``."""
        if self._closed or not self._dirty:
            return
        monitor = self._monitor
        now = monitor._clock()
        if force or self._chart_due(now):
            self._draw_chart()
            self._last_chart = self._last_text = monitor._clock()
        elif self._last_text is None or now - self._last_text >= monitor.min_interval:
            started = time.perf_counter()
            self.refresh_text()
            monitor.draw_seconds += time.perf_counter() - started  # the panel's whole cost counts
            self._last_text = now

    def _chart_due(self, now: float) -> bool:
        if self._last_chart is None:
            return True
        wait = self._monitor.min_interval
        if len(self._chart_costs) >= 2:
            # The cheaper of the last two renders: one slow render (fonts loading) is no trend.
            wait = max(wait, min(self._chart_costs) / max(self._monitor.max_overhead, 1e-6))
        return now - self._last_chart >= wait

    def _draw_chart(self) -> None:
        """Render the chart and refresh everything else."""
        started = time.perf_counter()
        self.widgets["image"].value = self.figure.render(self._monitor.history.values())
        self.widgets["image"].layout.display = ""
        self.refresh_text()
        self._dirty = False
        cost = time.perf_counter() - started
        self._monitor.redraw_count += 1
        self._monitor.draw_seconds += cost
        self._chart_costs.append(cost)

    def refresh_text(self) -> None:
        """Progress bar, status table and log: cheap, so they follow the training closely."""
        w = self.widgets
        run = self._monitor.current
        if run is not None:
            total = run.total_batches or max(run.batches_done, 1)
            w["progress"].max = max(total, 1)
            w["progress"].value = min(run.batches_done, total)
            w["progress"].description = f"{run.batches_done}/{run.total_batches or '?'}"
            w["progress"].bar_style = "success" if run.finished else "info"
        w["status"].value = self.status_html()
        several = len(self._monitor.history) > 1
        lines = [f"[{name}] {line}" if several else line for name, line in self._log_lines]
        w["log"].value = _LOG_PRE + html.escape("\n".join(lines)) + "</pre>"

    def log_lines(self) -> list[str]:
        """The lines the panel's log shows now."""
        value = self.widgets["log"].value
        return html.unescape(value.removeprefix(_LOG_PRE).removesuffix("</pre>")).splitlines()

    def status_html(self) -> str:
        """One row per run, with the full run name (the legend may shorten it)."""
        rows = []
        for run in self._monitor.history.values():
            rate = run.batches_per_second()
            best = run.best("validation")
            last_val = run.last("validation")
            finals = ", ".join(f"{metric_label(k)} {v:.4f}" for k, v in run.final.items())
            cells = [
                f"<span style='color:{run.color}'>&#9632;</span> {html.escape(run.name)}",
                f"{run.batches_done}/{run.total_batches or '?'}",
                f"{rate:.1f}/s" if rate else "–",
                format_duration(run.elapsed()),
                "done" if run.done else format_duration(run.remaining()),
                f"{best[2]:.4f} @ {best[0]}" if best else "–",
                f"{last_val[2]:.4f}" if last_val else "–",
                html.escape(finals) or "–",
            ]
            rows.append("<tr>" + "".join(f"<td style='padding:0 8px'>{c}</td>" for c in cells) + "</tr>")
        head = "".join(f"<th style='padding:0 8px;text-align:left'>{h}</th>" for h in _STATUS_COLUMNS)
        return f"<table style='font-size:85%'><tr>{head}</tr>{''.join(rows)}</table>"
