"""Experiments around batch normalization for the lesson: epsilon, noise, batch size, deployment.

- :func:`pre_bn_variances`: the variance that reaches each BN layer (before normalization);
- :class:`NoisyShift` and :func:`build_norm_net`: the lesson's small MLP with no normalization,
  batch normalization, "noisy" batch normalization (a random shift and scale after every BN layer,
  redrawn each batch, after Santurkar et al. 2018), layer normalization or group normalization;
- :func:`population_error`: how far a BN layer's moving averages are from the statistics of the
  whole training set;
- :func:`fold_batch_norm`: a copy of a ``Sequential`` model with each BN layer folded into the
  ``Dense``/``Conv2D`` layer before it, for inference.
"""

from __future__ import annotations

import time

import numpy as np

import bnlab
from bnlab.training.loop import SilentRun
from bnlab.training.step import statistics_kept

tf = bnlab.tf
import keras  # noqa: E402  (after the quiet TensorFlow import)

NORMALIZERS = {
    "none": "no normalization",
    "batch": "batch normalization",
    "noisy_batch": "batch normalization + noise",
    "layer": "layer normalization",
    "group": "group normalization (10 groups)",
}


def pre_bn_variances(model: keras.Model, images) -> dict[str, float]:
    """``{bn layer name: mean over features of the batch variance of its input}`` for ``images``.

    The batch variance is what a BN layer in training mode divides by (plus epsilon). The model runs
    in training mode, as during training; its moving averages are restored afterwards.
    """
    bn_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not bn_layers:
        raise ValueError(f"model {model.name!r} has no BatchNormalization layer")
    probe = keras.Model(model.inputs[0], [layer.input for layer in bn_layers])
    with statistics_kept(model):
        outputs = probe(np.asarray(images), training=True)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    result = {}
    for layer, values in zip(bn_layers, outputs):
        axes = tuple(range(len(values.shape) - 1))
        result[layer.name] = float(np.mean(np.var(values.numpy(), axis=axes)))
    return result


class NoisyShift(keras.layers.Layer):
    """In training, multiply every feature by a random scale and add a random shift, new each batch.

    Scale ``exp(N(0, scale_sd))`` and shift ``N(0, shift_sd)`` are drawn per feature once per call
    (the same for every example of the batch), so the distribution a following layer sees moves
    from batch to batch: a deliberate "internal covariate shift". At inference it does nothing.
    """

    def __init__(self, shift_sd: float = 1.0, scale_sd: float = 0.5, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.shift_sd, self.scale_sd = shift_sd, scale_sd
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training:
            return x
        width = (x.shape[-1],)
        scale = keras.ops.exp(keras.random.normal(width, stddev=self.scale_sd, seed=self.seed_generator))
        shift = keras.random.normal(width, stddev=self.shift_sd, seed=self.seed_generator)
        return x * scale + shift


def build_norm_net(
    normalizer: str, seed: int = 0, hidden=(100, 100), activation: str = "relu", momentum: float = 0.9
) -> keras.Model:
    """The lesson's small MLP (28x28 -> hidden -> 10) with one kind of normalization before each activation.

    ``normalizer`` is a key of :data:`NORMALIZERS`. The same ``seed`` gives the same initial kernels
    whatever the normalizer, so the variants start alike.
    """
    if normalizer not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {normalizer!r}; choose one of {sorted(NORMALIZERS)}")
    keras.utils.set_random_seed(seed)
    layers: list = [keras.Input(shape=(28, 28, 1)), keras.layers.Flatten()]
    for i, units in enumerate(hidden, start=1):
        layers.append(keras.layers.Dense(units, use_bias=normalizer == "none", name=f"dense{i}"))
        if normalizer in ("batch", "noisy_batch"):
            layers.append(keras.layers.BatchNormalization(momentum=momentum, name=f"bn{i}"))
        if normalizer == "noisy_batch":
            layers.append(NoisyShift(seed=seed + i, name=f"noise{i}"))
        elif normalizer == "layer":
            layers.append(keras.layers.LayerNormalization(name=f"ln{i}"))
        elif normalizer == "group":
            layers.append(keras.layers.GroupNormalization(groups=10, name=f"gn{i}"))
        layers.append(keras.layers.Activation(activation, name=f"{activation}{i}"))
    layers.append(keras.layers.Dense(10, name="logits"))
    return keras.Sequential(layers, name=normalizer)


def population_error(model: keras.Model, images, layer: str = "bn1") -> float:
    """Mean relative error of ``layer``'s moving variance against the variance of its input over ``images``."""
    bn = model.get_layer(layer)
    inputs = keras.Model(model.inputs[0], bn.input)(np.asarray(images), training=False).numpy()
    axes = tuple(range(inputs.ndim - 1))
    true_variance = inputs.var(axis=axes)
    return float(np.mean(np.abs(bn.moving_variance.numpy() - true_variance) / true_variance))


def fold_batch_norm(model: keras.Sequential) -> keras.Sequential:
    """A copy of ``model`` in which each BN layer is folded into the ``Dense``/``Conv2D`` layer before it.

    In inference mode BN computes ``gamma * (y - mean) / sqrt(var + eps) + beta`` per output
    feature of ``y = x W + b``; that is again a linear layer with
    ``W' = W * gamma / sqrt(var + eps)`` (per output column) and
    ``b' = beta + (b - mean) * gamma / sqrt(var + eps)``. Other layers are copied unchanged. The
    copy computes what ``model(x, training=False)`` computes, with fewer operations.
    """
    if not isinstance(model, keras.Sequential):
        raise TypeError("fold_batch_norm needs a keras.Sequential model")
    folded: list = [keras.Input(shape=model.inputs[0].shape[1:])]
    weights: list = []
    layers = model.layers
    i = 0
    while i < len(layers):
        layer = layers[i]
        following = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) and isinstance(
            following, keras.layers.BatchNormalization
        ):
            config = layer.get_config()
            config["use_bias"] = True
            kernel = layer.kernel.numpy()
            bias = layer.bias.numpy() if layer.use_bias else np.zeros(kernel.shape[-1], kernel.dtype)
            factor = following.gamma.numpy() / np.sqrt(following.moving_variance.numpy() + following.epsilon)
            folded.append(type(layer).from_config(config))
            weights.append([kernel * factor, following.beta.numpy() + (bias - following.moving_mean.numpy()) * factor])
            i += 2
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            raise ValueError(f"{layer.name} does not follow a Dense or Conv2D layer; it cannot be folded")
        folded.append(type(layer).from_config(layer.get_config()))
        weights.append(layer.get_weights())
        i += 1
    result = keras.Sequential(folded, name=f"{model.name}_folded")
    for layer, values in zip(result.layers, weights):
        layer.set_weights(values)
    return result


