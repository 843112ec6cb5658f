"""Tests of bnlab.monitor: history, summary, throttling, display fallback, legend, Keras callback,
headless run, and the simulated-workload benchmark bnlab.instructor.bench.monitor."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from bnlab import monitor as mon
from bnlab.monitor import TrainingMonitor
from bnlab.monitor.figure import LEGEND_WIDTH, legend_labels, shorten_middle
from bnlab.monitor.widget import device_caption, device_line

NOTEBOOK = Path(__file__).parent / "notebooks" / "monitor_headless.ipynb"


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fill(run, batches=800, clock=None, step=0.0):
    """Log like the exercise: train every 25 batches, validation every 100."""
    for batch in range(1, batches + 1):
        if clock is not None:
            clock.advance(step)
        if batch % 25 == 0:
            run.log(batch, 1.0 / batch, batch / (batches + 10), split="train")
        if batch % 100 == 0:
            run.log(batch, 1.5 / batch, batch / (batches + 20), split="validation")


def test_history_best_final_and_summary():
    monitor = TrainingMonitor("t", total_batches=800, mode="silent")
    with_bn = monitor.run("with BN")
    without = monitor.run("without BN")
    with_bn.log(100, 0.5, 0.90, split="validation")
    with_bn.log(200, 0.3, 0.97, split="validation")
    with_bn.log(300, 0.35, 0.97, split="validation")  # tie: the earliest point is the best
    with_bn.log(400, 0.4, 0.96, split="validation")
    with_bn.log(25, 2.0, 0.3)
    without.log(100, 2.3, 0.11, split="validation")
    with_bn.finish(test_accuracy=0.955, single_sample_accuracy=0.98)

    assert monitor.history == {"with BN": with_bn, "without BN": without}
    assert monitor.run("with BN") is with_bn
    assert with_bn.train == [(25, 2.0, 0.3)]
    assert [p[0] for p in with_bn.validation] == [100, 200, 300, 400]
    assert with_bn.best() == (200, 0.3, 0.97)
    assert with_bn.best("train") == (25, 2.0, 0.3)
    assert with_bn.batches_done == 400
    assert with_bn.final == {"test_accuracy": 0.955, "single_sample_accuracy": 0.98}
    assert with_bn.finished and not without.finished
    assert monitor.summary() == (
        "Summary: with BN: best val acc 0.9700 @ batch 200, final val 0.9600, test acc 0.9550, "
        "single sample acc 0.9800 | without BN: best val acc 0.1100 @ batch 100, final val 0.1100"
    )
    with pytest.raises(ValueError):
        with_bn.log(1, 0.1, 0.1, split="test")


def test_final_validation_accuracy_overrides_last_point_and_empty_runs():
    monitor = TrainingMonitor("t", mode="silent")
    run = monitor.run("a")
    assert run.best() is None
    assert monitor.summary() == "Summary: a: no data"
    run.log(50, 0.2, 0.8)
    assert monitor.summary() == "Summary: a: final train acc 0.8000 @ batch 50"
    run.log(100, 0.2, 0.9, split="validation")
    run.finish(validation_accuracy=0.93)
    assert monitor.summary() == "Summary: a: best val acc 0.9000 @ batch 100, final val 0.9300"


def test_timing_uses_the_clock():
    clock = FakeClock()
    monitor = TrainingMonitor("t", total_batches=800, mode="silent", clock=clock)
    run = monitor.run("r")
    clock.advance(10.0)
    run.log(200, 0.5, 0.5)
    assert run.elapsed() == pytest.approx(10.0)
    assert run.batches_per_second() == pytest.approx(20.0)
    assert run.remaining() == pytest.approx(30.0)
    run.finish()
    clock.advance(100.0)
    assert run.elapsed() == pytest.approx(10.0)
    assert run.remaining() == 0.0


def test_text_mode_prints_the_original_lines(capsys):
    monitor = TrainingMonitor("t", total_batches=200, mode="text")
    run = monitor.run("only run")
    fill(run, 200)
    run.finish()
    assert monitor.close() is None
    monitor.close()  # idempotent, prints once
    line = monitor.summary()
    out, err = capsys.readouterr()
    expected = []
    for batch in range(1, 201):
        if batch % 25 == 0:
            expected.append(
                f"Batch: {batch:>3}: Training loss: {1.0 / batch:>3.5f}, Training accuracy: {batch / 210:>3.5f}"
            )
        if batch % 100 == 0:
            expected.append(
                f"Batch: {batch:>3}: Validation loss: {1.5 / batch:>3.5f}, Validation accuracy: {batch / 220:>3.5f}"
            )
    assert out.splitlines() == expected + [line]
    assert out.splitlines()[0] == "Batch:  25: Training loss: 0.04000, Training accuracy: 0.11905"
    assert err == ""


def test_silent_mode_prints_nothing(capsys):
    with TrainingMonitor("t", mode="silent") as monitor:
        fill(monitor.run("r"), 100)
    assert monitor.closed
    assert capsys.readouterr() == ("", "")


def test_auto_mode_outside_jupyter_is_text():
    assert TrainingMonitor("t", mode="auto").mode == "text"
    with pytest.raises(ValueError):
        TrainingMonitor("t", mode="fancy")


def test_widget_rendering_is_throttled(capsys):
    clock = FakeClock()
    monitor = TrainingMonitor("t", total_batches=2000, mode="widget", clock=clock, min_interval=0.5)
    assert monitor.mode == "widget"
    run = monitor.run("r")
    # 2000 batches at 1 ms each: 2 s of (fake) training and 100 log calls.
    fill(run, 2000, clock=clock, step=0.001)
    assert monitor.redraw_count <= 2.0 / 0.5 + 1
    clock.advance(10.0)
    count = monitor.redraw_count
    run.log(2001, 0.1, 0.9)  # long after the previous redraw: draws
    assert monitor.redraw_count == count + 1
    clock.advance(0.1)
    run.log(2002, 0.1, 0.9)  # too soon after the previous redraw: only recorded
    count = monitor.redraw_count
    monitor.close()  # forced final redraw
    assert monitor.redraw_count == count + 1
    assert monitor.draw_seconds > 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [monitor.summary()]  # no log lines in widget mode, only the summary
    assert err == ""


def test_widget_mode_keeps_the_log_in_the_panel():
    clock = FakeClock()
    monitor = TrainingMonitor("t", total_batches=800, mode="widget", clock=clock, stream=io.StringIO())
    a, b = monitor.run("a"), monitor.run("b")
    fill(a, 800, clock=clock, step=0.01)
    fill(b, 400, clock=clock, step=0.01)
    monitor.display.refresh_text()
    lines = monitor.display.log_lines()
    assert len(lines) == mon.LOG_LINES
    assert lines[-1].startswith("[b] Batch: 400: Validation loss:")  # the newest line is shown
    assert all(line.startswith(("[a] ", "[b] ")) for line in lines)  # every run labelled alike
    png = monitor.display.widgets["image"].value
    assert bytes(png[:8]) == b"\x89PNG\r\n\x1a\n"
    assert "best val acc" in monitor.display.widgets["status"].value


def test_rendering_failure_falls_back_to_text(monkeypatch, capsys):
    monitor = TrainingMonitor("t", total_batches=100, mode="widget")

    def broken(runs):
        raise RuntimeError("no canvas")

    monkeypatch.setattr(monitor.display.figure, "render", broken)
    run = monitor.run("r")
    fill(run, 100)  # must not raise
    monitor.close()
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert monitor.mode == "text"
    assert lines[0].startswith("bnlab.monitor: the live panel failed (RuntimeError: no canvas)")
    assert sum("failed" in line for line in lines) == 1
    assert lines[1].startswith("Batch:  25: Training loss:")
    assert lines[-1] == monitor.summary()
    assert err == ""


def test_keras_callback_records_points():
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = rng.integers(0, 2, size=64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    monitor = TrainingMonitor("keras", mode="silent")
    callback = monitor.keras_callback("dense", log_every=2)
    assert isinstance(callback, keras.callbacks.Callback)
    model.fit(x, y, batch_size=8, epochs=2, validation_data=(x[:16], y[:16]), verbose=0, callbacks=[callback])
    run = monitor.history["dense"]
    assert [p[0] for p in run.train] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [p[0] for p in run.validation] == [8, 16]
    for _, loss, acc in run.train + run.validation:
        assert loss > 0 and 0.0 <= acc <= 1.0
    assert run.total_batches == 16
    assert run.finished


@pytest.mark.slow
def test_headless_notebook_keeps_one_static_figure(tmp_path):
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    nbformat.write(nb, tmp_path / "executed.ipynb")
    saved = nbformat.read(tmp_path / "executed.ipynb", as_version=4)

    code_cells = [cell for cell in saved.cells if cell.cell_type == "code"]
    outputs = code_cells[0].outputs
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1
    assert all("application/vnd.jupyter.widget-view+json" not in o.get("data", {}) for o in outputs)
    text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    acc = 1 - 0.92 * math.exp(-200 / 60)
    assert text.splitlines() == [
        f"Summary: fake: best val acc {acc:.4f} @ batch 200, final val {acc:.4f}, test acc 0.9000"
    ]
    assert len(outputs) == 2
    for cell in code_cells:
        assert all(o.get("name") != "stderr" for o in cell.outputs), cell.outputs
        assert all(o.output_type != "error" for o in cell.outputs), cell.outputs
    assert "mode: widget" in code_cells[1].outputs[0].text
    # The widgets were emptied before closing: no second copy of the PNG in the metadata.
    assert len(json.dumps(saved.metadata.get("widgets", {}))) < 20000
    assert len(pngs[0].data["image/png"]) > 1000


def test_progress_and_status_follow_training_between_chart_redraws():
    clock = FakeClock()
    monitor = TrainingMonitor(
        "t", total_batches=400, mode="widget", clock=clock, min_interval=0.5, max_overhead=1e-6
    )  # a chart is "expensive": redrawn rarely
    run = monitor.run("r")
    run.log(25, 1.0, 0.1)
    run.log(50, 1.0, 0.1)
    clock.advance(1.0)
    run.log(75, 1.0, 0.1)  # the second render: with two costs known the chart now waits long
    charts = monitor.redraw_count
    for batch in (100, 125, 150):
        clock.advance(1.0)
        run.log(batch, 0.5, 0.5)
    assert monitor.redraw_count == charts  # no new chart ...
    assert monitor.display.widgets["progress"].value == 150  # ... but the progress bar moved
    assert "150/400" in monitor.display.widgets["status"].value


def test_a_run_whose_batches_are_all_logged_stops_its_clock():
    clock = FakeClock()
    monitor = TrainingMonitor("t", total_batches=100, mode="silent", clock=clock)
    a = monitor.run("a")
    fill(a, 100, clock=clock, step=0.01)
    elapsed = a.elapsed()
    b = monitor.run("b")
    fill(b, 50, clock=clock, step=0.01)  # a never called finish(): its figures must not drift
    assert a.done and not a.finished
    assert a.elapsed() == elapsed and a.remaining() == 0.0
    assert not b.done and b.remaining() > 0


# -- legend labels (the lesson's comparison names differ only at their end) ---------------------------
LONG_A = "lr=1, sigmoid, normal-0.001, no BN"
LONG_B = "lr=1, sigmoid, normal-0.001, with BN"


def test_shorten_middle_keeps_both_ends():
    assert shorten_middle("short", 10) == "short"
    short = shorten_middle(LONG_B, 20)
    assert len(short) <= 20 and short.startswith("lr=1") and short.endswith("with BN") and "…" in short
    with pytest.raises(ValueError, match="at least 3"):
        shorten_middle(LONG_B, 2)


def test_long_names_differing_only_at_the_end_get_distinct_legend_labels():
    title, labels = legend_labels([LONG_A, LONG_B])
    assert title == "lr=1, sigmoid, normal-0.001"  # what they share, said once
    assert labels == ["no BN", "with BN"]
    title, labels = legend_labels([LONG_A, LONG_B], width=12)  # a title too long is shortened too
    assert title == "lr=1, s…al-0.001" and len(title) == 12 + 4 and labels == ["no BN", "with BN"]
    # four runs of two settings: nothing shared, every label still different and within the width
    names = [LONG_A, LONG_B, "lr=0.01, sigmoid, normal-0.001, no BN", "lr=0.01, sigmoid, normal-0.001, with BN"]
    title, labels = legend_labels(names)
    assert title == "" and len(set(labels)) == 4 and all(len(label) <= LEGEND_WIDTH for label in labels)
    assert all(label.endswith(("no BN", "with BN")) for label in labels)
    # names that differ only in the middle: numbered rather than merged
    names = ["x" * 30 + "a" + "y" * 30, "x" * 30 + "b" + "y" * 30]
    _, labels = legend_labels(names, width=12)
    assert len(set(labels)) == 2 and labels[0].startswith("1: ") and labels[1].startswith("2: ")
    # short names are kept whole
    assert legend_labels(["with BN", "no BN"]) == ("", ["with BN", "no BN"])


def test_rendered_legend_tells_the_two_runs_apart():
    monitor = TrainingMonitor("t", total_batches=100, mode="widget", stream=io.StringIO())
    for name in (LONG_A, LONG_B):
        fill(monitor.run(name), 100)
    monitor.close()
    texts = monitor.display.figure.legend_texts()
    run_labels = texts[1:3]  # after the title: one label per run, then "train" and "validation"
    assert texts[0] == "lr=1, sigmoid, normal-0.001"
    assert len(set(run_labels)) == 2 and run_labels == ["no BN", "with BN"]
    assert texts[3:] == ["train", "validation"]


# -- the device in the panel and in the figure it leaves -----------------------------------------
def test_panel_and_figure_say_where_training_runs(monkeypatch):
    from bnlab.monitor import widget

    monkeypatch.setattr(widget, "device_line", lambda: "TensorFlow 9.9 will train on 1 GPU(s): Fake GPU X1")
    assert device_caption() == "trains on 1 GPU(s): Fake GPU X1"
    monitor = TrainingMonitor("t", total_batches=100, mode="widget", stream=io.StringIO())
    assert "will train on 1 GPU(s): Fake GPU X1" in monitor.display.widgets["header"].value
    captions = [text.get_text() for text in monitor.display.figure.figure.texts]
    assert "trains on 1 GPU(s): Fake GPU X1" in captions
    monitor.close()
    # the real report, whatever this machine has, names the CPU or a GPU
    assert "CPU" in device_line() or "GPU" in device_line()


def test_a_panel_that_cannot_be_built_leaves_text_lines(monkeypatch, capsys):
    from bnlab.monitor import widget

    def broken(*args, **kwargs):
        raise RuntimeError("no matplotlib")

    monkeypatch.setattr(widget, "ChartFigure", broken)
    monitor = TrainingMonitor("t", total_batches=25, mode="widget")
    assert monitor.mode == "text"
    fill(monitor.run("r"), 25)
    monitor.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("bnlab.monitor: the live panel failed (RuntimeError: no matplotlib)")
    assert lines[1].startswith("Batch:  25: Training loss:")
    assert lines[2] == monitor.summary() and len(lines) == 3


def test_a_failing_close_still_prints_the_summary(monkeypatch, capsys):
    monitor = TrainingMonitor("t", total_batches=25, mode="widget")
    fill(monitor.run("r"), 25)

    def broken(summary):
        raise RuntimeError("display gone")

    monkeypatch.setattr(monitor.display, "close", broken)
    monitor.close()
    lines = capsys.readouterr().out.splitlines()
    assert monitor.mode == "text"
    assert lines[0].startswith("bnlab.monitor: the live panel failed (RuntimeError: display gone)")
    assert lines[1].startswith("Batch:  25: Training loss:")  # the panel's log, printed instead
    assert lines[-1] == monitor.summary()


def test_every_display_offers_the_display_interface():
    from bnlab.monitor.core import Display

    names = [name for name in vars(Display) if not name.startswith("_")]
    assert set(names) >= {"log", "finish", "close", "backlog"}
    monitors = [TrainingMonitor("t", mode=mode, stream=io.StringIO()) for mode in ("widget", "text", "silent")]
    for monitor in monitors:
        for name in names:
            assert hasattr(monitor.display, name), (monitor.mode, name)
        monitor.close()
    assert [m.mode for m in monitors] == ["widget", "text", "silent"]


def test_importing_the_monitor_loads_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys; import bnlab.monitor; "
        "print(sorted(m for m in ('tensorflow', 'matplotlib', 'ipywidgets', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_panel_image_is_hidden_until_it_holds_a_chart():
    """An empty ipywidgets Image shows as a broken-image icon in the browser: keep it hidden until drawn."""
    monitor = TrainingMonitor(title="hidden image", total_batches=10, mode="widget")
    run = monitor.run("a")
    image = monitor.display.widgets["image"]
    assert image.layout.display == "none" and not image.value
    run.log(1, 2.0, 0.1)
    monitor.display._draw_chart()
    assert image.value[:4] == b"\x89PNG" and image.layout.display == ""
    monitor.close()
