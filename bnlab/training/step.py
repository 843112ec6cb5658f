"""One training step, one evaluation and one batch-of-one predictor for every training loop of the course.

The exercise's loop (:func:`bnlab.training.train`), the lesson's demos (:func:`bnlab.lesson.train_demo`)
and the per-layer recording (:func:`bnlab.diagnostics.train_and_record`) all train through a
:class:`Trainer` on :func:`bnlab.training.loop.run_schedule`'s schedule. What differs between them
comes in as arguments:

- the step: the student's ``train_step(model, optimizer, images, labels)`` in the exercise, or
  :func:`gradient_step` (one training-mode pass, a loss, its gradients applied) in the lesson and
  the recording, whose ``inspect`` hook hands per-layer figures out of the compiled step;
- the optimizer, the loss, and whether the step gets one-hot or integer labels;
- whether the evaluations are compiled (a long run) or eager (a demo evaluates a few times only).

The batches live on the device (:func:`device_batches`) and the compiled step picks its batch by
index, so the host hands over one index per step. :func:`predict_one_at_a_time` scores images as
batches of one; the exercise's compiled single-image accuracy runs the same function.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import numpy as np

import bnlab
from bnlab.data import Split, batch_indices

tf = bnlab.tf

NUM_CLASSES = 10
EVAL_CHUNK = 125  # images per evaluation call of a training run


def loss_fn(logits, labels):
    """Mean sigmoid cross-entropy on one-hot labels, as in the original exercise."""
    labels = tf.cast(labels, logits.dtype)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def sparse_loss_fn(logits, labels):
    """:func:`loss_fn` on integer labels (the evaluations' labels)."""
    return loss_fn(logits, tf.one_hot(labels, NUM_CLASSES))


def accuracy_fn(logits, labels):
    """Fraction of rows whose largest logit is the one-hot label."""
    correct = tf.equal(tf.argmax(logits, axis=1), tf.argmax(labels, axis=1))
    return tf.reduce_mean(tf.cast(correct, tf.float32))


def inference(model, images):
    """A Keras model's logits in inference mode (its population statistics): the library's own loops' ``predict``."""
    return model(images, training=False)


def _hits(classes, labels):
    """1.0 where the predicted class is the integer label, else 0.0."""
    return tf.cast(tf.equal(classes, tf.cast(labels, tf.int64)), tf.float32)


@contextlib.contextmanager
def statistics_kept(model=None):
    """Restore ``model``'s non-trainable variables (its population statistics) on the way out; with no
    model, do nothing."""
    if model is None:
        yield
        return
    saved = [v.numpy() for v in model.non_trainable_variables]
    try:
        yield
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)


def one_at_a_time(predict: Callable, compiled: bool) -> Callable:
    """``classes(images)``: the int64 class of each image, each scored alone as a batch of one.

    ``predict(batch) -> logits``. With ``compiled`` the images are looped over by ``tf.map_fn``, for
    use inside a ``tf.function``; otherwise by a Python loop (eager).
    """

    def one(image):  # a sibling of classes, not nested in it: autograph converts each on its own
        return tf.argmax(predict(image[tf.newaxis])[0], output_type=tf.int64)

    def classes(images):
        if compiled:
            return tf.map_fn(one, images, fn_output_signature=tf.int64)
        return tf.stack([one(image) for image in images])

    return classes


def predict_one_at_a_time(predict: Callable, images, compile: bool = False, model=None) -> np.ndarray:
    """The predicted class of each of ``images``, each scored alone as a batch of one.

    Args:
        predict: ``predict(batch) -> logits``, e.g. ``lambda x: model(x, training=False)``.
        images: the images, ``(N, 28, 28, 1)``.
        compile: score them inside one ``tf.function`` (one trace), rather than eagerly.
        model: a model whose non-trainable variables are restored afterwards (a training-mode pass
            updates its population statistics); ``None`` restores nothing.
    """
    classes = one_at_a_time(predict, compiled=compile)
    if compile:
        classes = tf.function(classes)
    with statistics_kept(model):
        return np.asarray(classes(tf.convert_to_tensor(images)))


