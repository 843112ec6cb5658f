"""bnlab.training.loop: the one reporting schedule that the exercise, the lesson and the monitor benchmark share."""

from __future__ import annotations

import math

import pytest
from fakes import FakeRun

from bnlab.training import loop


def _fake_step(calls):
    def step(batch):
        calls.append(batch)
        return float(batch), batch / 1000

    return step


def test_schedule_logs_every_25_validates_every_100_and_after_the_last_batch():
    run, steps, validations, last = FakeRun(), [], [], []
    logs = loop.run_schedule(
        130,
        _fake_step(steps),
        lambda b: validations.append(b) or (0.5, 0.9),
        run,
        log_every=25,
        validate_every=100,
        at_last_batch=lambda: last.append(len(steps)),
    )
    assert steps == list(range(1, 131))
    assert [b for b, _, _, split in run.logs if split == "train"] == [25, 50, 75, 100, 125, 130]
    assert [b for b, _, _, split in run.logs if split == "validation"] == [100, 130]
    assert validations == [100, 130]
    assert last == [130], "the hook runs once, after the last step"
    # at the last batch: the training report, then the hook, then validation
    assert [split for b, _, _, split in run.logs if b == 130] == ["train", "validation"]
    assert logs.batch_log == [(float(b), b / 1000) for b in range(1, 131)]
    assert logs.train_log == [(b, float(b), b / 1000) for b in (25, 50, 75, 100, 125, 130)]
    assert logs.validation_log == [(100, 0.5, 0.9), (130, 0.5, 0.9)]
    assert run.final is None, "finishing the run is the caller's"


def test_the_schedule_defaults_to_the_exercise_constants():
    from bnlab.exercise import TRAIN_LOG_EVERY, VALIDATE_EVERY

    run = FakeRun()
    loop.run_schedule(2 * VALIDATE_EVERY, _fake_step([]), lambda b: (0.0, 1.0), run)
    assert [b for b, *_ in run.logs if b % TRAIN_LOG_EVERY] == []
    assert [b for b, _, _, split in run.logs if split == "validation"] == [VALIDATE_EVERY, 2 * VALIDATE_EVERY]


def test_average_reports_the_mean_of_the_interval():
    run = FakeRun()
    logs = loop.run_schedule(6, _fake_step([]), lambda b: (0.0, 1.0), run, log_every=4, validate_every=10, average=True)
    assert logs.train_log == [(4, 2.5, pytest.approx(0.0025)), (6, 5.5, pytest.approx(0.0055))]


def test_figures_are_read_once_per_interval_and_overflow_is_logged_as_nan():
    class Lazy:  # stands in for a device tensor: counts its reads
        reads = 0

        def __init__(self, value):
            self.value = value

        def __float__(self):
            Lazy.reads += 1
            return self.value

    seen = []

    def step(batch):
        seen.append(Lazy.reads)
        return Lazy(math.inf if batch == 5 else 1.0), Lazy(0.5)

    run = FakeRun()
    logs = loop.run_schedule(5, step, lambda b: (math.inf, 0.1), run, log_every=5, validate_every=5)
    assert seen == [0] * 5, "nothing is read before the interval's report"
    assert Lazy.reads == 10
    assert logs.train_log == [(5, math.inf, 0.5)] and logs.validation_log == [(5, math.inf, 0.1)]
    assert all(math.isnan(loss) for _, loss, _, _ in run.logs), "the run sees an overflow as nan"


def test_the_watch_times_the_first_step_as_tracing():
    parts = []

    class Watch:
        def __init__(self, part):
            self.part = part

        def __enter__(self):
            parts.append(self.part)

        def __exit__(self, *exc):
            return False

    loop.run_schedule(3, _fake_step([]), lambda b: (0.0, 1.0), FakeRun(), log_every=3, validate_every=3, watch=Watch)
    assert parts == ["tracing", "steps", "steps", "steps", "monitor", "validation", "monitor"]


def test_after_step_runs_last_in_every_batch():
    events = []

    class Run(FakeRun):
        def log(self, batch, loss, accuracy, split="train"):
            events.append((batch, split))

    loop.run_schedule(
        4,
        lambda b: events.append((b, "step")) or (1.0, 0.5),
        lambda b: (0.0, 1.0),
        Run(),
        log_every=2,
        validate_every=4,
        after_step=lambda b: events.append((b, "after")),
    )
    assert events == [
        (1, "step"),
        (1, "after"),
        (2, "step"),
        (2, "train"),
        (2, "after"),
        (3, "step"),
        (3, "after"),
        (4, "step"),
        (4, "train"),
        (4, "validation"),
        (4, "after"),
    ]


def test_a_silent_run_takes_the_reports():
    logs = loop.run_schedule(3, _fake_step([]), lambda b: (0.5, 0.9), loop.SilentRun(), log_every=2, validate_every=3)
    assert [b for b, *_ in logs.train_log] == [2, 3] and logs.validation_log == [(3, 0.5, 0.9)]
    assert loop.SilentRun().finish(validation_accuracy=1.0) is None


def test_exercise_lesson_recording_and_monitor_benchmark_all_run_this_loop(monkeypatch):
    """The one schedule: each caller's loop goes through :func:`bnlab.training.loop.run_schedule`."""
    import numpy as np
    from fakes import fake_mnist

    from bnlab import diagnostics, lesson, training
    from bnlab.instructor.bench import monitor as bench_monitor
    from bnlab.monitor import TrainingMonitor

    calls = []
    real = loop.run_schedule

    def spy(num_batches, *args, **kwargs):
        calls.append(num_batches)
        return real(num_batches, *args, **kwargs)

    monkeypatch.setattr(loop, "run_schedule", spy)  # for callers that import it when they run
    for module in (training, lesson, diagnostics, bench_monitor):
        if hasattr(module, "run_schedule"):
            monkeypatch.setattr(module, "run_schedule", spy)
    data = fake_mnist()
    run = FakeRun()
    lesson.train_demo(lesson.build_demo_net(True, seed=0), run, data, learning_rate=0.1, num_batches=3, batch_size=20)
    bench_monitor.simulate(TrainingMonitor("t", mode="silent"), 4, lambda: None, "sim")
    tf, keras = training.tf, training.tf.keras
    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))

    def train_step(model, optimizer, images, labels):
        with tf.GradientTape() as tape:
            loss = training.loss_fn(model(images, training=True), labels)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss, model(images, training=False)

    results = training.train(
        model,
        train_step,
        lambda m, x: m(x, training=False),
        data=data,
        num_batches=2,
        monitor=TrainingMonitor(mode="silent"),
        compile=False,
        refresh_batches=0,
    )
    diagnostics.train_and_record(diagnostics.build_exercise_cnn(True), data, 5, batch_size=8, validation_size=8)
    assert calls == [3, 4, 2, 5]
    assert [b for b, *_ in results.train_log] == [2] and len(results.batch_log) == 2
    assert np.isfinite(results.validation_log[-1][1])
