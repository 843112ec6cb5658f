"""The training loop of the 20-layer CNN exercise, shared by every version of the network.

The notebooks write the parts that matter for batch normalization (the layers, ``train_step``
and ``predict``); this module does the rest: mini-batches, Adam, logging every 25 batches,
validation every 100, the live monitor, and the final figures of the original exercise
(validation accuracy, test accuracy, and the accuracy on the first 100 test images scored one at
a time, which is low exactly when inference does not use population statistics).
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import numpy as np

import bnlab
from bnlab.data import Mnist, iterate_batches, load_mnist, one_hot

tf = bnlab.tf

LEARNING_RATE = 0.002
BATCH_SIZE = 64
NUM_BATCHES = 800
SHORT_NUM_BATCHES = 40
TRAIN_LOG_EVERY = 25
VALIDATE_EVERY = 100
SINGLE_SAMPLES = 100
EVAL_CHUNK = 500


def short_num_batches() -> int:
    """Batches per run in short mode: ``$BNLAB_SHORT_BATCHES`` if set (tests use a handful), else 40."""
    value = os.environ.get("BNLAB_SHORT_BATCHES", "")
    try:
        return max(1, int(value)) if value.strip() else SHORT_NUM_BATCHES
    except ValueError:
        raise ValueError(f"BNLAB_SHORT_BATCHES must be a whole number of batches, got {value!r}") from None


def loss_fn(logits, labels):
    """Mean sigmoid cross-entropy on one-hot labels, as in the original exercise."""
    labels = tf.cast(labels, logits.dtype)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def accuracy_fn(logits, labels):
    """Fraction of rows whose largest logit is the one-hot label."""
    correct = tf.equal(tf.argmax(logits, axis=1), tf.argmax(labels, axis=1))
    return tf.reduce_mean(tf.cast(correct, tf.float32))


@dataclasses.dataclass
class Results:
    """What a training run ends with (the last lines of the original exercise)."""

    name: str
    num_batches: int
    validation_accuracy: float
    test_accuracy: float
    single_sample_accuracy: float
    train_seconds: float
    train_log: list = dataclasses.field(default_factory=list)       # (batch, loss, accuracy)
    validation_log: list = dataclasses.field(default_factory=list)  # (batch, loss, accuracy)

    def report(self) -> str:
        return (f"Final validation accuracy: {self.validation_accuracy:>3.5f}\n"
                f"Final test accuracy: {self.test_accuracy:>3.5f}\n"
                f"Accuracy on {SINGLE_SAMPLES} samples (one at a time): {self.single_sample_accuracy:>3.5f}")


def _check_callable(fn, name: str, expected: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be a function {expected}; got {type(fn).__name__}.")


def evaluate(predict: Callable, model, images: np.ndarray, labels_one_hot: np.ndarray,
             chunk: int = EVAL_CHUNK) -> tuple[float, float]:
    """Loss and accuracy of ``predict(model, images)`` over a whole split, in chunks."""
    losses, correct = [], 0
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk]
        y = labels_one_hot[start:start + chunk]
        logits = predict(model, tf.constant(x))
        losses.append(float(loss_fn(logits, y)) * len(x))
        correct += int(np.sum(np.argmax(np.asarray(logits), 1) == np.argmax(y, 1)))
    return float(np.sum(losses) / len(images)), correct / len(images)


def single_sample_accuracy(predict: Callable, model, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy when each image is scored alone, as a batch of one."""
    hits = 0
    for image, label in zip(images, labels):
        logits = predict(model, tf.constant(image[np.newaxis]))
        hits += int(np.argmax(np.asarray(logits)[0]) == label)
    return hits / len(images)


def train(model, train_step: Callable, predict: Callable, *, name: str = "network",
          data: Mnist | None = None, num_batches: int | None = None, batch_size: int = BATCH_SIZE,
          learning_rate: float = LEARNING_RATE, seed: int = 0, monitor=None,
          validation_size: int | None = None, compile: bool = True) -> Results:
    """Train ``model`` with Adam on MNIST and report the original exercise's figures.

    ``train_step(model, optimizer, images, labels)`` does one optimisation step on a batch
    (``labels`` one-hot) and returns ``(loss, logits)``; ``predict(model, images)`` returns the
    logits used for evaluation. Both are wrapped in ``tf.function`` unless ``compile=False``.
    ``num_batches`` defaults to 800, or 40 in short mode (:func:`bnlab.short_mode`).
    ``monitor`` is a :class:`bnlab.monitor.TrainingMonitor`; one is created when it is ``None``.
    """
    _check_callable(train_step, "train_step", "train_step(model, optimizer, images, labels) -> (loss, logits)")
    _check_callable(predict, "predict", "predict(model, images) -> logits")
    short = bnlab.short_mode()
    if num_batches is None:
        num_batches = short_num_batches() if short else NUM_BATCHES
    data = data or load_mnist()
    if validation_size is None:
        validation_size = 1000 if short else len(data.validation)
    val_x, val_y = data.validation.images[:validation_size], one_hot(data.validation.labels[:validation_size])
    test_x = data.test.images if not short else data.test.images[:1000]
    test_y = one_hot(data.test.labels[:len(test_x)])

    tf.keras.utils.set_random_seed(seed)
    optimizer = tf.keras.optimizers.Adam(learning_rate)
    step_fn = tf.function(train_step, reduce_retracing=True) if compile else train_step
    predict_fn = tf.function(predict, reduce_retracing=True) if compile else predict

    own_monitor = monitor is None
    if own_monitor:
        from bnlab.monitor import TrainingMonitor

        monitor = TrainingMonitor(title=name, total_batches=num_batches)
    run = monitor.run(name, total_batches=num_batches)
    results = Results(name, num_batches, float("nan"), float("nan"), float("nan"), 0.0)
    start = time.perf_counter()
    try:
        batches = iterate_batches(data.train.images, data.train.labels, batch_size, seed=seed,
                                  num_batches=num_batches)
        for batch_i, (x, y) in enumerate(batches, start=1):
            labels = one_hot(y)
            loss, logits = step_fn(model, optimizer, tf.constant(x), tf.constant(labels))
            if batch_i % TRAIN_LOG_EVERY == 0 or batch_i == num_batches:
                acc = float(accuracy_fn(logits, labels))
                results.train_log.append((batch_i, float(loss), acc))
                run.log(batch_i, float(loss), acc, split="train")
            if batch_i % VALIDATE_EVERY == 0 or batch_i == num_batches:
                val_loss, val_acc = evaluate(predict_fn, model, val_x, val_y)
                results.validation_log.append((batch_i, val_loss, val_acc))
                run.log(batch_i, val_loss, val_acc, split="validation")
        results.train_seconds = time.perf_counter() - start
        results.validation_accuracy = results.validation_log[-1][2]
        results.test_accuracy = evaluate(predict_fn, model, test_x, test_y)[1]
        results.single_sample_accuracy = single_sample_accuracy(
            predict_fn, model, data.test.images[:SINGLE_SAMPLES], data.test.labels[:SINGLE_SAMPLES])
        run.finish(validation_accuracy=results.validation_accuracy, test_accuracy=results.test_accuracy,
                   single_sample_accuracy=results.single_sample_accuracy)
    finally:
        if own_monitor:
            monitor.close()
    print(results.report())
    return results
