"""Machinery behind the lesson notebook *Batch Normalization in TensorFlow*.

The lesson notebook stays short by calling these helpers:

- :func:`initial_kernels`, :func:`build_demo_net`, :func:`build_twin_nets`: small fully connected
  MNIST classifiers, with or without batch normalization, that start from *identical* weights;
- :func:`train_demo` and :func:`compare`: the demo training (plain gradient descent through
  :class:`bnlab.training.step.Trainer`, on the schedule of :mod:`bnlab.training.loop`) that feeds a
  :class:`bnlab.monitor.TrainingMonitor`, and the helper that trains twin networks for several settings
  side by side in one panel;
- :class:`ComparisonControls`: dropdowns and a button to rerun one comparison;
- :func:`build_textbook_mlp`: the 784-300-100-10 MLP of the textbook chapter, with or without BN;
- :func:`predict_one_at_a_time`: scoring images as batches of one, in training or inference mode;
- :func:`batch_norm_formula` and :func:`batch_norm_tf_nn`: batch normalization written by hand, to
  check against ``keras.layers.BatchNormalization``;
- :func:`describe_variables`: the variables a layer owns, trainable or not.

:mod:`bnlab.monitor` is imported only by the functions that open a monitor, so the rest of this
module works on its own (the unit tests use it that way).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

import bnlab
from bnlab.exercise import TRAIN_LOG_EVERY, VALIDATE_EVERY
from bnlab.reference import batch_norm_formula  # noqa: F401  (re-exported for the notebook)
from bnlab.tables import table
from bnlab.training.loop import run_schedule
from bnlab.training.step import Trainer, device_batches, gradient_step, inference
from bnlab.training.step import predict_one_at_a_time as _one_at_a_time

tf = bnlab.tf
import keras  # noqa: E402  (after the quiet TensorFlow import)

DEMO_HIDDEN = (100, 100)
NUM_CLASSES = 10
INPUT_SIZE = 28 * 28
EVAL_CHUNK = 2500  # images per evaluation call of the demos

#: Weight initialisations the demos offer: key -> label shown in the dropdown.
INITIALISERS = {
    "glorot": "Glorot uniform (the Keras default)",
    "he": "He normal",
    "normal-5": "normal, stddev 5 (far too large)",
    "normal-0.001": "normal, stddev 0.001 (far too small)",
}

#: Activations the demos offer.
ACTIVATIONS = ("relu", "sigmoid", "tanh")

#: Learning rates the dropdown offers.
LEARNING_RATES = (0.01, 0.1, 1.0, 2.0)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def initial_kernels(layer_sizes: Sequence[int], init: str = "glorot", seed: int = 0) -> list[np.ndarray]:
    """Weight matrices for a fully connected network with the given layer sizes, from ``seed``.

    ``layer_sizes`` lists every layer including the input, e.g. ``(784, 100, 100, 10)`` gives
    three matrices of shapes (784, 100), (100, 100) and (100, 10). ``init`` is a key of
    :data:`INITIALISERS`. The same arguments always give the same matrices, which is how the
    networks with and without batch normalization start from identical weights.
    """
    if init not in INITIALISERS:
        raise ValueError(f"unknown init {init!r}; choose one of {sorted(INITIALISERS)}")
    rng = np.random.default_rng(seed)
    kernels = []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        if init == "glorot":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            kernel = rng.uniform(-limit, limit, size=(fan_in, fan_out))
        elif init == "he":
            kernel = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
        else:  # "normal-<stddev>"
            kernel = rng.normal(0.0, float(init.split("-", 1)[1]), size=(fan_in, fan_out))
        kernels.append(kernel.astype(np.float32))
    return kernels


def build_demo_net(
    batch_norm: bool,
    activation: str = "relu",
    init: str = "glorot",
    seed: int = 0,
    hidden: Sequence[int] = DEMO_HIDDEN,
    momentum: float = 0.9,
) -> keras.Model:
    """A small MNIST classifier: flatten, ``hidden`` fully connected layers, 10 logits.

    Without batch normalization each hidden layer is ``Dense(bias) -> activation``. With it, each
    hidden layer is ``Dense(no bias) -> BatchNormalization -> activation``: the bias would be
    cancelled by the mean subtraction anyway, and beta takes over its role. The output layer is a
    plain ``Dense`` with bias in both cases. Kernels come from :func:`initial_kernels`, so two
    networks built with the same ``init`` and ``seed`` start from the same weights whether or not
    they use batch normalization (biases start at 0, gamma at 1, beta at 0).

    ``momentum`` is the BN layers' moving-average momentum; the demos use 0.9 in both modes, not
    Keras' 0.99, so that a short-mode run of 100 batches already has usable population statistics.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
    name = f"{'bn' if batch_norm else 'plain'}_{activation}_{init}"
    layers: list = [keras.Input(shape=(28, 28, 1)), keras.layers.Flatten()]
    for i, units in enumerate(hidden, start=1):
        layers.append(keras.layers.Dense(units, use_bias=not batch_norm, name=f"dense{i}"))
        if batch_norm:
            layers.append(keras.layers.BatchNormalization(momentum=momentum, name=f"bn{i}"))
        layers.append(keras.layers.Activation(activation, name=f"{activation}{i}"))
    layers.append(keras.layers.Dense(NUM_CLASSES, name="logits"))
    model = keras.Sequential(layers, name=name)
    kernels = initial_kernels((INPUT_SIZE, *hidden, NUM_CLASSES), init=init, seed=seed)
    dense_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for layer, kernel in zip(dense_layers, kernels):
        layer.kernel.assign(kernel)
    return model


