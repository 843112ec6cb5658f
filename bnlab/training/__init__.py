"""The training loop of the 20-layer CNN exercise, shared by every version of the network.

The notebooks write the parts that matter for batch normalization (the layers, ``train_step``
and ``predict``); this module does the rest: mini-batches, Adam, logging every 25 batches and
validation every 100 (:func:`bnlab.training.loop.run_schedule`, the lesson's loop too), the live monitor,
and the final figures of the original exercise (validation accuracy, test accuracy, and the
accuracy on the first 100 test images scored one at a time, which is low exactly when inference
does not use population statistics).

Runs are reproducible: with the same ``seed`` on the same machine and TensorFlow version, two
runs give the same losses and accuracies batch by batch (the same initial weights, the same
batches, and TensorFlow's op determinism). Another machine or version may round differently, so
its figures can differ in the last digits and, over 800 batches, by more.

After the last batch the population statistics are refreshed (:mod:`bnlab.training.population`): with
the final weights frozen, they are set to the average of the batch statistics over a few training
batches, as Algorithm 2 of Ioffe & Szegedy (2015) prescribes for inference. A moving average with
decay 0.99 otherwise still mixes in the statistics of the weights of ~100 steps earlier, and with
Adam at 0.002 that cost some seeds several points of test accuracy.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

import bnlab
from bnlab import settings
from bnlab.training.adam import FusedAdam
from bnlab.data import Mnist, batch_indices, load_mnist
from bnlab.training.loop import run_schedule

tf = bnlab.tf

# the exercise's schedule is defined once, in bnlab.exercise (re-exported here)
from bnlab.exercise import (BATCH_SIZE, LEARNING_RATE, NUM_BATCHES, SINGLE_SAMPLES,  # noqa: E402,F401
                            TRAIN_LOG_EVERY, VALIDATE_EVERY)

EVAL_CHUNK = 125     # images per evaluation call: fastest of 50..2500 on a 2-core CPU
REFRESH_BATCHES = 16   # training batches averaged into the population statistics after training


def short_num_batches() -> int:
    """Batches per run in short mode (:func:`bnlab.settings.short_batches`: 40, or 10 under nbgrader)."""
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


def loss_fn(logits, labels):
    """Mean sigmoid cross-entropy on one-hot labels, as in the original exercise."""
    labels = tf.cast(labels, logits.dtype)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def sparse_loss_fn(logits, labels):
    """:func:`loss_fn` on integer labels (the evaluations' labels)."""
    return loss_fn(logits, tf.one_hot(labels, 10))


def accuracy_fn(logits, labels):
    """Fraction of rows whose largest logit is the one-hot label."""
    correct = tf.equal(tf.argmax(logits, axis=1), tf.argmax(labels, axis=1))
    return tf.reduce_mean(tf.cast(correct, tf.float32))


@dataclasses.dataclass
class Results:
    """What a training run ends with (the last lines of the original exercise).

    ``batch_log`` has ``(loss, accuracy)`` of every training batch; ``timings`` the seconds spent
    per part of the run (see :class:`Stopwatch`); ``refresh`` what the population refresh did;
    ``model`` the trained network.
    """

    name: str
    num_batches: int
    validation_accuracy: float
    test_accuracy: float
    single_sample_accuracy: float
    train_seconds: float
    train_log: list = dataclasses.field(default_factory=list)       # (batch, loss, accuracy)
    validation_log: list = dataclasses.field(default_factory=list)  # (batch, loss, accuracy)
    batch_log: list = dataclasses.field(default_factory=list)       # (loss, accuracy) of every batch
    timings: dict = dataclasses.field(default_factory=dict)
    refresh: dict = dataclasses.field(default_factory=dict)
    model: object = dataclasses.field(default=None, repr=False)    # the trained network

    def report(self) -> str:
        single = (f"{self.single_sample_accuracy:>3.5f}" if self.single_sample_accuracy == self.single_sample_accuracy
                  else "not measured under nbgrader")
        return (f"Final validation accuracy: {self.validation_accuracy:>3.5f}\n"
                f"Final test accuracy: {self.test_accuracy:>3.5f}\n"
                f"Accuracy on {SINGLE_SAMPLES} samples (one at a time): {single}")


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


def _chunk_sums(predict: Callable, model, loss: Callable) -> Callable:
    """``chunk(images, labels) -> (summed loss, hits)`` of ``predict(model, images)`` on a chunk
    of a split (integer ``labels``; ``loss(logits, labels)`` is the chunk's mean loss)."""
    def chunk(x, y):
        logits = predict(model, x)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), tf.cast(y, tf.int64)), tf.float32))
        return loss(logits, y) * n, hits

    return chunk


