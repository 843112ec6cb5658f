"""TensorFlow side of the checks: a student's function run on the inputs the network feeds it, reported as NumPy data.

A probe builds a student's layer (or wraps a ``train_step`` / ``predict``), runs it the way the notebook's training
does, inside ``tf.function``, and answers with plain arrays: outputs, statistics, parameters, gradients. It judges
nothing that could make a check pass; the judging lives in :mod:`bnlab.grading.checks` (NumPy only), which in the
trusted re-verification runs in another process. Structural problems (no BatchNormalization layer, a call that
raises) end the check with :class:`~bnlab.grading.errors.CheckFailed`.
"""

from __future__ import annotations

import numpy as np

import bnlab
from bnlab import training
from bnlab.grading import numeric as num
from bnlab.grading.errors import explain, fail, per
from bnlab.grading.errors import first_line as _first_line  # (export reports traced errors with it)
from bnlab.nn import Network

tf = bnlab.tf
keras = tf.keras
NN_EPSILON = 1e-3
STEP_MOMENTUM = 0.9
GRAPH_HINT = (
    "It works when run eagerly but fails inside tf.function, which is how the notebook's training runs "
    "it: keep to TensorFlow operations (no .numpy(), no NumPy functions on tensors, no Python `if` on a "
    "tensor's value)."
)


