"""The training loop of the 20-layer CNN exercise, shared by every version of the network.

The notebooks write the parts that matter for batch normalization (the layers, ``train_step``
and ``predict``); this module does the rest: mini-batches, Adam, logging every 25 batches and
validation every 100 (:func:`bnlab.training.loop.run_schedule`), the live monitor, and the final
figures of the original exercise (validation accuracy, test accuracy, and the accuracy on the
first 100 test images scored one at a time, which is low exactly when inference does not use
population statistics). The step and the evaluations are :class:`bnlab.training.step.Trainer`'s,
which the lesson's demos and the per-layer recording use too.

Runs are reproducible: with the same ``seed`` on the same machine and TensorFlow version, two
runs give the same losses and accuracies batch by batch (the same initial weights, the same
batches, and TensorFlow's op determinism). Another machine or version may round differently, so
its figures can differ in the last digits and, over 800 batches, by more.

After the last batch the test figures are measured twice. First with the population statistics as the
network's own moving averages left them. Then the population statistics are refreshed
(:mod:`bnlab.training.population`): with the final weights frozen, they are set to the average of the batch
statistics over a few training batches, as Algorithm 2 of Ioffe & Szegedy (2015) prescribes for inference,
rather than left as a moving average that still mixes in the statistics of earlier weights; the final
figures use them. The refresh measures the decay of the
student's update on the way, and the report prints it: a decay of 0.1 in Part 2's layers changes the figures
little (96.5% against 96.6% test accuracy after 800 batches, 2026-12-06), but it shows in that number.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import bnlab
from bnlab import settings
from bnlab.data import Mnist, load_mnist

# the exercise's schedule is defined once, in bnlab.exercise, and the step in bnlab.training.step (re-exported here)
from bnlab.exercise import (  # noqa: F401
    BATCH_SIZE,
    LEARNING_RATE,
    MIN_MOMENTUM,
    MOMENTUM_TOLERANCE,
    NUM_BATCHES,
    SINGLE_SAMPLES,
    TRAIN_LOG_EVERY,
    VALIDATE_EVERY,
)
from bnlab.training.adam import FusedAdam
from bnlab.training.loop import run_schedule
from bnlab.training.step import (  # noqa: F401
    EVAL_CHUNK,
    Trainer,
    accuracy_fn,
    device_batches,
    evaluate,
    loss_fn,
    single_sample_accuracy,
    sparse_loss_fn,
)

tf = bnlab.tf

REFRESH_BATCHES = 16  # training batches averaged into the population statistics after training


def short_num_batches() -> int:
    """Batches per run in short mode (:func:`bnlab.settings.short_batches`: 40, or 10 while the notebook is graded)."""
    return settings.short_batches()


def default_deterministic() -> bool:
    """Whether runs use TensorFlow's op determinism (:func:`bnlab.settings.deterministic`)."""
    return settings.deterministic()


def set_seed(seed: int, deterministic: bool | None = None) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; turn TensorFlow's op determinism on or off."""
    tf.keras.utils.set_random_seed(seed)
    if deterministic is None:
        deterministic = default_deterministic()
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        from tensorflow.python.framework import config as tf_config  # the off switch is not exported

        tf_config.disable_op_determinism()


