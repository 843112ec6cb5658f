"""Inside the exercise's 20-layer CNN: per-layer pre-activations and gradient norms over training.

The lesson uses these helpers to show *why* the network of the graded exercise does not learn
without batch normalization:

- :func:`build_exercise_cnn` / :func:`build_exercise_twins`: the exercise's architecture (19 3x3
  convolutions with ``depth * 4`` filters, stride 2 when ``depth % 3 == 0``, ``'same'`` padding,
  ReLU; a 100-unit dense layer; 10 logits), without and with batch normalization, from identical
  kernels;
- :func:`feature_map_sizes`: the spatial size each convolution produces;
- :func:`train_and_record`: the exercise's training (Adam 0.002, batches of 64, mean sigmoid
  cross-entropy on one-hot labels) that snapshots every layer's pre-activations and gradient norms;
- :class:`LayerViewer`: a widget to pick a layer and a training step (a static figure where no live
  Jupyter kernel with ipywidgets is available, like :mod:`bnlab.monitor`).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import numpy as np

import bnlab

tf = bnlab.tf
import keras  # noqa: E402  (after the quiet TensorFlow import)

CONV_DEPTHS = tuple(range(1, 20))
WEIGHT_LAYERS = tuple(f"conv{d}" for d in CONV_DEPTHS) + ("dense",)


def build_exercise_cnn(batch_norm: bool, seed: int = 0, momentum: float = 0.99) -> keras.Model:
    """The exercise's 20-layer CNN for 28x28x1 images, with or without batch normalization.

    Without BN each weight layer is ``Conv2D/Dense (bias) -> ReLU``; with BN it is
    ``Conv2D/Dense (no bias) -> BatchNormalization -> ReLU``, the paper's placement. It builds the whole
    network at once, with no function of the exercise's signatures (``bnlab.instructor.bundle.answer_leaks`` checks
    that nothing of the library passes a graded cell). Layers are
    named ``conv1`` ... ``conv19``, ``dense``, ``logits``; the ReLUs ``relu1`` ... ``relu19``,
    ``relu_dense``; their inputs are the pre-activations. Kernels are Glorot uniform from ``seed``.
    """
    keras.utils.set_random_seed(seed)
    layers: list = [keras.Input(shape=(28, 28, 1))]

    def block(linear, suffix):
        layers.append(linear)
        if batch_norm:
            layers.append(keras.layers.BatchNormalization(momentum=momentum, name=f"bn{suffix}"))
        layers.append(keras.layers.ReLU(name=f"relu{suffix}"))

    for depth in CONV_DEPTHS:
        block(keras.layers.Conv2D(depth * 4, 3, strides=2 if depth % 3 == 0 else 1, padding="same",
                                  use_bias=not batch_norm, name=f"conv{depth}"), depth)
    layers.append(keras.layers.Flatten(name="flatten"))
    block(keras.layers.Dense(100, use_bias=not batch_norm, name="dense"), "_dense")
    layers.append(keras.layers.Dense(10, name="logits"))
    return keras.Sequential(layers, name="cnn_bn" if batch_norm else "cnn_plain")


def build_exercise_twins(seed: int = 0, momentum: float = 0.99) -> tuple[keras.Model, keras.Model]:
    """``(without_bn, with_bn)``: two :func:`build_exercise_cnn` networks with identical kernels."""
    plain = build_exercise_cnn(False, seed=seed)
    with_bn = build_exercise_cnn(True, seed=seed, momentum=momentum)
    for name in WEIGHT_LAYERS + ("logits",):
        with_bn.get_layer(name).kernel.assign(plain.get_layer(name).kernel)
    return plain, with_bn


def feature_map_sizes(model: keras.Model) -> list[tuple[str, int, int, int]]:
    """``(layer, height, width, channels)`` of every convolution's output, in order."""
    return [(f"conv{d}", *model.get_layer(f"conv{d}").output.shape[1:]) for d in CONV_DEPTHS]


def preactivation_names(model: keras.Model) -> list[str]:
    """The ReLU layers whose inputs are the pre-activations, in order (20 of them)."""
    return [f"relu{d}" for d in CONV_DEPTHS] + ["relu_dense"]


# --------------------------------------------------------------------------------------------
# Training with snapshots
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class LayerRecord:
    """What :func:`train_and_record` saw in one network.

    ``snapshot_steps[k]`` is the batch whose forward pass gave ``samples[k]`` (one array of sampled
    pre-activation values per layer) and ``preact_std[k]`` (their standard deviation per layer,
    over the whole batch); batch 1 runs on the initial weights. ``grad_steps[k]`` and
    ``grad_norms[k]`` hold the L2 norm of each weight layer's kernel gradient at that batch.
    ``train_accuracy`` is the mean training accuracy of the last logged batches,
    ``validation_accuracy`` the inference-mode accuracy after training, and ``seconds_per_batch``
    the mean time of a training step after the first (which includes tracing).
    """

    name: str
    layers: list[str]
    snapshot_steps: list[int] = dataclasses.field(default_factory=list)
    samples: list[list[np.ndarray]] = dataclasses.field(default_factory=list)
    preact_std: list[np.ndarray] = dataclasses.field(default_factory=list)
    active_fraction: list[np.ndarray] = dataclasses.field(default_factory=list)
    grad_steps: list[int] = dataclasses.field(default_factory=list)
    grad_norms: list[np.ndarray] = dataclasses.field(default_factory=list)
    train_accuracy: float = float("nan")
    seconds_per_batch: float = float("nan")
    validation_accuracy: float = float("nan")

    def snapshot(self, step: int) -> int:
        """Index of the snapshot taken at ``step`` (the nearest one before it if there is none)."""
        earlier = [i for i, s in enumerate(self.snapshot_steps) if s <= step]
        if not earlier:
            raise ValueError(f"no snapshot at or before batch {step}; snapshots: {self.snapshot_steps}")
        return earlier[-1]


