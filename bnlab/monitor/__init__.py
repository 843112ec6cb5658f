"""A live training monitor: loss/accuracy curves, progress and timing in one notebook panel.

Students call :class:`TrainingMonitor` from the training loops (or pass
:meth:`TrainingMonitor.keras_callback` to ``model.fit``) and watch one panel grow:

- loss and accuracy curves, one color per run; solid lines are training points (every 25
  batches), dashed lines with markers are validation points (every 100 batches);
- a progress bar, batches done, batches per second, elapsed and remaining time;
- where training runs (:func:`bnlab.device.describe`, asked once per process), in the panel's
  header and under the chart's title;
- the best and final figures of every run.

The package keeps one responsibility per module:

- :mod:`bnlab.monitor.core`: the history and events (:class:`TrainingMonitor`, :class:`Run`) and
  the small :class:`~bnlab.monitor.core.Display` interface every way of showing them implements;
- :mod:`bnlab.monitor.widget`: the ipywidgets panel (``mode="widget"``), throttled redraws and
  the static PNG it leaves at close;
- :mod:`bnlab.monitor.text`: the original exercise's log lines (``"text"``) and ``"silent"``;
- :mod:`bnlab.monitor.figure`: the off-screen matplotlib chart and its legend labels;
- :mod:`bnlab.monitor.keras`: the ``model.fit`` callback;
- :mod:`bnlab.monitor.formats`: durations and metric names as the displays write them.

``mode="auto"`` (the default) is ``"widget"`` inside a Jupyter kernel with ipywidgets installed,
``"text"`` otherwise. A monitor never crashes training: if the panel fails, the monitor prints
one warning line to stdout and swaps it for the text display.

:attr:`TrainingMonitor.redraw_count` and :attr:`TrainingMonitor.draw_seconds` measure the plotting cost.
"""

from __future__ import annotations

from bnlab.monitor.core import COLORS, MODES, TRAIN_FORMAT, VALIDATION_FORMAT, Display, Run, TrainingMonitor
from bnlab.monitor.widget import LOG_LINES, device_line

__all__ = [
    "TrainingMonitor",
    "Run",
    "Display",
    "TRAIN_FORMAT",
    "VALIDATION_FORMAT",
    "MODES",
    "COLORS",
    "LOG_LINES",
    "device_line",
]