@dataclasses.dataclass
class Results:
    """What a training run ends with (the last lines of the original exercise).

    ``batch_log`` has ``(loss, accuracy)`` of every training batch; ``timings`` the seconds spent
    per part of the run (see :class:`Stopwatch`); ``refresh`` what the population refresh did;
    ``own_test_accuracy`` and ``own_single_sample_accuracy`` the test figures before the refresh, with the
    moving averages the network kept itself (``nan`` when there was no refresh); ``model`` the trained network.
    """

    name: str
    num_batches: int
    validation_accuracy: float
    test_accuracy: float
    single_sample_accuracy: float
    train_seconds: float
    train_log: list = dataclasses.field(default_factory=list)  # (batch, loss, accuracy)
    validation_log: list = dataclasses.field(default_factory=list)  # (batch, loss, accuracy)
    batch_log: list = dataclasses.field(default_factory=list)  # (loss, accuracy) of every batch
    timings: dict = dataclasses.field(default_factory=dict)
    refresh: dict = dataclasses.field(default_factory=dict)
    own_test_accuracy: float = float("nan")
    own_single_sample_accuracy: float = float("nan")
    model: object = dataclasses.field(default=None, repr=False)  # the trained network

    def report(self) -> str:
        def single(value):
            return f"{value:>3.5f}" if value == value else "not measured under nbgrader"

        report = (
            f"Final validation accuracy: {self.validation_accuracy:>3.5f}\n"
            f"Final test accuracy: {self.test_accuracy:>3.5f}\n"
            f"Accuracy on {SINGLE_SAMPLES} samples (one at a time): {single(self.single_sample_accuracy)}"
        )
        if self.own_test_accuracy == self.own_test_accuracy:
            report += (
                "\nWith the population statistics your layers' own moving averages kept (the figures above "
                "recompute them from training batches, with the weights frozen):\n"
                f"  test accuracy: {self.own_test_accuracy:>3.5f}\n"
                f"  {SINGLE_SAMPLES} samples (one at a time): {single(self.own_single_sample_accuracy)}"
            )
        decays = self.refresh.get("decay", [])
        if decays:  # measured through the student's own train_step (bnlab.training.population)
            low, high = min(decays), max(decays)
            spread = f"{low:.3g}" if high - low < 5e-4 else f"{low:.3g} to {high:.3g}"
            report += (
                f"\nYour population statistics keep {spread} of their old value at each training batch (the decay, "
                f"measured through your train_step); the course accepts {MIN_MOMENTUM:g} or more."
            )
            if low < MIN_MOMENTUM - MOMENTUM_TOLERANCE:
                report += (
                    " Below that they follow the last few batches only (lesson, section 2, 'Population statistics "
                    "as a moving average')."
                )
        return report


class Stopwatch:
    """Seconds per part of a run: ``with watch("steps"): ...`` adds the block's time to that part."""

    PARTS = ("data", "tracing", "steps", "validation", "test", "single", "refresh", "monitor")

    def __init__(self):
        self.seconds = dict.fromkeys(self.PARTS, 0.0)
        self._start = time.perf_counter()

    def __call__(self, part: str):
        watch = self

        class _Block:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                watch.seconds[part] += time.perf_counter() - self.t

        return _Block()

    def total(self) -> dict:
        """The parts, plus ``wall`` (since creation) and ``other`` (wall minus the parts)."""
        out = dict(self.seconds, wall=time.perf_counter() - self._start)
        out["other"] = out["wall"] - sum(self.seconds.values())
        return out


