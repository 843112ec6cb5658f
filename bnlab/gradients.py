"""Batch normalization's gradients, measured: the lesson's section 12 and section 8's initialization table.

- :func:`numerical_gradient`: centred finite differences of any array function (float64), for gradient checks;
- :func:`show_input_shift`: the exercise's demo after its Part 4 question, a neighbouring case (what a constant
  added to a feature's *inputs* changes in the gradients), measured with TensorFlow's autodiff;
- :func:`weight_scale_rows`: the previous layer's weights scaled by a factor: the output and the gradient;
- :class:`StatisticsBN`, :func:`input_gradient_rows` and :func:`build_statistics_twins`: batch normalization whose
  gradient flows through the batch statistics or skips them (``tf.stop_gradient``), on one batch and in the
  exercise's CNN;
- :func:`initialization_runs` and :func:`initialization_verdict`: the 20-layer network without batch
  normalization, He next to Glorot initialization, and with it, over seeds.

There is no analytic backward pass here: the exercise's Part 4 asks students to write one. Gradients come from
TensorFlow's autodiff or from finite differences.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

import bnlab
from bnlab import diagnostics
from bnlab.grading.backward_probe import autodiff
from bnlab.tables import table

tf = bnlab.tf
import keras  # noqa: E402  (after the quiet TensorFlow import)


def numerical_gradient(f: Callable, x, dout, step: float = 1e-5) -> np.ndarray:
    """Centred finite differences of ``sum(dout * f(x))`` with respect to ``x``, one entry at a time (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for index in np.ndindex(*x.shape):
        saved = x[index]
        x[index] = saved + step
        plus = np.sum(dout * f(x))
        x[index] = saved - step
        minus = np.sum(dout * f(x))
        x[index] = saved
        grad[index] = (plus - minus) / (2 * step)
    return grad


def show_input_shift(shift: float = 0.5, seed: int = 0) -> dict:
    """Add ``shift`` to every input of feature 0 of a dense batch (the same upstream gradient) and print what
    changes in ``dx``, ``dgamma`` and ``dbeta`` (TensorFlow's gradients, float64); returns the largest changes."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 2, 4) + rng.uniform(0.5, 2, 4) * rng.standard_normal((32, 4))
    gamma, dout = rng.uniform(0.5, 2, 4), rng.standard_normal((32, 4))
    shifted = x.copy()
    shifted[:, 0] += shift
    before, after = autodiff(dout, x, gamma, 1e-3), autodiff(dout, shifted, gamma, 1e-3)
    change = {key: float(np.max(np.abs(after[key] - before[key]))) for key in before}
    rows = [[key, change[key], float(np.max(np.abs(before[key])))] for key in ("dx", "dgamma", "dbeta")]
    print(f"every input of feature 0 (of 4) raised by {shift}, the same upstream gradient, a batch of {len(x)}:")
    print(table(rows, ["gradient", "largest change", "largest entry before"], ["", ".1e", ".2f"]))
    return change


def weight_scale_rows(factors: Sequence[float] = (0.1, 10.0, 1000.0), seed: int = 0) -> list[list]:
    """A dense layer ``z = a @ W`` followed by batch normalization (float64, training mode), its weights scaled
    by each factor: ``[factor, largest output change, |dW| at factor 1 / |dW| at the factor]``."""
    rng = np.random.default_rng(seed)
    a = tf.constant(rng.standard_normal((64, 20)))
    weights = rng.standard_normal((20, 8)) * np.sqrt(2 / 20)
    dout = tf.constant(rng.standard_normal((64, 8)))

    def run(factor):
        w = tf.Variable(weights * factor)
        with tf.GradientTape() as tape:
            z = a @ w
            mean, variance = tf.nn.moments(z, axes=[0])
            out = (z - mean) / tf.sqrt(variance + 1e-8)
        return out.numpy(), float(tf.norm(tape.gradient(out, w, output_gradients=dout)))

    out_1, grad_1 = run(1.0)
    rows = []
    for factor in factors:
        out_k, grad_k = run(factor)
        rows.append([factor, float(np.max(np.abs(out_k - out_1))), grad_1 / grad_k])
    return rows


class StatisticsBN(keras.layers.Layer):
    """Batch normalization by hand (``tf.nn.moments``, moving averages), whose gradient flows through the batch
    mean and variance, or skips them with ``stop_gradient=True`` (the mistake a Part 2 check fails)."""

    def __init__(self, stop_gradient: bool = False, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.stop_gradient, self.momentum, self.epsilon = stop_gradient, momentum, epsilon

    def build(self, input_shape):
        shape = (int(input_shape[-1]),)
        self.gamma = self.add_weight(shape=shape, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=shape, initializer="ones", trainable=False, name="moving_variance")

    def call(self, x, training=False):
        if training:
            mean, variance = tf.nn.moments(x, axes=list(range(len(x.shape) - 1)))
            self.moving_mean.assign(self.momentum * self.moving_mean + (1 - self.momentum) * mean)
            self.moving_variance.assign(self.momentum * self.moving_variance + (1 - self.momentum) * variance)
            if self.stop_gradient:
                mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, self.epsilon)


def input_gradient_rows(seed: int = 0) -> list[list]:
    """A :class:`StatisticsBN` layer on a random batch (training mode), its statistics in the gradient and
    stopped: ``[label, largest per-feature |sum of dx| / largest |dx|, largest |cosine(dx, x_hat)|]``."""
    rng = np.random.default_rng(seed)
    x = tf.constant((2 + 3 * rng.standard_normal((64, 8))).astype(np.float32))
    dout = tf.constant(rng.standard_normal((64, 8)).astype(np.float32))
    x_hat = (x.numpy() - x.numpy().mean(axis=0)) / x.numpy().std(axis=0)
    rows = []
    for label, stop in (("through the statistics", False), ("statistics stopped", True)):
        layer = StatisticsBN(stop_gradient=stop)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, training=True)
        dx = tape.gradient(out, x, output_gradients=dout).numpy()
        cosine = (dx * x_hat).sum(axis=0) / (np.linalg.norm(dx, axis=0) * np.linalg.norm(x_hat, axis=0))
        rows.append([label, float(np.abs(dx.sum(axis=0)).max() / np.abs(dx).max()), float(np.abs(cosine).max())])
    return rows


def build_statistics_twins(seed: int = 0) -> tuple[keras.Model, keras.Model]:
    """``(through the statistics, statistics stopped)``: the exercise's CNN with batch normalization
    (:func:`bnlab.diagnostics.build_exercise_cnn`), its BN layers replaced by :class:`StatisticsBN`, both
    starting from the same kernels."""
    source = diagnostics.build_exercise_cnn(True, seed=seed)
    twins = []
    for stop in (False, True):

        def clone(layer, stop=stop):
            if isinstance(layer, keras.layers.BatchNormalization):
                return StatisticsBN(stop_gradient=stop, momentum=layer.momentum, name=layer.name)
            return layer.__class__.from_config(layer.get_config())

        model = keras.models.clone_model(source, clone_function=clone)
        for name in diagnostics.WEIGHT_LAYERS + ("logits",):
            model.get_layer(name).kernel.assign(source.get_layer(name).kernel)
        twins.append(model)
    return twins[0], twins[1]


def he_initialized(model: keras.Model, seed: int = 0) -> keras.Model:
    """``model`` with every kernel redrawn from He normal initialization (std ``sqrt(2 / fan_in)``)."""
    for i, name in enumerate(diagnostics.WEIGHT_LAYERS + ("logits",)):
        kernel = model.get_layer(name).kernel
        kernel.assign(keras.initializers.HeNormal(seed=1000 * seed + i)(kernel.shape))
    return model


SETTINGS = ("Glorot, no BN", "He, no BN", "Glorot, BN")


def initialization_runs(data, num_batches: int, seeds: Sequence[int], validation_size: int | None = 2000) -> list:
    """Train the exercise's CNN in each of :data:`SETTINGS` for every seed (the exercise's step and optimizer,
    :func:`bnlab.diagnostics.train_and_record`); rows ``[setting, seed, training acc., validation acc.]``."""
    rows = []
    for seed in seeds:
        for setting in SETTINGS:
            model = diagnostics.build_exercise_cnn(setting.endswith(", BN"), seed=seed)
            if setting.startswith("He"):
                he_initialized(model, seed)
            record = diagnostics.train_and_record(model, data, num_batches, seed=seed, validation_size=validation_size)
            rows.append([setting, seed, record.train_accuracy, record.validation_accuracy])
    return rows


def initialization_verdict(rows: list, chance: float = 0.2) -> list[str]:
    """Sentences that say what the rows of :func:`initialization_runs` show, whatever they are: each setting's
    mean accuracies, and whether its network left the level of guessing (training accuracy above ``chance``;
    the training accuracy, since short runs leave the moving averages of batch normalization unsettled)."""
    mean = {s: [float(np.mean([r[i] for r in rows if r[0] == s])) for i in (2, 3)] for s in SETTINGS}
    lowest = {s: float(np.min([r[2] for r in rows if r[0] == s])) for s in SETTINGS}
    lines = [f"means over {len(rows) // len(SETTINGS)} seed(s), training / validation accuracy:"]
    for s in SETTINGS:
        if lowest[s] > chance:
            state = "learned with every seed"
        elif mean[s][0] <= chance:
            state = "stayed near chance"
        else:
            state = "learned with some seeds only"
        lines.append(f"  {s:<14} {mean[s][0]:.3f} / {mean[s][1]:.3f}: {state}")
    init_gain = mean["He, no BN"][0] - mean["Glorot, no BN"][0]
    bn_gain = mean["Glorot, BN"][0] - mean["He, no BN"][0]
    lines.append(f"what He initialization buys over Glorot without BN: {init_gain:+.3f} of training accuracy")
    lines.append(f"what batch normalization adds to He initialization alone: {bn_gain:+.3f} of training accuracy")
    return lines