def snapshot_schedule(num_batches: int, count: int = 8) -> list[int]:
    """About ``count`` roughly log-spaced batches from 1 to ``num_batches`` (both included)."""
    steps = np.unique(np.round(np.geomspace(1, num_batches, count)).astype(int))
    return [int(s) for s in steps]


class _RecordingTrainer:
    """Adam step of the exercise that also returns pre-activations and kernel-gradient norms."""

    def __init__(self, model: keras.Model, learning_rate: float):
        self.model = model
        names = preactivation_names(model)
        self.probe = keras.Model(model.inputs[0], [model.get_layer(n).input for n in names] + list(model.outputs))
        self.kernels = [model.get_layer(n).kernel for n in WEIGHT_LAYERS]
        self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        self.optimizer.build(model.trainable_variables)
        self.step = tf.function(self._step)

    def _step(self, images, labels):
        with tf.GradientTape() as tape:
            *preacts, logits = self.probe(images, training=True)
            one_hot = tf.one_hot(labels, 10)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=one_hot, logits=logits))
        variables = self.model.trainable_variables
        gradients = tape.gradient(loss, variables)
        by_id = {id(v): g for v, g in zip(variables, gradients)}
        norms = tf.stack([tf.norm(by_id[id(k)]) for k in self.kernels])
        self.optimizer.apply_gradients(zip(gradients, variables))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=1), labels), tf.float32))
        return loss, accuracy, norms, preacts


def train_and_record(model: keras.Model, data, num_batches: int, snapshot_steps: Sequence[int] = (),
                     run=None, batch_size: int = 64, learning_rate: float = 0.002, log_every: int = 25,
                     sample_size: int = 2000, seed: int = 0, validation_size: int | None = 2000,
                     name: str | None = None, on_snapshot: Callable[[LayerRecord], None] | None = None) -> LayerRecord:
    """Train ``model`` like the exercise does and record what happens inside, layer by layer.

    ``data`` is :func:`bnlab.data.load_mnist`'s result. At each batch in ``snapshot_steps`` up to
    ``sample_size`` pre-activation values per layer are kept (a fixed random choice of positions),
    with the standard deviation and the fraction of positive (ReLU-active) values; every
    ``log_every`` batches the kernel-gradient norms are kept and the mean training loss/accuracy go
    to ``run.log`` (a :mod:`bnlab.monitor` run, optional). ``on_snapshot(record)`` is called after
    each snapshot (the live viewer redraws there). ``name`` labels the record (default: the
    model's name). Returns the :class:`LayerRecord`.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be at least 1, got {num_batches}")
    trainer = _RecordingTrainer(model, learning_rate)
    record = LayerRecord(name or model.name, list(WEIGHT_LAYERS))
    wanted = set(int(s) for s in snapshot_steps)
    rng = np.random.default_rng(seed)
    picks: list[np.ndarray] | None = None
    pending = []
    started = None
    for done, (images, labels) in enumerate(data.train.batches(batch_size, seed=seed, num_batches=num_batches), 1):
        loss, accuracy, norms, preacts = trainer.step(images, labels)
        if done == 1:
            started = time.perf_counter()  # the first batch includes tracing: leave it out of the timing
        pending.append((float(loss), float(accuracy)))
        if done in wanted:
            flat = [p.numpy().reshape(-1) for p in preacts]
            if picks is None:
                picks = [rng.choice(f.size, size=min(sample_size, f.size), replace=False) for f in flat]
            record.snapshot_steps.append(done)
            record.samples.append([f[i % f.size] for f, i in zip(flat, picks)])
            record.preact_std.append(np.array([f.std() for f in flat]))
            record.active_fraction.append(np.array([np.mean(f > 0) for f in flat]))
        if done in wanted or done % log_every == 0 or done == num_batches:
            record.grad_steps.append(done)
            record.grad_norms.append(norms.numpy())
        if run is not None and (done % log_every == 0 or done == num_batches):
            values = np.array(pending)
            run.log(done, float(np.nanmean(values[:, 0])), float(np.mean(values[:, 1])), split="train")
        if done % log_every == 0 or done == num_batches:
            record.train_accuracy = float(np.mean(np.array(pending)[:, 1]))
            pending.clear()
        if done in wanted and on_snapshot is not None:
            on_snapshot(record)
    if num_batches > 1:
        record.seconds_per_batch = (time.perf_counter() - started) / (num_batches - 1)
    images, labels = data.validation.images[:validation_size], data.validation.labels[:validation_size]
    predictions = np.concatenate([np.argmax(model(images[i:i + 500], training=False), axis=1)
                                  for i in range(0, len(images), 500)])
    record.validation_accuracy = float(np.mean(predictions == labels))
    if run is not None:
        run.finish(validation_accuracy=record.validation_accuracy)
    return record


from bnlab.layer_viewer import LayerViewer  # noqa: E402,F401  (the viewer of these records)