def _check_callable(fn, name: str, expected: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be a function {expected}; got {type(fn).__name__}.")


def _is_model(obj) -> bool:
    return isinstance(obj, (tf.Module, tf.keras.Model, tf.keras.layers.Layer))


def train(
    model,
    train_step: Callable,
    predict: Callable,
    *,
    name: str = "network",
    data: Mnist | None = None,
    num_batches: int | None = None,
    batch_size: int = BATCH_SIZE,
    learning_rate: float = LEARNING_RATE,
    seed: int = 0,
    monitor=None,
    validation_size: int | None = None,
    compile: bool = True,
    deterministic: bool | None = None,
    refresh_batches: int | None = None,
    skip_when_grading: bool = False,
) -> Results:
    """Train ``model`` with Adam on MNIST and report the original exercise's figures.

    Prints :meth:`Results.report` and returns the :class:`Results`. Under nbgrader the 100 single
    images are not scored (``single_sample_accuracy`` is ``nan``).

    Args:
        model: a Keras model or :class:`bnlab.nn.Network`, or a function without arguments that
            builds one (built after seeding, so its initial weights follow ``seed`` too).
        train_step: ``train_step(model, optimizer, images, labels) -> (loss, logits)``, one
            optimisation step on a batch (``labels`` one-hot). The optimizer is
            :class:`bnlab.training.adam.FusedAdam` (Keras' Adam update, one fused op per variable).
        predict: ``predict(model, images) -> logits``, used for evaluation.
        name: the run's name in the monitor and in :class:`Results`.
        data: :func:`bnlab.data.load_mnist`'s result (loaded when ``None``).
        num_batches: default 800; in short mode (:func:`bnlab.short_mode`)
            :func:`bnlab.settings.short_batches`, and validation and test then use their first
            :func:`bnlab.settings.evaluation_images` images.
        batch_size, learning_rate: the exercise's 64 and 0.002 by default.
        seed: seeds the initial weights and the batches.
        monitor: a :class:`bnlab.monitor.TrainingMonitor`; one is created when it is ``None``.
        validation_size: validation images used (default: all, or the short-mode number).
        compile: wrap ``train_step`` and ``predict`` in ``tf.function``.
        deterministic: TensorFlow's op determinism (default :func:`default_deterministic`).
        refresh_batches: training batches that set the population statistics after training (0:
            keep the moving averages; default :data:`REFRESH_BATCHES`, none while the notebook is graded, where
            the accuracy is not graded).
        skip_when_grading: marks a run of the notebook's given code only (the network without
            batch normalization): while the notebook is graded it grades nothing of the student's, so it is
            skipped there with a note, and the result has no figures (``nan``, no logs).
    """
    from bnlab.training.population import refresh_population_statistics

    if settings.skip_given_code(name, skip_when_grading):
        nan = float("nan")
        return Results(name, 0, nan, nan, nan, 0.0)

    _check_callable(train_step, "train_step", "train_step(model, optimizer, images, labels) -> (loss, logits)")
    _check_callable(predict, "predict", "predict(model, images) -> logits")
    watch = Stopwatch()
    short = bnlab.short_mode()
    if num_batches is None:
        num_batches = short_num_batches() if short else NUM_BATCHES
    if refresh_batches is None:  # grading never looks at the accuracy: skip the refresh there
        refresh_batches = 0 if settings.grading() else REFRESH_BATCHES
    with watch("data"):
        data = data or load_mnist()
        if validation_size is None:
            validation_size = settings.evaluation_images() or len(data.validation)
        n_test = settings.evaluation_images() or len(data.test)
        val_x = tf.constant(data.validation.images[:validation_size])
        val_y = tf.constant(data.validation.labels[:validation_size])
        test_x, test_y = tf.constant(data.test.images[:n_test]), tf.constant(data.test.labels[:n_test])
        single_x = tf.constant(data.test.images[:SINGLE_SAMPLES])
        single_y = tf.constant(data.test.labels[:SINGLE_SAMPLES])
        batches = device_batches(data.train, batch_size, num_batches + refresh_batches, seed)

    singles = not settings.grading()  # while grading nothing reads it, and its compiled loop costs a trace
    set_seed(seed, deterministic)
    if not _is_model(model):
        _check_callable(model, "model", "(a Keras model, a bnlab.nn.Network, or a function that builds one)")
        model = model()
    optimizer = FusedAdam(learning_rate)
    with watch("tracing"):
        trainer = Trainer(model, train_step, predict, optimizer, compile=compile, example=data.train.images[:1])

    with watch("monitor"):
        own_monitor = monitor is None
        if own_monitor:
            from bnlab.monitor import TrainingMonitor

            monitor = TrainingMonitor(title=name, total_batches=num_batches)
        run = monitor.run(name, total_batches=num_batches)
    results = Results(name, num_batches, float("nan"), float("nan"), float("nan"), 0.0, model=model)

    def step(batch: int):
        figures = trainer.train_on(batches, batch - 1)
        if batch == 1:  # timed as "tracing", like the first step itself
            trainer.trace(val_x, val_y, *((single_x, single_y) if singles else ()))
        return figures

    def refresh():  # the final figures use the refreshed population statistics, measured after the network's own
        if refresh_batches:
            with watch("test"):
                results.own_test_accuracy = trainer.evaluate(test_x, test_y)[1]
            if singles:
                with watch("single"):
                    results.own_single_sample_accuracy = float(trainer.singles(single_x, single_y))
        with watch("refresh"):
            results.refresh = refresh_population_statistics(
                model, lambda i: trainer.train_on(batches, num_batches + i), optimizer, refresh_batches
            )

    try:
        logs = run_schedule(
            num_batches, step, lambda batch: trainer.evaluate(val_x, val_y), run, at_last_batch=refresh, watch=watch
        )
        results.batch_log, results.train_log = logs.batch_log, logs.train_log
        results.validation_log = logs.validation_log
        results.validation_accuracy = results.validation_log[-1][2]
        with watch("test"):
            results.test_accuracy = trainer.evaluate(test_x, test_y)[1]
        if singles:
            with watch("single"):
                results.single_sample_accuracy = float(trainer.singles(single_x, single_y))
        with watch("monitor"):
            final = {"validation_accuracy": results.validation_accuracy, "test_accuracy": results.test_accuracy}
            if singles:
                final["single_sample_accuracy"] = results.single_sample_accuracy
            run.finish(**final)
    finally:
        with watch("monitor"):
            if own_monitor:
                monitor.close()
    results.timings = watch.total()
    results.train_seconds = results.timings["wall"]
    print(results.report())
    if short and num_batches < NUM_BATCHES:
        print(
            f"(Short run: {num_batches} of {NUM_BATCHES} batches, to check that the code runs. These accuracies say "
            f"nothing about your answer; set BNLAB_SHORT=0 for the full run.)"
        )
    return results