def build_twin_nets(
    activation: str = "relu",
    init: str = "glorot",
    seed: int = 0,
    hidden: Sequence[int] = DEMO_HIDDEN,
    momentum: float = 0.9,
) -> tuple[keras.Model, keras.Model]:
    """``(without_bn, with_bn)``: two :func:`build_demo_net` networks with identical initial kernels."""
    return (
        build_demo_net(False, activation, init, seed, hidden, momentum),
        build_demo_net(True, activation, init, seed, hidden, momentum),
    )


def dense_kernels(model: keras.Model) -> list[np.ndarray]:
    """The kernels of a model's ``Dense`` layers, in order, as NumPy arrays."""
    return [layer.kernel.numpy() for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def build_textbook_mlp(seed: int = 42, momentum: float = 0.9, batch_norm: bool = True) -> keras.Model:
    """The MLP of the textbook chapter's notebook: 784-300-100-10, He initialisation, ELU.

    With ``batch_norm`` (as in the chapter) each hidden ``Dense`` is followed by
    ``BatchNormalization(momentum)`` and then the ELU, and the logits are batch-normalized too
    (layer ``bn_logits``); without it, the same layers minus the BN layers: the comparison twin.
    The chapter trains it with plain gradient descent, learning rate 0.01 (compile it yourself).
    """
    keras.utils.set_random_seed(seed)
    layers: list = [keras.Input(shape=(28, 28, 1)), keras.layers.Flatten()]
    for i, units in enumerate((300, 100, NUM_CLASSES), start=1):
        name = "logits" if units == NUM_CLASSES else f"hidden{i}"
        layers.append(keras.layers.Dense(units, kernel_initializer="he_normal", name=name))
        if batch_norm:
            layers.append(keras.layers.BatchNormalization(momentum=momentum, name=f"bn{i}" if i < 3 else "bn_logits"))
        if units != NUM_CLASSES:
            layers.append(keras.layers.Activation("elu", name=f"elu{i}"))
    return keras.Sequential(layers, name="textbook_mlp" if batch_norm else "textbook_mlp_no_bn")


def describe_variables(layer: keras.layers.Layer) -> list[tuple[str, tuple[int, ...], bool]]:
    """``(name, shape, trainable)`` for every variable of ``layer``, trainable ones first."""
    rows = [(v.name, tuple(v.shape), True) for v in layer.trainable_weights]
    rows += [(v.name, tuple(v.shape), False) for v in layer.non_trainable_weights]
    return rows


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def demo_loss(logits, labels):
    """Mean softmax cross-entropy on integer labels: the demos' training and validation loss."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def train_demo(
    model: keras.Model,
    run,
    data,
    learning_rate: float,
    num_batches: int,
    batch_size: int = 60,
    log_every: int = TRAIN_LOG_EVERY,
    validate_every: int = VALIDATE_EVERY,
    seed: int = 0,
    validation_size: int | None = None,
    test_size: int | None = None,
) -> dict:
    """Train ``model`` with plain gradient descent on MNIST and report to a monitor ``run``.

    ``data`` is :func:`bnlab.data.load_mnist`'s result. Every ``log_every`` batches the mean
    training loss and accuracy of those batches go to ``run.log(..., split="train")``; every
    ``validate_every`` batches (and after the last one) the validation loss and accuracy, measured
    in inference mode, go to ``run.log(..., split="validation")``. The batches are shuffled from
    ``seed``, so two models trained with the same seed see exactly the same batches. At the end
    ``run.finish`` receives the validation and test accuracy. A loss that overflows is reported as
    ``nan``; training goes on (that is what the too-high learning rates show). The step and the
    evaluation are the exercise's (:class:`bnlab.training.step.Trainer`, here with plain gradient
    descent and the softmax cross-entropy :func:`demo_loss`), and so is the schedule,
    :func:`bnlab.training.loop.run_schedule`.

    Returns ``{"validation_accuracy", "test_accuracy", "final_train_loss"}``.
    """
    trainer = Trainer(
        model,
        gradient_step(demo_loss),
        inference,
        keras.optimizers.SGD(learning_rate=learning_rate),
        one_hot=False,
        loss=demo_loss,
        compile_evaluation=False,
    )
    batches = device_batches(data.train, batch_size, num_batches, seed)
    val_images, val_labels = data.validation.images[:validation_size], data.validation.labels[:validation_size]

    def score(images, labels) -> tuple[float, float]:  # inference mode: the population statistics
        return trainer.evaluate(images, labels, chunk=EVAL_CHUNK)

    logs = run_schedule(
        num_batches,
        lambda batch: trainer.train_on(batches, batch - 1),
        lambda batch: score(val_images, val_labels),
        run,
        log_every=log_every,
        validate_every=validate_every,
        average=True,
    )
    val_acc = logs.validation_log[-1][2] if logs.validation_log else float("nan")
    _, test_acc = score(data.test.images[:test_size], data.test.labels[:test_size])
    run.finish(validation_accuracy=val_acc, test_accuracy=test_acc)
    train_loss = logs.train_log[-1][1] if logs.train_log else float("nan")
    return {"validation_accuracy": val_acc, "test_accuracy": test_acc, "final_train_loss": train_loss}


def setting_label(learning_rate: float, activation: str, init: str) -> str:
    """Short text for one setting, e.g. ``"lr=1, relu, glorot"``."""
    return f"lr={learning_rate:g}, {activation}, {init}"


def compare(
    settings: Iterable[dict],
    data,
    title: str,
    num_batches: int,
    seed: int = 0,
    mode: str = "auto",
    close: bool = True,
    **train_options,
) -> list[dict]:
    """Train twin networks (without and with batch normalization) for each setting, in one panel.

    Each setting is a dict with ``learning_rate`` and optionally ``activation`` (default
    ``"relu"``) and ``init`` (default ``"glorot"``). For every setting the two networks of
    :func:`build_twin_nets` start from the same weights and see the same batches; both runs go to
    one :class:`bnlab.monitor.TrainingMonitor` so the curves can be compared side by side.

    ``close=False`` leaves the monitor open (its live panel stays as it is) instead of replacing
    the panel by a static figure; :class:`ComparisonControls` needs that, see there. ``train_options``
    (``batch_size``, ``log_every``, ``validate_every``, ``validation_size``, ``test_size``) go to
    :func:`train_demo`, with its defaults.

    Returns one dict per run: the setting, ``batch_norm`` and :func:`train_demo`'s results.
    """
    from bnlab.monitor import TrainingMonitor

    settings = [dict(s) for s in settings]
    monitor = TrainingMonitor(title=title, total_batches=num_batches, mode=mode)
    results = []
    try:
        for setting in settings:
            lr = float(setting["learning_rate"])
            activation = setting.get("activation", "relu")
            init = setting.get("init", "glorot")
            for model in build_twin_nets(activation, init, seed=seed):
                batch_norm = model.name.startswith("bn")
                name = f"{setting_label(lr, activation, init)}, {'with BN' if batch_norm else 'no BN'}"
                run = monitor.run(name)
                outcome = train_demo(model, run, data, lr, num_batches, seed=seed, **train_options)
                results.append(
                    {
                        "name": name,
                        "learning_rate": lr,
                        "activation": activation,
                        "init": init,
                        "batch_norm": batch_norm,
                        **outcome,
                    }
                )
    finally:
        if close:
            monitor.close()
    return results


def results_table(results: list[dict]) -> str:
    """The results of :func:`compare` as a small fixed-width text table."""
    rows = [(r["name"], r["validation_accuracy"], r["test_accuracy"]) for r in results]
    return table(rows, ("run", "val acc", "test acc"), ("", ".3f", ".3f"))


class ComparisonControls:
    """Dropdowns (learning rate, activation, initialisation) and a button that reruns one comparison.

    Display the object in a notebook cell to get the controls. Clicking the button trains the twin
    networks for the chosen setting, showing the monitor below the controls. :meth:`run` does the
    same from code (its monitor appears in the cell that calls it), so a notebook executed without
    anyone clicking still exercises the comparison.
    """

    def __init__(
        self,
        data,
        num_batches: int,
        batch_size: int = 60,
        validation_size: int | None = None,
        test_size: int | None = None,
        learning_rate: float = 1.0,
        activation: str = "sigmoid",
        init: str = "normal-0.001",
    ):
        import ipywidgets as widgets

        self.data = data
        self.options = dict(
            num_batches=num_batches, batch_size=batch_size, validation_size=validation_size, test_size=test_size
        )
        style = {"description_width": "initial"}
        self.learning_rate = widgets.Dropdown(
            options=list(LEARNING_RATES), value=learning_rate, description="learning rate", style=style
        )
        self.activation = widgets.Dropdown(
            options=list(ACTIVATIONS), value=activation, description="activation", style=style
        )
        self.init = widgets.Dropdown(
            options=[(label, key) for key, label in INITIALISERS.items()],
            value=init,
            description="initial weights",
            style=style,
            layout=widgets.Layout(width="480px"),
        )  # room for the longest label
        self.button = widgets.Button(
            description="Train with and without BN", button_style="primary", layout=widgets.Layout(width="auto")
        )
        self.output = widgets.Output()
        self.button.on_click(self._clicked)
        self.widget = widgets.VBox(
            [widgets.HBox([self.learning_rate, self.activation, self.init]), self.button, self.output]
        )
        self.last_results: list[dict] = []

    def setting(self) -> dict:
        """The setting the dropdowns show now."""
        return {"learning_rate": self.learning_rate.value, "activation": self.activation.value, "init": self.init.value}

    def run(self, close: bool = True) -> list[dict]:
        """Train the twin networks for the current setting; returns :func:`compare`'s results."""
        setting = self.setting()
        self.last_results = compare(
            [setting], self.data, title=f"Your choice: {setting_label(**setting)}", close=close, **self.options
        )
        return self.last_results

    def _clicked(self, _button) -> None:
        self.button.disabled = True
        self.output.clear_output()
        try:
            with self.output:
                # Inside an Output widget the monitor stays open: closing it would swap the live
                # panel for a static image through a display update, and Output widgets ignore
                # display updates (jupyter-widgets/ipywidgets#1844), so the curves would vanish.
                # The live panel already shows the final curves once both runs have finished.
                results = self.run(close=False)
                print(results_table(results))
        except Exception as exc:  # shown to the student rather than lost in the kernel log
            with self.output:
                print(f"Training failed: {type(exc).__name__}: {exc}")
        finally:
            self.button.disabled = False

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