def _np(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def run(description: str, fn, *args, eager=None, **kwargs):
    """Call student code (traced when ``fn`` is a tf.function); failures become one clear CheckFailed."""
    __tracebackhide__ = True
    try:
        return fn(*args, **kwargs)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - student code can raise anything
        if eager is not None:
            try:
                eager(*args, **kwargs)
            except Exception:  # noqa: BLE001 - fails eagerly too: report the traced error
                pass
            else:
                fail(
                    f"{description}: {GRAPH_HINT} (Inside tf.function: {type(exc).__name__}: {_first_line(exc)[:120]})",
                    "inference" if description.startswith(("train_step", "predict")) else "by_hand",
                )
        explained = explain(description, exc)
        fail(
            explained,
            "inference"
            if description.startswith(("train_step", "predict"))
            else "conv"
            if "axis" in explained or "shape" in explained
            else "by_hand",
        )


def _traced(fn):
    return tf.function(fn, reduce_retracing=True)


class LayerProbe:
    """Common interface of the Keras and tf.nn layer probes; every method answers with NumPy data."""

    kind: str
    where: str
    kernel = None
    bias = None

    def _start(self, layer_fn, kind: str, seed: int, arg=None) -> None:
        """Seed; keep the layer's size argument (None: the checks' default); name the layer function by its own
        name, or the exercise's for its kind (a lambda, a partial)."""
        __tracebackhide__ = True
        keras.utils.set_random_seed(seed)
        self.kind, self.arg = kind, num.layer_arg(kind, arg)
        name = getattr(layer_fn, "__name__", "")
        self.where = name if name.isidentifier() else ("fully_connected" if kind == "dense" else "conv_layer")

    def _forward(self, x, training):
        raise NotImplementedError

    def _scale_shift_vars(self):
        raise NotImplementedError

    def statistics(self):
        raise NotImplementedError

    def _setup_traced(self):
        self._traced = {mode: _traced(lambda x, mode=mode: self._forward(x, mode)) for mode in (True, False)}

        def gradient(x, upstream):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(self._forward(x, True) * upstream)
            return tape.gradient(loss, self.kernel)

        self._gradient = _traced(gradient)
        self._gradient_eager = gradient

    def call(self, x, training: bool):
        mode = "training" if training else "inference"
        return _np(
            run(
                f"{self.where} in {mode} mode",
                self._traced[bool(training)],
                tf.constant(x, tf.float32),
                eager=lambda x: self._forward(x, bool(training)),
            )
        )

    def kernel_gradient(self, x, upstream):
        """d sum(output * upstream) / d kernel in training mode (None when no gradient reaches the kernel)."""
        grad = run(
            f"the gradient of {self.where}",
            self._gradient,
            tf.constant(x, tf.float32),
            tf.constant(upstream, tf.float32),
            eager=self._gradient_eager,
        )
        return None if grad is None else _np(grad)

    def set_scale_shift(self, gamma, beta):
        for var, value in zip(self._scale_shift_vars(), (gamma, beta)):
            if var is not None and int(np.prod(var.shape)) == np.size(value):  # (a misfit: another check says so)
                var.assign(np.asarray(value, np.float32).reshape(var.shape))

    def info(self) -> dict:
        gamma, beta = (None if v is None else _np(v) for v in self._scale_shift_vars())
        return {
            "kernel": _np(self.kernel),
            "bias": None if self.bias is None else _np(self.bias),
            "gamma": gamma,
            "beta": beta,
            "epsilon": self.epsilon,
            "flags": self.flags(),
        }


def _weights_except(weights, exclude):
    ids = {id(v) for v in exclude}
    return [w for w in weights if id(w) not in ids]


def _find_kernel_and_bias(where, kind, trainable):
    rank = 2 if kind == "dense" else 4
    kernels = [w for w in trainable if len(w.shape) == rank]
    if len(kernels) != 1:
        fail(
            f"{where} should hold exactly one trainable weight {'matrix' if kind == 'dense' else 'kernel'} "
            f"(the {'Dense' if kind == 'dense' else 'Conv2D'} layer's); found {len(kernels)}. The network learns "
            "through that weight: leave it trainable, and give the layer one linear part.",
            "variables",
        )
    biases = [w for w in trainable if len(w.shape) == 1]
    return kernels[0], (biases[0] if biases else None)


class KerasLayerProbe(LayerProbe):
    """``layer_fn(prev_layer, arg)`` applied to a symbolic input, as a small Keras model."""

    def __init__(self, layer_fn, kind, arg, seed=0):
        __tracebackhide__ = True
        self._start(layer_fn, kind, seed, arg)
        inputs = keras.Input(num.input_shape(kind, self.arg))
        outputs = run(f"{self.where}(prev_layer, ...) on a Keras input", layer_fn, inputs, self.arg)
        if not isinstance(outputs, keras.KerasTensor):
            fail(
                f"{self.where} must return the output of Keras layers applied to prev_layer (a symbolic Keras tensor); "
                f"it returned {type(outputs).__name__}. The network is built by chaining the layer functions' "
                "outputs.",
                "variables",
            )
        self.model = keras.Model(inputs, outputs)
        self._fresh_layers(layer_fn)
        norms = [
            layer
            for layer in self.model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        if len(norms) != 1:
            fail(
                f"{self.where} holds {len(norms) or 'no'} keras.layers.BatchNormalization "
                f"layer{'s' * (len(norms) != 1)} "
                "(nested blocks and custom layers included); it needs exactly one, applied to the layer's linear "
                "output (or to its ReLU).",
                "variables",
            )
        self.bn = norms[0]
        if not self.bn.trainable:
            fail(
                f"{self.where}: its BatchNormalization layer is frozen (trainable=False). Keras then runs that layer "
                "in "
                "inference mode even while the model trains: it never normalizes with the batch's statistics and "
                "never updates its moving averages, so it does no batch normalization. Freezing is for fine-tuning "
                "a trained network; here the layer must learn.",
                "fine_tuning",
            )
        self.epsilon = float(self.bn.epsilon)
        own = [v for v in (self.bn.gamma, self.bn.beta) if v is not None]
        self.kernel, self.bias = _find_kernel_and_bias(
            self.where, kind, _weights_except(self.model.trainable_weights, own)
        )
        self._setup_traced()

    def _fresh_layers(self, layer_fn) -> None:
        """Fail unless a second call builds layers of its own: weights the first call's model holds again are
        layers kept between calls (a cache), which every model built with the function would share."""
        __tracebackhide__ = True
        inputs = keras.Input(num.input_shape(self.kind, self.arg))
        again = run(f"{self.where}(prev_layer, ...) called a second time", layer_fn, inputs, self.arg)
        first = {id(w) for w in self.model.weights}
        if isinstance(again, keras.KerasTensor) and any(id(w) in first for w in keras.Model(inputs, again).weights):
            fail(
                f"{self.where}: a second call returned layers the first call had built (their weights are the same "
                "objects), so every model built with it shares one set of weights and statistics: a second network "
                "would train and overwrite the first one's. Create new Keras layers inside the function on every "
                "call.",
                "variables",
            )

    def _forward(self, x, training):
        # inference as the notebook's given predict runs it: model(images), no flag (a flag fixed inside the
        # layer function then decides); training as the given train_step runs it, with training=True
        return self.model(x, training=True) if training else self.model(x)

    def call_explicit(self, x):
        """Inference with an explicit ``training=False`` (which overrides a flag fixed inside the layers)."""
        if not hasattr(self, "_explicit"):
            self._explicit = _traced(lambda x: self.model(x, training=False))
        return _np(
            run(
                f"{self.where} in inference mode",
                self._explicit,
                tf.constant(x, tf.float32),
                eager=lambda x: self.model(x, training=False),
            )
        )

    def set_statistics(self, mean, variance):
        self.bn.moving_mean.assign(np.asarray(mean, np.float32))
        self.bn.moving_variance.assign(np.asarray(variance, np.float32))

    def _scale_shift_vars(self):
        return self.bn.gamma, self.bn.beta

    def statistics(self):
        return _np(self.bn.moving_mean), _np(self.bn.moving_variance)

    def flags(self):
        trainable = {id(v) for v in self.model.trainable_weights}
        return {
            "gamma": self.bn.gamma is None or id(self.bn.gamma) in trainable,
            "beta": self.bn.beta is None or id(self.bn.beta) in trainable,
            "pop_mean": id(self.bn.moving_mean) in trainable,
            "pop_variance": id(self.bn.moving_variance) in trainable,
        }


def _role(variable) -> str:
    name = variable.name.split(":")[0].split("/")[-1].lower()
    for role, keys in (
        ("pop_mean", ("mean",)),
        ("pop_variance", ("var",)),
        ("gamma", ("gamma", "scale")),
        ("beta", ("beta", "offset", "shift")),
    ):
        if any(key in name for key in keys):
            return role
    return ""


def _vectors_per_unit(where, kind, arg, variables) -> None:
    """Fail when variables named as batch normalization's own (gamma, beta, the population mean and variance) are
    not vectors: a scalar, (1, C), or one per position (H, W, C) instead of (C,). (A kernel is none of these, whatever
    its name.)"""
    __tracebackhide__ = True
    n, positions = num.units(kind, arg), num.output_shape(kind, arg)[:-1]
    misfits = [
        v
        for v in variables
        if _role(v)
        and len(v.shape) != 1
        and (len(v.shape) == 0 or (v.shape[-1] == n and (set(v.shape[:-1]) <= {1} or v.shape[:-1] == positions)))
    ]
    if misfits:
        found = ", ".join(f"{v.name.split(':')[0].split('/')[-1]} {tuple(v.shape)}" for v in misfits)
        fail(
            f"{where}: its batch normalization variables exist but have the wrong shape ({found}). Batch "
            f"normalization keeps one gamma, beta, mean and variance per {per(kind)}: each is a vector of shape ({n},)"
            + (", not one value per position of the feature maps." if len(misfits[0].shape) > 2 else "."),
            "conv",
        )


class NNLayerProbe(LayerProbe):
    """``layer_fn(prev_layer, arg, is_training)`` inside a :class:`bnlab.nn.Network`."""

    def __init__(self, layer_fn, kind, arg, seed=0):
        __tracebackhide__ = True
        self._start(layer_fn, kind, seed, arg)
        arg = self.arg
        self.network = Network(lambda x, is_training: layer_fn(x, arg, is_training), name=f"probe_{self.where}")
        first = num.batches(kind, 1, seed + 1000, arg)[0]
        # the first pass creates the variables; inference mode, so no statistics should move
        run(f"{self.where}(prev_layer, ..., is_training=False)", self.network, tf.constant(first), False)
        variables = list(self.network.variables)
        _vectors_per_unit(self.where, kind, arg, variables)
        rank1 = [v for v in variables if len(v.shape) == 1]
        by_role = {}
        for v in rank1:
            if _role(v):
                by_role.setdefault(_role(v), v)
        for v in rank1:  # fall back on initial values and trainable flags
            if v.trainable or any(v is w for w in by_role.values()):
                continue
            if np.allclose(_np(v), 0) and "pop_mean" not in by_role:
                by_role["pop_mean"] = v
            elif np.allclose(_np(v), 1) and "pop_variance" not in by_role:
                by_role["pop_variance"] = v
        missing = [r for r in ("gamma", "beta", "pop_mean", "pop_variance") if r not in by_role]
        if missing:
            fail(
                f"{self.where}: could not find the variable(s) {', '.join(missing)}. Create gamma, beta, pop_mean and "
                "pop_variance with nn.get_variable, one entry per unit (or per feature map): a batch normalization "
                "layer owns these four.",
                "variables",
            )
        self.vars = by_role
        self.epsilon = NN_EPSILON
        trainable = [v for v in variables if v.trainable]
        self.kernel, self.bias = _find_kernel_and_bias(
            self.where, kind, _weights_except(trainable, list(by_role.values()))
        )
        self._setup_traced()

    def _forward(self, x, training):
        return self.network(x, training)

    def _scale_shift_vars(self):
        return self.vars["gamma"], self.vars["beta"]

    def statistics(self):
        return _np(self.vars["pop_mean"]), _np(self.vars["pop_variance"])

    def flags(self):
        return {role: bool(self.vars[role].trainable) for role in ("gamma", "beta", "pop_mean", "pop_variance")}


def layer_probe(layer_fn, kind: str, api: str, arg=None, seed: int = 0) -> LayerProbe:
    """The probe of a student's layer function: a small Keras model, or a :class:`bnlab.nn.Network`.

    Args:
        layer_fn: the student's layer function.
        kind, api: ``"dense"`` or ``"conv"``; ``"keras"`` (Part 1) or ``"nn"`` (Part 2).
        arg: the layer's size argument (units or depth); None for the checks' default.
        seed: seeds the layer's weights.
    """
    __tracebackhide__ = True
    if not callable(layer_fn):
        fail(f"expected a function, got {type(layer_fn).__name__}: run the cell that defines it first.", "by_hand")
    return (KerasLayerProbe if api == "keras" else NNLayerProbe)(layer_fn, kind, arg, seed)


class StepProbe:
    """A small reference model (Dense, BatchNormalization, ReLU, Dense(3)) for ``train_step`` and ``predict``:
    the course's model, not the student's, so these checks judge the training step and the prediction alone."""

    def __init__(self, seed: int = 0):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((num.DENSE_FEATURES,))
        z = keras.layers.Dense(num.DENSE_UNITS, use_bias=False)(inputs)
        self.bn = keras.layers.BatchNormalization(momentum=STEP_MOMENTUM)
        logits = keras.layers.Dense(3)(keras.layers.ReLU()(self.bn(z)))
        self.model = keras.Model(inputs, logits)
        self.pre = keras.Model(inputs, z)
        rng = np.random.default_rng(seed)
        self.bn.gamma.assign(rng.uniform(0.5, 2.0, num.DENSE_UNITS).astype(np.float32))
        self.bn.beta.assign(rng.uniform(-1.0, 1.0, num.DENSE_UNITS).astype(np.float32))

    def statistics(self):
        return _np(self.bn.moving_mean), _np(self.bn.moving_variance)

    def _restore(self, stats):
        self.bn.moving_mean.assign(stats[0].astype(np.float32))
        self.bn.moving_variance.assign(stats[1].astype(np.float32))

    def _loss_gradients(self, x, y, mode):
        stats = self.statistics()
        with tf.GradientTape() as tape:
            loss = training.loss_fn(self.model(x, training=mode), y)
        grads = tape.gradient(loss, self.model.trainable_variables)
        self._restore(stats)
        return [_np(g) for g in grads]

    def warm_up(self, inputs):
        """A few training-mode passes, so that the population statistics differ from the batch's."""
        for x in inputs:
            self.model(tf.constant(x), training=True)

    def train_step(self, train_step, x, y, learning_rate):
        """Run the student's ``train_step`` once (traced) with plain SGD; report what changed."""
        x, y = tf.constant(x, tf.float32), tf.constant(y, tf.float32)
        optimizer = keras.optimizers.SGD(learning_rate)
        optimizer.build(self.model.trainable_variables)  # no variables created while tracing
        report = {
            "stats_before": self.statistics(),
            "z": _np(self.pre(x, training=False)),
            "weights_before": [_np(w) for w in self.model.trainable_variables],
            "grad_training": self._loss_gradients(x, y, True),
            "grad_inference": self._loss_gradients(x, y, False),
        }
        result = run(
            "train_step(model, optimizer, images, labels)",
            _traced(train_step),
            self.model,
            optimizer,
            x,
            y,
            eager=train_step,
        )
        report["returned_pair"] = isinstance(result, (tuple, list)) and len(result) == 2
        report["stats_after"] = self.statistics()
        report["weights_after"] = [_np(w) for w in self.model.trainable_variables]
        report.update(self._with_run_optimizer(train_step, x, y, report, learning_rate))
        return report

    def _with_run_optimizer(self, train_step, x, y, report, learning_rate) -> dict:
        """Run ``train_step`` again from the same start, as ``training.train`` runs it: traced, with the run's optimizer
        (:class:`bnlab.training.adam.FusedAdam`, built before the first step). Reports whether it ran, its steps and
        the weights after it; the state after the SGD step is put back afterwards."""
        from bnlab.training.adam import FusedAdam

        after = (self.statistics(), [_np(w) for w in self.model.trainable_variables])
        self._restore(report["stats_before"])
        for w, value in zip(self.model.trainable_variables, report["weights_before"]):
            w.assign(value)
        optimizer = FusedAdam(learning_rate)
        optimizer.build(self.model.trainable_variables)
        out = {"run_optimizer_error": None, "run_optimizer_weights": None, "run_optimizer_steps": 0}
        try:
            tf.function(train_step, reduce_retracing=True)(self.model, optimizer, x, y)
        except Exception as exc:  # noqa: BLE001 - student code can raise anything
            out["run_optimizer_error"] = f"{type(exc).__name__}: {_first_line(exc)[:160]}"
        else:
            out["run_optimizer_steps"] = int(_np(optimizer.iterations))
            # the weights as data: the parent judges whether they moved (NumPy here may be the student's)
            out["run_optimizer_weights"] = [_np(w) for w in self.model.trainable_variables]
        self._restore(after[0])
        for w, value in zip(self.model.trainable_variables, after[1]):
            w.assign(value)
        return out

    def predict(self, predict, x):
        """Run the student's ``predict`` (traced) on a batch and on a batch of one; report references too."""
        x = tf.constant(x, tf.float32)
        traced = _traced(predict)
        before = self.statistics()
        logits = _np(run("predict(model, images)", traced, self.model, x, eager=predict))
        after = self.statistics()
        self._restore(before)
        single = _np(run("predict(model, one_image)", traced, self.model, x[:1], eager=predict))
        self._restore(before)
        report = {
            "stats_before": before,
            "stats_after": after,
            "logits": logits,
            "single": single,
            "inference": _np(self.model(x, training=False)),
            "training": _np(self.model(x, training=True)),
        }
        self._restore(before)
        return report