def _chunk_sums(predict: Callable, model, loss: Callable) -> Callable:
    """``chunk(images, labels) -> (summed loss, hits)`` of ``predict(model, images)`` on a chunk
    of a split (integer ``labels``; ``loss(logits, labels)`` is the chunk's mean loss)."""

    def chunk(x, y):
        logits = predict(model, x)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        return loss(logits, y) * n, tf.reduce_sum(_hits(tf.argmax(logits, axis=1), y))

    return chunk


def _split_figures(chunk_sums: Callable, images, labels, chunk: int) -> tuple[float, float]:
    """Mean loss and accuracy over a split, ``chunk`` images at a time; the sums stay on the
    device until the end (one host sync per split)."""
    n = int(images.shape[0])
    loss, hits = 0.0, 0.0
    for start in range(0, n, chunk):
        part_loss, part_hits = chunk_sums(images[start : start + chunk], labels[start : start + chunk])
        loss, hits = loss + part_loss, hits + part_hits
    return float(loss) / n, float(hits) / n


def evaluate(
    predict: Callable, model, images, labels, loss: Callable = sparse_loss_fn, chunk: int = EVAL_CHUNK
) -> tuple[float, float]:
    """``(mean loss, accuracy)`` of ``predict(model, images)`` over a whole split, in chunks (eager).

    ``labels`` are integer classes; ``loss(logits, labels)`` is a chunk's mean loss: by default
    the exercise's sigmoid cross-entropy on one-hot labels (:func:`sparse_loss_fn`), the lesson
    passes its softmax cross-entropy. :meth:`Trainer.evaluate` does the same, compiled or not.
    """
    return _split_figures(_chunk_sums(predict, model, loss), images, labels, chunk)


def single_sample_accuracy(predict: Callable, model, images, labels) -> float:
    """Accuracy when each image is scored alone, as a batch of one (eager)."""
    classes = predict_one_at_a_time(lambda x: predict(model, x), images)
    return float(np.mean(classes == np.asarray(labels)))


def gradient_step(loss: Callable, forward: Callable | None = None, inspect: Callable | None = None) -> Callable:
    """A ``train_step(model, optimizer, images, labels)`` for the library's own loops: one training-mode
    pass, ``loss`` on it, and its gradients applied once. It returns ``(loss, logits)``, or with
    ``inspect`` ``(loss, logits, extra)``.

    Args:
        loss: ``loss(logits, labels)``, the batch's mean loss.
        forward: ``forward(images) -> (logits, seen)``, the training-mode pass; by default
            ``model(images, training=True)`` with nothing seen.
        inspect: ``inspect(pairs, seen) -> extra``, called with the ``(variable, gradient)`` pairs
            before they are applied; ``extra`` (tensors) leaves the compiled step with its figures.
    """

    def train_step(model, optimizer, images, labels):
        with tf.GradientTape() as tape:
            if forward is None:
                logits, seen = model(images, training=True), None
            else:
                logits, seen = forward(images)
            value = loss(logits, labels)
        variables = model.trainable_variables
        gradients = tape.gradient(value, variables)
        extra = None if inspect is None else inspect(list(zip(variables, gradients)), seen)
        optimizer.apply_gradients(zip(gradients, variables))
        return (value, logits) if inspect is None else (value, logits, extra)

    return train_step


@dataclasses.dataclass
class Batches:
    """A run's training batches on the device: ``images`` and ``labels`` hold the examples they use,
    ``rows[i]`` the indices of batch ``i`` (0-based) into them."""

    images: object
    labels: object
    rows: object

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def device_batches(split: Split, batch_size: int, num_batches: int, seed: int = 0) -> Batches:
    """The first ``num_batches`` shuffled batches of ``split`` from ``seed`` (:func:`bnlab.data.batch_indices`,
    the batches of ``split.batches``), on the device. When they use fewer than half of the split, only
    their examples are copied there (the same batches)."""
    rows = batch_indices(len(split), batch_size, num_batches, seed)
    images, labels = split.images, split.labels
    if rows.size < len(images) // 2:
        used, rows = np.unique(rows, return_inverse=True)
        images, labels, rows = images[used], labels[used], rows.reshape(-1, batch_size)
    return Batches(tf.constant(images), tf.constant(labels), tf.constant(rows))


