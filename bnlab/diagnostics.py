"""Inside the exercise's 20-layer CNN: per-layer pre-activations and gradient norms over training.

The lesson uses these helpers to show *why* the network of the graded exercise does not learn
without batch normalization:

- :func:`build_exercise_cnn` / :func:`build_exercise_twins`: the exercise's architecture (19 3x3
  convolutions with ``depth * 4`` filters, stride 2 when ``depth % 3 == 0``, ``'same'`` padding,
  ReLU; a 100-unit dense layer; 10 logits), without and with batch normalization, from identical
  kernels;
- :func:`feature_map_sizes`: the spatial size each convolution produces;
- :func:`train_and_record`: the exercise's training (its :class:`bnlab.training.step.Trainer`, Adam,
  learning rate, batch size, loss and schedule) that snapshots every layer's pre-activations and
  gradient norms;
- :class:`LayerViewer`: a widget to pick a layer and a training step (a static figure where no live
  Jupyter kernel with ipywidgets is available, like :mod:`bnlab.monitor`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

import bnlab
from bnlab.exercise import BATCH_SIZE, LEARNING_RATE, TRAIN_LOG_EVERY, VALIDATE_EVERY, due
from bnlab.training import Stopwatch, loss_fn
from bnlab.training.adam import FusedAdam
from bnlab.training.loop import SilentRun, run_schedule
from bnlab.training.step import Trainer, device_batches, gradient_step, inference

tf = bnlab.tf
import keras  # noqa: E402  (after the quiet TensorFlow import)

CONV_DEPTHS = tuple(range(1, 20))
VALIDATION_CHUNK = 500  # images per evaluation call of the recording
WEIGHT_LAYERS = tuple(f"conv{d}" for d in CONV_DEPTHS) + ("dense",)


def build_exercise_cnn(batch_norm: bool, seed: int = 0, momentum: float = 0.99) -> keras.Model:
    """The exercise's 20-layer CNN for 28x28x1 images, with or without batch normalization.

    Without BN each weight layer is ``Conv2D/Dense (bias) -> ReLU``; with BN it is
    ``Conv2D/Dense (no bias) -> BatchNormalization -> ReLU``, the paper's placement. It builds the whole
    network at once, with no function of the exercise's signatures: it is the lesson's network, not an answer to
    the exercise's tasks. Layers are
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
        block(
            keras.layers.Conv2D(
                depth * 4,
                3,
                strides=2 if depth % 3 == 0 else 1,
                padding="same",
                use_bias=not batch_norm,
                name=f"conv{depth}",
            ),
            depth,
        )
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
    the mean time of a training step after the first (which includes tracing), recording and
    redrawing left out.
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


def _recording_step(model: keras.Model) -> Callable:
    """The exercise's training step (:func:`bnlab.training.loss_fn`) on ``model``, whose extra output is
    ``(kernel-gradient norm per weight layer, pre-activations per layer)``."""
    probe = keras.Model(
        model.inputs[0], [model.get_layer(n).input for n in preactivation_names(model)] + list(model.outputs)
    )
    kernels = [model.get_layer(n).kernel for n in WEIGHT_LAYERS]

    def forward(images):
        *preacts, logits = probe(images, training=True)
        return logits, preacts

    def inspect(pairs, preacts):
        by_id = {id(variable): gradient for variable, gradient in pairs}
        return tf.stack([tf.norm(by_id[id(kernel)]) for kernel in kernels]), preacts

    return gradient_step(loss_fn, forward, inspect)