# --------------------------------------------------------------------------------------------
# Inference with batches of one
# --------------------------------------------------------------------------------------------


def predict_one_at_a_time(model: keras.Model, images: np.ndarray, training: bool) -> np.ndarray:
    """Predicted classes for ``images``, each scored alone as a batch of one.

    With ``training=True`` the BN layers normalize with the statistics of that single image (and
    would update their moving averages); the model's non-trainable variables are saved before and
    restored afterwards, so the model is left exactly as it was.
    """
    return _one_at_a_time(lambda x: model(x, training=training), images, model=model)


# --------------------------------------------------------------------------------------------
# Batch normalization by hand
# --------------------------------------------------------------------------------------------


def batch_norm_tf_nn(x, layer: keras.layers.BatchNormalization, training: bool):
    """What ``layer(x, training=training)`` computes, rebuilt with ``tf.nn`` and the layer's variables.

    Training mode normalizes with the batch's own mean and variance from ``tf.nn.moments`` over
    every axis but the last (axis 0 for a dense layer's output, axes 0, 1, 2 for a feature map);
    inference mode uses the layer's moving mean and variance. The moving averages are *not*
    updated here.
    """
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    if training:
        mean, variance = tf.nn.moments(x, axes=list(range(len(x.shape) - 1)))
    else:
        mean, variance = layer.moving_mean, layer.moving_variance
    return tf.nn.batch_normalization(
        x, mean, variance, offset=layer.beta, scale=layer.gamma, variance_epsilon=layer.epsilon
    )