def _split_figures(chunk_sums: Callable, images, labels, chunk: int) -> tuple[float, float]:
    """Mean loss and accuracy over a split, ``chunk`` images at a time; the sums stay on the
    device until the end (one host sync per split)."""
    n = int(images.shape[0])
    loss, hits = 0.0, 0.0
    for start in range(0, n, chunk):
        part_loss, part_hits = chunk_sums(images[start:start + chunk], labels[start:start + chunk])
        loss, hits = loss + part_loss, hits + part_hits
    return float(loss) / n, float(hits) / n


class _Compiled:
    """The run's functions, compiled once: a training step that picks its batch by index, and
    evaluations that sum loss and hits on the device (one host sync per split)."""

    def __init__(self, model, train_step, predict, optimizer, compile: bool):
        wrap = (lambda fn: tf.function(fn, reduce_retracing=True)) if compile else (lambda fn: fn)

        def step(images, labels, index):
            x = tf.gather(images, index)
            y = tf.one_hot(tf.gather(labels, index), 10)
            loss, logits = train_step(model, optimizer, x, y)
            return loss, accuracy_fn(logits, y)

        chunk = _chunk_sums(predict, model, sparse_loss_fn)

        def one_image(image):  # defined here, not inside singles: autograph mixed the two up for tf.nn
            return tf.cast(tf.argmax(predict(model, image[tf.newaxis])[0]), tf.int64)

        def singles(x, y):
            if compile:
                guesses = tf.map_fn(one_image, x, fn_output_signature=tf.int64)
            else:
                guesses = tf.stack([one_image(image) for image in x])
            return tf.reduce_mean(tf.cast(tf.equal(guesses, tf.cast(y, tf.int64)), tf.float32))

        self.step, self.chunk, self.singles = wrap(step), wrap(chunk), wrap(singles)
        self.compiled = compile

    def trace(self, images, labels, single_images=None, single_labels=None, chunk: int = EVAL_CHUNK) -> None:
        """Compile the evaluations ahead of their first use (after the first step built the model);
        the single-image loop only when ``single_images`` are given."""
        if self.compiled:
            self.chunk.get_concrete_function(images[:chunk], labels[:chunk])
            if single_images is not None:
                self.singles.get_concrete_function(single_images, single_labels)

    def evaluate(self, images, labels, chunk: int = EVAL_CHUNK) -> tuple[float, float]:
        """Mean loss and accuracy over a split (tensors ``images``, integer ``labels``)."""
        return _split_figures(self.chunk, images, labels, chunk)


def _build(model, predict, optimizer, image) -> None:
    """Create the model's and the optimizer's variables eagerly, so that the compiled step is
    traced once (a step that creates variables is traced twice)."""
    predict(model, tf.constant(image))   # a bnlab.nn.Network creates its variables on its first pass
    optimizer.build(model.trainable_variables)


def evaluate(predict: Callable, model, images: np.ndarray, labels: np.ndarray, loss: Callable = sparse_loss_fn,
             chunk: int = EVAL_CHUNK) -> tuple[float, float]:
    """``(mean loss, accuracy)`` of ``predict(model, images)`` over a whole split, in chunks (eager).

    ``labels`` are integer classes; ``loss(logits, labels)`` is a chunk's mean loss: by default
    the exercise's sigmoid cross-entropy on one-hot labels (:func:`sparse_loss_fn`), the lesson
    passes its softmax cross-entropy. Training runs evaluate the same way, compiled.
    """
    return _split_figures(_chunk_sums(predict, model, loss), images, labels, chunk)