def batch_size_sweep(
    data,
    batch_sizes=(2, 8, 32, 128),
    normalizers=("batch", "layer", "group"),
    images: int = 6400,
    learning_rate: float = 0.05,
    monitor=None,
    seed: int = 0,
    validation_size: int | None = None,
) -> list[dict]:
    """Train :func:`build_norm_net` for every normalizer and batch size on the same number of images.

    Each run sees ``images`` training images (``images // batch_size`` batches of plain gradient
    descent, the lesson's :func:`bnlab.lesson.train_demo`). With a ``monitor``
    (:class:`bnlab.monitor.TrainingMonitor`) every run gets its own curves. Returns one dict per run:
    ``normalizer``, ``batch_size``, ``validation_accuracy`` (inference mode) and, for batch
    normalization, ``population_error`` of the first BN layer (see :func:`population_error`).
    """
    from bnlab.lesson import train_demo

    results = []
    for batch_size in batch_sizes:
        num_batches = max(1, images // batch_size)
        for normalizer in normalizers:
            model = build_norm_net(normalizer, seed=seed)
            name = f"{NORMALIZERS[normalizer]}, batch {batch_size}"
            run = monitor.run(name, total_batches=num_batches) if monitor is not None else SilentRun()
            outcome = train_demo(
                model,
                run,
                data,
                learning_rate,
                num_batches,
                batch_size=batch_size,
                log_every=max(1, num_batches // 20),
                validate_every=num_batches,
                seed=seed,
                validation_size=validation_size,
                test_size=validation_size,
            )
            error = (
                population_error(model, data.train.images[:5000])
                if normalizer in ("batch", "noisy_batch")
                else float("nan")
            )
            results.append(
                {
                    "normalizer": normalizer,
                    "batch_size": batch_size,
                    "validation_accuracy": outcome["validation_accuracy"],
                    "population_error": error,
                }
            )
    return results


def loss_along_gradient(model: keras.Model, images, labels, step_sizes) -> np.ndarray:
    """Loss on one batch after a gradient step of each size in ``step_sizes``, from the current weights.

    The model runs in training mode (batch statistics), as during training; its weights and moving
    averages are restored afterwards. A wide spread of these losses means a rough loss landscape
    along the gradient (Santurkar et al. 2018 measure the same for their "loss landscape" plots).
    """
    images, labels = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
    saved = [v.numpy() for v in model.variables]

    def loss_now():
        logits = model(images, training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))

    try:
        with tf.GradientTape() as tape:
            loss = loss_now()
        gradients = tape.gradient(loss, model.trainable_variables)
        start = [v.numpy() for v in model.trainable_variables]
        losses = []
        for size in step_sizes:
            for variable, value, gradient in zip(model.trainable_variables, start, gradients):
                variable.assign(value - size * gradient.numpy())
            losses.append(float(loss_now()))
        return np.array(losses)
    finally:
        for variable, value in zip(model.variables, saved):
            variable.assign(value)


def inference_seconds(model: keras.Model, images, repeats: int = 5) -> float:
    """Median wall time of one compiled inference-mode forward pass of ``model`` over ``images``."""

    call = tf.function(lambda x: model(x, training=False))
    images = tf.convert_to_tensor(images)
    call(images)  # trace once, outside the timing
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call(images).numpy()
        times.append(time.perf_counter() - started)
    return float(np.median(times))