def train_and_record(
    model: keras.Model,
    data,
    num_batches: int,
    snapshot_steps: Sequence[int] = (),
    run=None,
    batch_size: int = BATCH_SIZE,
    learning_rate: float = LEARNING_RATE,
    log_every: int = TRAIN_LOG_EVERY,
    sample_size: int = 2000,
    seed: int = 0,
    validation_size: int | None = 2000,
    name: str | None = None,
    on_snapshot: Callable[[LayerRecord], None] | None = None,
    validate_every: int = VALIDATE_EVERY,
) -> LayerRecord:
    """Train ``model`` like the exercise does and record what happens inside, layer by layer.

    The step, the optimizer (:class:`bnlab.training.adam.FusedAdam`), the loss
    (:func:`bnlab.training.loss_fn`) and the schedule (:func:`bnlab.training.loop.run_schedule`) are
    the exercise's. Returns the :class:`LayerRecord`.

    Args:
        model: a network of :func:`build_exercise_cnn`.
        data: :func:`bnlab.data.load_mnist`'s result.
        num_batches: training batches (at least 1).
        snapshot_steps: batches at which up to ``sample_size`` pre-activation values per layer are
            kept (a fixed random choice of positions), with their standard deviation and the
            fraction of positive (ReLU-active) values; the kernel-gradient norms are kept there too.
        run: a :mod:`bnlab.monitor` run (optional) that receives the mean training loss and
            accuracy every ``log_every`` batches, the validation figures every ``validate_every``
            batches and after the last one, and at the end ``finish(validation_accuracy=...)``.
        batch_size, learning_rate, log_every, validate_every: the exercise's by default
            (:mod:`bnlab.exercise`); the kernel-gradient norms are kept every ``log_every`` batches.
        sample_size: pre-activation values kept per layer and snapshot.
        seed: the batches' shuffle and the choice of sampled positions.
        validation_size: validation images scored in inference mode (``None``: all of them).
        name: labels the record (default: the model's name).
        on_snapshot: ``on_snapshot(record)`` after each snapshot (the live viewer redraws there).
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be at least 1, got {num_batches}")
    trainer = Trainer(
        model, _recording_step(model), inference, FusedAdam(learning_rate), extra=True, compile_evaluation=False
    )
    batches = device_batches(data.train, batch_size, num_batches, seed)
    val_images, val_labels = data.validation.images[:validation_size], data.validation.labels[:validation_size]
    record = LayerRecord(name or model.name, list(WEIGHT_LAYERS))
    wanted = set(int(s) for s in snapshot_steps)
    rng = np.random.default_rng(seed)
    picks: list[np.ndarray] = []
    latest: list = []  # the last step's (gradient norms, pre-activations)
    watch = Stopwatch()

    def step(batch: int):
        loss, accuracy, found = trainer.train_on(batches, batch - 1)
        latest[:] = found
        return loss, accuracy

    def keep(batch: int) -> None:
        norms, preacts = latest
        if batch in wanted:
            flat = [p.numpy().reshape(-1) for p in preacts]
            if not picks:
                picks.extend(rng.choice(f.size, size=min(sample_size, f.size), replace=False) for f in flat)
            record.snapshot_steps.append(batch)
            record.samples.append([f[i % f.size] for f, i in zip(flat, picks)])
            record.preact_std.append(np.array([f.std() for f in flat]))
            record.active_fraction.append(np.array([np.mean(f > 0) for f in flat]))
        if batch in wanted or due(batch, num_batches, log_every):
            record.grad_steps.append(batch)
            record.grad_norms.append(norms.numpy())
        if batch in wanted and on_snapshot is not None:
            on_snapshot(record)

    logs = run_schedule(
        num_batches,
        step,
        lambda batch: trainer.evaluate(val_images, val_labels, VALIDATION_CHUNK),
        run or SilentRun(),
        log_every=log_every,
        validate_every=validate_every,
        average=True,
        after_step=keep,
        watch=watch,
    )
    record.train_accuracy = logs.train_log[-1][2]
    record.validation_accuracy = logs.validation_log[-1][2]
    if num_batches > 1:  # the first step traces the compiled step: left out
        record.seconds_per_batch = watch.seconds["steps"] / (num_batches - 1)
    if run is not None:
        run.finish(validation_accuracy=record.validation_accuracy)
    return record


from bnlab.layer_viewer import LayerViewer  # noqa: E402,F401  (the viewer of these records)