def single_sample_accuracy(predict: Callable, model, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy when each image is scored alone, as a batch of one (eager)."""
    compiled = _Compiled(model, None, predict, None, compile=False)
    return float(compiled.singles(tf.constant(images), tf.constant(labels)))


def train(model, train_step: Callable, predict: Callable, *, name: str = "network",
          data: Mnist | None = None, num_batches: int | None = None, batch_size: int = BATCH_SIZE,
          learning_rate: float = LEARNING_RATE, seed: int = 0, monitor=None,
          validation_size: int | None = None, compile: bool = True, deterministic: bool | None = None,
          refresh_batches: int | None = None, skip_when_grading: bool = False) -> Results:
    """Train ``model`` with Adam on MNIST and report the original exercise's figures.

    ``model`` is a Keras model or :class:`bnlab.nn.Network`, or a function without arguments that
    builds one: it is then built after seeding, so its initial weights follow ``seed`` too.
    ``train_step(model, optimizer, images, labels)`` does one optimisation step on a batch
    (``labels`` one-hot) and returns ``(loss, logits)``; ``predict(model, images)`` returns the
    logits used for evaluation. Both are wrapped in ``tf.function`` unless ``compile=False``.
    The optimizer is Adam (:class:`bnlab.training.adam.FusedAdam`: Keras' update in TensorFlow's fused kernel).
    ``num_batches`` defaults to 800; in short mode (:func:`bnlab.short_mode`) it is
    :func:`bnlab.settings.short_batches` and validation and test use their first
    :func:`bnlab.settings.evaluation_images` images. ``deterministic`` (default
    :func:`default_deterministic`) turns TensorFlow's op determinism on. ``refresh_batches``
    training batches set the population statistics after training (0: keep the moving averages;
    default :data:`REFRESH_BATCHES`; none under nbgrader, where the accuracy is not graded).
    ``monitor`` is a :class:`bnlab.monitor.TrainingMonitor`; one is created when it is ``None``.
    Under nbgrader the 100 single images are not scored (``single_sample_accuracy`` is ``nan``).
    ``skip_when_grading`` marks a run of the notebook's given code only (the network without batch
    normalization): under nbgrader it would grade nothing of the student's, so it is skipped there
    with a note, and the result has no figures (``nan``, no logs).
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
        rows = batch_indices(len(data.train), batch_size, num_batches + refresh_batches, seed)
        images, labels = data.train.images, data.train.labels
        if rows.size < len(images) // 2:  # a short run: copy only its images to the device (the same batches)
            used, rows = np.unique(rows, return_inverse=True)
            images, labels, rows = images[used], labels[used], rows.reshape(-1, batch_size)
        train_x, train_y = tf.constant(images), tf.constant(labels)
        index = tf.constant(rows)

    singles = not settings.grading()  # under nbgrader nothing reads it, and its compiled loop costs a trace
    set_seed(seed, deterministic)
    if not _is_model(model):
        _check_callable(model, "model", "(a Keras model, a bnlab.nn.Network, or a function that builds one)")
        model = model()
    optimizer = FusedAdam(learning_rate)  # Keras' Adam update, one fused op per variable: traces 2x faster
    with watch("tracing"):
        _build(model, predict, optimizer, data.train.images[:1])
    compiled = _Compiled(model, train_step, predict, optimizer, compile)

    with watch("monitor"):
        own_monitor = monitor is None
        if own_monitor:
            from bnlab.monitor import TrainingMonitor

            monitor = TrainingMonitor(title=name, total_batches=num_batches)
        run = monitor.run(name, total_batches=num_batches)
    results = Results(name, num_batches, float("nan"), float("nan"), float("nan"), 0.0, model=model)

    def step(batch: int):
        figures = compiled.step(train_x, train_y, index[batch - 1])
        if batch == 1:  # timed as "tracing", like the first step itself
            compiled.trace(val_x, val_y, *((single_x, single_y) if singles else ()))
        return figures

    def refresh():  # the final figures use the refreshed population statistics
        with watch("refresh"):
            results.refresh = refresh_population_statistics(
                model, lambda i: compiled.step(train_x, train_y, index[num_batches + i]), optimizer, refresh_batches)

    try:
        logs = run_schedule(num_batches, step, lambda batch: compiled.evaluate(val_x, val_y), run,
                            at_last_batch=refresh, watch=watch)
        results.batch_log, results.train_log = logs.batch_log, logs.train_log
        results.validation_log = logs.validation_log
        results.validation_accuracy = results.validation_log[-1][2]
        with watch("test"):
            results.test_accuracy = compiled.evaluate(test_x, test_y)[1]
        if singles:
            with watch("single"):
                results.single_sample_accuracy = float(compiled.singles(single_x, single_y))
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
        print(f"(Short run: {num_batches} of {NUM_BATCHES} batches, to check that the code runs. These accuracies say "
              f"nothing about your answer; set BNLAB_SHORT=0 for the full run.)")
    return results