class Trainer:
    """A model, its optimizer and the run's functions: a training step that picks its batch by index,
    evaluations that sum loss and hits on the device (one host sync per split), and the accuracy of
    images scored one at a time.

    Args:
        model: a Keras model or :class:`bnlab.nn.Network`.
        train_step: ``train_step(model, optimizer, images, labels) -> (loss, logits)``, or with
            ``extra`` ``(loss, logits, extra)``.
        predict: ``predict(model, images) -> logits`` for the evaluations.
        optimizer: the optimizer ``train_step`` receives; it is built on the model's variables here.
        one_hot: ``train_step`` gets one-hot labels (the exercise), else integer labels.
        loss: ``loss(logits, integer labels)``, the evaluations' mean loss.
        compile: wrap the step in ``tf.function``.
        compile_evaluation: wrap the evaluations too (default: as ``compile``).
        extra: ``train_step`` returns a third value, which :meth:`step` passes on.
        example: an input batch run through ``predict`` first, so that a model that creates its
            variables on its first pass has them before the optimizer is built.
    """

    def __init__(
        self,
        model,
        train_step: Callable | None,
        predict: Callable,
        optimizer=None,
        *,
        one_hot: bool = True,
        loss: Callable = sparse_loss_fn,
        compile: bool = True,
        compile_evaluation: bool | None = None,
        extra: bool = False,
        example=None,
    ):
        self.model, self.optimizer = model, optimizer
        self.compiled = compile if compile_evaluation is None else compile_evaluation
        if example is not None:
            predict(model, tf.constant(example))
        if optimizer is not None:  # variables made outside the compiled step: it is traced once
            optimizer.build(model.trainable_variables)

        def step(images, labels, rows):
            x, y = tf.gather(images, rows), tf.gather(labels, rows)
            outputs = train_step(model, optimizer, x, tf.one_hot(y, NUM_CLASSES) if one_hot else y)
            if extra:
                loss_value, logits, found = outputs
                return loss_value, tf.reduce_mean(_hits(tf.argmax(logits, axis=1), y)), found
            loss_value, logits = outputs
            return loss_value, tf.reduce_mean(_hits(tf.argmax(logits, axis=1), y))

        classes = one_at_a_time(lambda x: predict(model, x), compiled=self.compiled)

        def singles(x, y):
            return tf.reduce_mean(_hits(classes(x), y))

        def wrap(fn, on):
            return tf.function(fn, reduce_retracing=True) if on else fn

        self.step = wrap(step, compile)
        self.chunk = wrap(_chunk_sums(predict, model, loss), self.compiled)
        self.singles = wrap(singles, self.compiled)

    def train_on(self, batches: Batches, index: int):
        """Train on batch ``index`` (0-based) of ``batches``; returns :meth:`step`'s figures."""
        return self.step(batches.images, batches.labels, batches.rows[index])

    def trace(self, images, labels, single_images=None, single_labels=None, chunk: int = EVAL_CHUNK) -> None:
        """Compile the evaluations ahead of their first use (after the first step built the model);
        the single-image loop only when ``single_images`` are given."""
        if self.compiled:
            self.chunk.get_concrete_function(images[:chunk], labels[:chunk])
            if single_images is not None:
                self.singles.get_concrete_function(single_images, single_labels)

    def evaluate(self, images, labels, chunk: int = EVAL_CHUNK) -> tuple[float, float]:
        """Mean loss and accuracy over a split (``images``, integer ``labels``)."""
        return _split_figures(self.chunk, images, labels, chunk)
