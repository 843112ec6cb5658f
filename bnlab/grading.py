"""Numerical checks behind the graded cells of the batch-normalization exercise.

Each ``check_*`` function calls a student's function on small synthetic inputs, compares what it
does with a NumPy reference, and raises :class:`AssertionError` with a message that says what is
wrong and hints why. The checks judge behaviour, not text: batch normalization before or after
the ReLU, with or without a bias, ``tf.nn.batch_normalization`` or the formula by hand, a Python
``if`` or ``tf.cond``, and any decay (momentum) in [0.5, 1) all pass. (A decay below 0.5 lets
every single batch outweigh the whole history: that is the update written the wrong way round.)

``api="keras"`` (Part 1): ``fully_connected(prev_layer, num_units)`` and ``conv_layer(prev_layer,
layer_depth)`` apply Keras layers to symbolic inputs; the training mode comes from the model call,
which ``train_step(model, optimizer, images, labels)`` and ``predict(model, images)`` choose.

``api="nn"`` (Part 2): ``fully_connected(prev_layer, num_units, is_training)`` and
``conv_layer(prev_layer, layer_depth, is_training)`` create their variables with
:func:`bnlab.nn.get_variable` and run inside a :class:`bnlab.nn.Network`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from bnlab.reference import batch_norm_formula

import bnlab
from bnlab.nn import Network

tf = bnlab.tf
keras = tf.keras

MIN_MOMENTUM = 0.5
DENSE_BATCH, DENSE_FEATURES, DENSE_UNITS = 16, 6, 5
CONV_BATCH, CONV_SIZE, CONV_CHANNELS = 8, 6, 3
CONV_DEPTHS = (2, 3)  # 8 feature maps with stride 1, 12 with stride 2
NN_EPSILON = 1e-3
ATOL = RTOL = 2e-3

__all__ = ["check_structure", "check_population_statistics", "check_training_output",
           "check_inference_output", "check_train_step", "check_predict", "MIN_MOMENTUM"]


# --------------------------------------------------------------------------------------------
# numerical helpers

def _batches(kind: str, steps: int, seed: int, batch: int | None = None):
    """Input batches with a per-feature offset and scale, so the statistics are distinctive."""
    rng = np.random.default_rng(seed)
    if kind == "dense":
        shape = (batch or DENSE_BATCH, DENSE_FEATURES)
    else:
        shape = (batch or CONV_BATCH, CONV_SIZE, CONV_SIZE, CONV_CHANNELS)
    offset = rng.uniform(-1.0, 2.0, size=shape[-1])
    scale = rng.uniform(1.0, 3.0, size=shape[-1])
    return [(offset + scale * rng.standard_normal(shape)).astype(np.float32) for _ in range(steps)]


def _axes(kind: str):
    return (0,) if kind == "dense" else (0, 1, 2)


def _moments(z, kind):
    z = np.asarray(z, dtype=np.float64)
    return z.mean(axis=_axes(kind)), z.var(axis=_axes(kind))


def _relu(x):
    return np.maximum(x, 0.0)


def _close(a, b, atol=ATOL, rtol=RTOL) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, atol=atol, rtol=rtol))


def _np(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def _call(description: str, fn: Callable, *args, **kwargs):
    """Call student code; turn an exception into an AssertionError that says where it came from."""
    try:
        return fn(*args, **kwargs)
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - student code can raise anything
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        hint = ""
        if isinstance(exc, TypeError) and ("argument" in text or "positional" in text):
            hint = " Check the function's signature against the one given in the exercise."
        elif "shape" in text.lower() or "incompatible" in text.lower() or "dimension" in text.lower():
            hint = (" A shape error usually means the statistics were taken over the wrong axes or a variable "
                    "has the wrong shape (one entry per unit, or per feature map for a conv layer).")
        raise AssertionError(f"{description} raised {type(exc).__name__}: {text[:300]}.{hint}") from None


def _infer_momentum(before, after, batch_value):
    """Solve ``after = m * before + (1 - m) * batch`` for m, from the entry that says most."""
    before, after, batch_value = (np.asarray(v, np.float64).ravel() for v in (before, after, batch_value))
    if before.shape != batch_value.shape:
        return None
    gap = batch_value - before
    if not np.any(np.abs(gap) > 1e-3):
        return None
    i = int(np.argmax(np.abs(gap)))
    return float(1.0 - (after[i] - before[i]) / gap[i])


# --------------------------------------------------------------------------------------------
# probes: one interface over a Keras layer function and a tf.nn layer function

class _Probe:
    """A student's layer built on small inputs, with access to its statistics and parameters."""

    kind: str
    where: str

    def call(self, x, training: bool) -> np.ndarray:
        raise NotImplementedError

    def statistics(self):
        """(population mean, population variance) as arrays."""
        raise NotImplementedError

    def normalizer_inputs(self, x) -> dict:
        """``{description: z}``: the tensors that batch normalization may be applied to."""
        raise NotImplementedError

    def gamma_beta_epsilon(self):
        raise NotImplementedError

    def randomize_scale_and_shift(self, seed: int):
        """Give gamma and beta values other than 1 and 0, so the checks see whether they are used."""
        raise NotImplementedError


class _KerasProbe(_Probe):
    def __init__(self, layer_fn, kind, arg):
        self.kind = kind
        name = "fully_connected" if kind == "dense" else "conv_layer"
        self.where = f"{name}(prev_layer, {arg})"
        shape = (DENSE_FEATURES,) if kind == "dense" else (CONV_SIZE, CONV_SIZE, CONV_CHANNELS)
        inputs = keras.Input(shape)
        outputs = _call(f"{name}(keras.Input({shape}), {arg})", layer_fn, inputs, arg)
        if not isinstance(outputs, keras.KerasTensor):
            raise AssertionError(
                f"{self.where} must return the output of Keras layers applied to prev_layer (a symbolic Keras "
                f"tensor); it returned {type(outputs).__name__}.")
        self.model = keras.Model(inputs, outputs)
        norms = [layer for layer in self.model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        if not norms:
            raise AssertionError(
                f"{self.where} has no tf.keras.layers.BatchNormalization layer. Apply one to the layer's linear "
                "output (drop the bias and the activation of the Dense/Conv2D layer, normalize, then ReLU).")
        self.bn = norms[0]
        self.pre_bn = keras.Model(inputs, self.bn.input)

    def call(self, x, training):
        return _np(_call(f"the model built with {self.where}", self.model, tf.constant(x), training=training))

    def statistics(self):
        return _np(self.bn.moving_mean), _np(self.bn.moving_variance)

    def normalizer_inputs(self, x):
        return {"the input of BatchNormalization": _np(self.pre_bn(tf.constant(x), training=False))}

    def gamma_beta_epsilon(self):
        gamma = _np(self.bn.gamma) if self.bn.gamma is not None else 1.0
        beta = _np(self.bn.beta) if self.bn.beta is not None else 0.0
        return gamma, beta, float(self.bn.epsilon)

    def randomize_scale_and_shift(self, seed):
        rng = np.random.default_rng(seed)
        for var, low, high in ((self.bn.gamma, 0.5, 2.0), (self.bn.beta, -1.0, 1.0)):
            if var is not None:
                var.assign(rng.uniform(low, high, size=var.shape).astype(np.float32))


def _role(variable) -> str:
    name = variable.name.split(":")[0].split("/")[-1].lower()
    for role, keys in (("pop_mean", ("mean",)), ("pop_variance", ("var",)), ("gamma", ("gamma", "scale")),
                       ("beta", ("beta", "offset", "shift"))):
        if any(key in name for key in keys):
            return role
    return ""


class _NNProbe(_Probe):
    def __init__(self, layer_fn, kind, arg, first_input):
        self.kind = kind
        self.arg = arg
        name = "fully_connected" if kind == "dense" else "conv_layer"
        self.where = f"{name}(prev_layer, {arg}, is_training)"
        self.network = Network(lambda x, is_training: layer_fn(x, arg, is_training), name=f"probe_{name}")
        # the first pass creates the variables; inference mode, so no statistics should move
        self.call(first_input, training=False)
        variables = list(self.network.variables)
        kernels = [v for v in variables if v.trainable and len(v.shape) == (2 if kind == "dense" else 4)]
        if len(kernels) != 1:
            raise AssertionError(
                f"{self.where} should create exactly one trainable weight {'matrix' if kind == 'dense' else 'kernel'} "
                f"with get_variable; found {len(kernels)}.")
        self.kernel = kernels[0]
        by_role = {}
        for v in variables:
            if len(v.shape) == 1 and _role(v):
                by_role.setdefault(_role(v), v)
        rank1 = [v for v in variables if len(v.shape) == 1]
        if "pop_mean" not in by_role or "pop_variance" not in by_role:  # fall back on initial values
            untrainable = [v for v in rank1 if not v.trainable]
            for v in untrainable:
                if np.allclose(_np(v), 0) and "pop_mean" not in by_role:
                    by_role["pop_mean"] = v
                elif np.allclose(_np(v), 1) and "pop_variance" not in by_role:
                    by_role["pop_variance"] = v
        missing = [r for r in ("gamma", "beta", "pop_mean", "pop_variance") if r not in by_role]
        if missing:
            raise AssertionError(
                f"{self.where}: could not find the variable(s) {', '.join(missing)}. Create them with "
                "get_variable('gamma', ...), get_variable('beta', ...), get_variable('pop_mean', ..., trainable=False) "
                "and get_variable('pop_variance', ..., trainable=False).")
        self.vars = by_role
        known = {id(v) for v in by_role.values()} | {id(self.kernel)}
        biases = [v for v in rank1 if id(v) not in known and v.trainable]
        self.bias = biases[0] if biases else None

    def call(self, x, training):
        return _np(_call(f"{self.where} with is_training={training}", self.network, tf.constant(x), training))

    def statistics(self):
        return _np(self.vars["pop_mean"]), _np(self.vars["pop_variance"])

    def normalizer_inputs(self, x):
        x = tf.constant(x)
        if self.kind == "dense":
            linear = tf.matmul(x, self.kernel)
        else:
            stride = 2 if self.arg % 3 == 0 else 1
            linear = tf.nn.conv2d(x, self.kernel, stride, "SAME")
        if self.bias is not None:
            linear = linear + self.bias
        linear = _np(linear)
        return {"the linear output": linear, "the linear output after ReLU": _relu(linear)}

    def gamma_beta_epsilon(self):
        return _np(self.vars["gamma"]), _np(self.vars["beta"]), NN_EPSILON

    def randomize_scale_and_shift(self, seed):
        rng = np.random.default_rng(seed)
        for role, low, high in (("gamma", 0.5, 2.0), ("beta", -1.0, 1.0)):
            var = self.vars[role]
            var.assign(rng.uniform(low, high, size=var.shape).astype(np.float32))


def _layer_arg(kind: str, arg):
    if arg is not None:
        return arg
    return DENSE_UNITS if kind == "dense" else CONV_DEPTHS[0]



def _probe(layer_fn, kind, api, arg=None, seed=0) -> _Probe:
    if kind not in ("dense", "conv"):
        raise ValueError("kind must be 'dense' or 'conv'")
    if not callable(layer_fn):
        raise AssertionError(f"expected a function, got {type(layer_fn).__name__}")
    keras.utils.set_random_seed(seed)
    arg = _layer_arg(kind, arg)
    if api == "keras":
        return _KerasProbe(layer_fn, kind, arg)
    if api == "nn":
        return _NNProbe(layer_fn, kind, arg, _batches(kind, 1, seed + 1000)[0])
    raise ValueError("api must be 'keras' or 'nn'")


def _units(kind, arg):
    arg = _layer_arg(kind, arg)
    return arg if kind == "dense" else arg * 4


# --------------------------------------------------------------------------------------------
# the checks

def check_structure(layer_fn, kind: str, api: str, arg=None) -> None:
    """Batch normalization is there, with one statistic per unit (dense) or feature map (conv),
    gamma and beta trainable, population statistics not trainable, starting at 0 and 1."""
    probe = _probe(layer_fn, kind, api, arg)
    units = _units(kind, arg)
    what = "unit" if kind == "dense" else "feature map (output channel)"
    mean, var = probe.statistics()
    if mean.shape != (units,) or var.shape != (units,):
        raise AssertionError(
            f"{probe.where}: the population mean and variance should have one entry per {what}, shape ({units},); "
            f"found {mean.shape} and {var.shape}. " + (
                "Normalize over the batch and both spatial axes (axes 0, 1, 2): statistics per feature map."
                if kind == "conv" else "Normalize over the batch axis (axis 0)."))
    if not (np.allclose(mean, 0) and np.allclose(var, 1)):
        raise AssertionError(f"{probe.where}: before any training the population mean should be zeros and the "
                             f"variance ones; found {np.round(mean, 3)} and {np.round(var, 3)}.")
    if api == "nn":
        flags = {role: probe.vars[role].trainable for role in ("gamma", "beta", "pop_mean", "pop_variance")}
        if not (flags["gamma"] and flags["beta"]):
            raise AssertionError(f"{probe.where}: gamma and beta must be trainable (trainable=True); found {flags}.")
        if flags["pop_mean"] or flags["pop_variance"]:
            raise AssertionError(
                f"{probe.where}: pop_mean and pop_variance must not be trainable (trainable=False): they are "
                "moving averages, and the optimizer must not change them with gradients.")
        for role in ("gamma", "beta"):
            if probe.vars[role].shape != (units,):
                raise AssertionError(f"{probe.where}: {role} should have shape ({units},); found {probe.vars[role].shape}.")
        gamma, beta, _ = probe.gamma_beta_epsilon()
        if not (np.allclose(gamma, 1) and np.allclose(beta, 0)):
            raise AssertionError(f"{probe.where}: gamma should start at ones and beta at zeros.")
    else:
        trainable = {id(v) for v in probe.bn.trainable_weights}
        for v in (probe.bn.moving_mean, probe.bn.moving_variance):
            if id(v) in trainable:
                raise AssertionError(f"{probe.where}: the moving statistics must not be trainable.")
    x = _batches(kind, 1, 7)[0]
    out = probe.call(x, training=False)
    if kind == "dense":
        expected = (len(x), units)
    else:
        size = CONV_SIZE // 2 if _layer_arg(kind, arg) % 3 == 0 else CONV_SIZE
        expected = (len(x), size, size, units)
    if out.shape != expected:
        raise AssertionError(f"{probe.where}: output shape {out.shape}, expected {expected}. "
                             "Keep the layer's size, stride and 'same' padding as in the network without batch normalization.")


def _train_and_record(probe: _Probe, steps: int, seed: int):
    inputs = _batches(probe.kind, steps, seed)
    means, variances = [], []
    mean, var = probe.statistics()
    means.append(mean.copy()); variances.append(var.copy())
    for x in inputs:
        probe.call(x, training=True)
        mean, var = probe.statistics()
        means.append(mean.copy()); variances.append(var.copy())
    return inputs, means, variances


def check_population_statistics(layer_fn, kind: str, api: str, arg=None, steps: int = 4, seed: int = 0) -> dict:
    """After ``steps`` training-mode calls the population statistics are the moving average of the
    batch statistics (mean and variance over the batch, per unit or feature map).
    Returns what it found: ``{"placement": ..., "momentum": ...}``."""
    probe = _probe(layer_fn, kind, api, arg, seed)
    inputs, means, variances = _train_and_record(probe, steps, seed)
    if all(np.allclose(m, means[0]) for m in means) and all(np.allclose(v, variances[0]) for v in variances):
        extra = (" In Keras that happens when the model runs with training=True." if api == "keras" else
                 " Assign the new values to pop_mean and pop_variance (variable.assign(...)) when is_training is true.")
        raise AssertionError(
            f"{probe.where}: the population mean and variance never changed during {steps} training steps. In training "
            f"mode update them from the batch statistics: pop = pop * decay + batch * (1 - decay).{extra}")
    findings = []
    candidates = [probe.normalizer_inputs(x) for x in inputs]  # {placement: z} for every training batch
    for name in candidates[0]:
        stats = [_moments(per_batch[name], probe.kind) for per_batch in candidates]
        if stats[0][0].shape != means[0].shape:
            findings.append(f"expected one statistic per {'unit' if kind == 'dense' else 'feature map'}, "
                            f"shape {stats[0][0].shape}, found {means[0].shape}")
            continue
        momentum = _infer_momentum(means[0], means[1], stats[0][0])
        if momentum is None:
            continue
        mean, var = means[0].astype(np.float64), variances[0].astype(np.float64)
        step_ok = True
        for step, (batch_mean, batch_var) in enumerate(stats, start=1):
            mean = momentum * mean + (1 - momentum) * batch_mean
            var = momentum * var + (1 - momentum) * batch_var
            if not (_close(mean, means[step], atol=1e-3) and _close(var, variances[step], atol=1e-3)):
                findings.append(
                    f"normalizing {name} with decay {momentum:.3f}, after step {step} the mean should be "
                    f"{np.round(mean, 3)} and the variance {np.round(var, 3)}; found {np.round(means[step], 3)} and "
                    f"{np.round(variances[step], 3)}")
                step_ok = False
                break
        if step_ok:
            if momentum < MIN_MOMENTUM:
                raise AssertionError(
                    f"{probe.where}: the population statistics are a moving average with decay {momentum:.3f}, so each "
                    "batch counts more than the whole history. The decay is applied the wrong way round: "
                    "pop = pop * decay + batch * (1 - decay), with the decay close to 1 (the exercise uses 0.99).")
            if momentum >= 1.0:
                continue
            return {"placement": name, "momentum": momentum}
    raise AssertionError(
        f"{probe.where}: the population statistics are not a moving average of the batch statistics: "
        + "; ".join(findings[:2]) + ". Take the mean and variance over the batch (axis 0 for a dense layer; axes 0, 1, "
        "2 for a conv layer: one value per feature map), store the variance itself (not the standard deviation), and "
        "update both with pop = pop * decay + batch * (1 - decay).")


def _expect_normalized(probe: _Probe, x, output, mean_var_of: Callable, mode: str):
    """``output`` must be ReLU(BN(z)) or BN(z) for one of the probe's candidate inputs z."""
    gamma, beta, epsilon = probe.gamma_beta_epsilon()
    best = None
    for name, z in probe.normalizer_inputs(x).items():
        mean, var = mean_var_of(z)
        for label, value in (("gamma", gamma), ("beta", beta), ("the mean", mean), ("the variance", var)):
            if np.ndim(value) and np.shape(value) != (z.shape[-1],):
                raise AssertionError(
                    f"{probe.where}: {label} has shape {np.shape(value)}, but there are {z.shape[-1]} "
                    f"{'units' if probe.kind == 'dense' else 'feature maps'}: batch normalization needs one value per "
                    f"{'unit (axis 0)' if probe.kind == 'dense' else 'feature map (axes 0, 1, 2)'}.")
        normalized = batch_norm_formula(z, gamma, beta, mean, var, epsilon)
        for expected in (_relu(normalized), normalized):
            if _close(output, expected):
                return
            if expected.shape == output.shape:
                gap = float(np.max(np.abs(output - expected)))
                best = gap if best is None else min(best, gap)
        without_sqrt = (np.asarray(z, np.float64) - mean) / (var + epsilon) * gamma + beta
        if _close(output, _relu(without_sqrt)) or _close(output, without_sqrt):
            raise AssertionError(
                f"{probe.where}: in {mode} mode the output divides by the variance where the standard deviation "
                "belongs: normalize with (z - mean) / sqrt(variance + epsilon). (tf.nn.batch_normalization takes the "
                "variance and takes its square root itself.)")
    if best is None:
        raise AssertionError(f"{probe.where}: output shape {output.shape} does not match the layer's linear output.")
    stats = ("the batch's own mean and variance" if mode == "training" else
             "the population mean and variance (pop_mean, pop_variance), not the batch's")
    raise AssertionError(
        f"{probe.where}: in {mode} mode the output must be normalized with {stats}: "
        f"gamma * (z - mean) / sqrt(variance + epsilon) + beta, then ReLU if it comes after. "
        f"Largest difference from that: {best:.4g}.")


def check_training_output(layer_fn, kind: str, api: str, arg=None, seed: int = 0) -> None:
    """In training mode the output is normalized with the batch's own statistics, scaled by gamma
    and shifted by beta."""
    probe = _probe(layer_fn, kind, api, arg, seed)
    probe.randomize_scale_and_shift(seed)
    x = _batches(kind, 1, seed + 11)[0]
    out = probe.call(x, training=True)
    _expect_normalized(probe, x, out, lambda z: _moments(z, kind), "training")


def check_inference_output(layer_fn, kind: str, api: str, arg=None, seed: int = 0) -> None:
    """In inference mode the output is normalized with the population statistics (so a batch of one
    gives the same output as that sample inside a bigger batch) and the statistics do not move."""
    probe = _probe(layer_fn, kind, api, arg, seed)
    _train_and_record(probe, 3, seed)
    probe.randomize_scale_and_shift(seed)
    before = [s.copy() for s in probe.statistics()]
    x = _batches(kind, 1, seed + 23)[0]
    out = probe.call(x, training=False)
    after = probe.statistics()
    if not (np.allclose(before[0], after[0]) and np.allclose(before[1], after[1])):
        raise AssertionError(
            f"{probe.where}: the population statistics changed in inference mode. Update pop_mean and pop_variance "
            "only when training; at inference just use them.")
    single = np.concatenate([probe.call(x[i:i + 1], training=False) for i in range(2)])
    if not _close(single, out[:2]):
        raise AssertionError(
            f"{probe.where}: in inference mode a batch of one gives a different output than the same sample inside a "
            "bigger batch, so inference still depends on the batch: use the population statistics, not the batch "
            "statistics, when not training.")
    mean, var = probe.statistics()
    _expect_normalized(probe, x, out, lambda z: (mean.astype(np.float64), var.astype(np.float64)), "inference")


# --------------------------------------------------------------------------------------------
# Part 1: the training step and the prediction function

def _small_keras_model(fully_connected, seed):
    keras.utils.set_random_seed(seed)
    probe = _KerasProbe(fully_connected, "dense", DENSE_UNITS)
    logits = keras.layers.Dense(3)(probe.model.output)
    probe.model = keras.Model(probe.model.input, logits)
    return probe


def check_train_step(train_step, fully_connected, seed: int = 0) -> None:
    """``train_step`` runs the model in training mode: the population statistics take one
    moving-average step from the batch statistics, and the weights change."""
    probe = _small_keras_model(fully_connected, seed)
    optimizer = keras.optimizers.Adam(0.01)
    x = _batches("dense", 1, seed + 5)[0]
    y = np.eye(3, dtype=np.float32)[np.arange(len(x)) % 3]
    z = probe.normalizer_inputs(x)["the input of BatchNormalization"]
    batch_mean, batch_var = _moments(z, "dense")
    mean0, var0 = (s.astype(np.float64) for s in probe.statistics())
    weights0 = [_np(w).copy() for w in probe.model.trainable_weights]
    result = _call("train_step(model, optimizer, images, labels)", train_step, probe.model, optimizer,
                   tf.constant(x), tf.constant(y))
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise AssertionError("train_step must return (loss, logits), as the given version does.")
    mean1, var1 = probe.statistics()
    if np.allclose(mean1, mean0) and np.allclose(var1, var0):
        raise AssertionError(
            "train_step did not update the population statistics: the model ran in inference mode. Call it with "
            "training=True inside train_step (the TF2 counterpart of feeding is_training=True and running the "
            "update ops in TF1).")
    m = float(probe.bn.momentum)
    if not (_close(mean1, m * mean0 + (1 - m) * batch_mean, atol=1e-3)
            and _close(var1, m * var0 + (1 - m) * batch_var, atol=1e-3)):
        raise AssertionError(
            "train_step changed the population statistics, but not by one moving-average step from this batch's "
            "statistics: call the model exactly once, with training=True, per training step.")
    if all(np.allclose(a, _np(b)) for a, b in zip(weights0, probe.model.trainable_weights)):
        raise AssertionError("train_step did not change the trainable weights: apply the gradients with the optimizer.")


def check_predict(predict, fully_connected, seed: int = 0) -> None:
    """``predict`` runs the model in inference mode: it uses the population statistics, does not
    change them, and scores a batch of one like the same sample inside a bigger batch."""
    probe = _small_keras_model(fully_connected, seed)
    for x in _batches("dense", 3, seed + 3):
        probe.model(tf.constant(x), training=True)
    before = [s.copy() for s in probe.statistics()]
    x = _batches("dense", 1, seed + 9)[0]
    logits = _np(_call("predict(model, images)", predict, probe.model, tf.constant(x)))
    after = probe.statistics()
    if not (np.allclose(before[0], after[0]) and np.allclose(before[1], after[1])):
        raise AssertionError("predict changed the population statistics: it ran the model in training mode. "
                             "Call it with training=False.")
    expected = _np(probe.model(tf.constant(x), training=False))
    if not _close(logits, expected):
        batch_stats = _np(probe.model(tf.constant(x), training=True))
        if _close(logits, batch_stats):
            raise AssertionError("predict normalizes with the batch statistics: call the model with training=False "
                                 "so that inference uses the population statistics.")
        raise AssertionError("predict(model, images) should return the model's logits in inference mode "
                             "(model(images, training=False)).")
    single = _np(_call("predict(model, one_image)", predict, probe.model, tf.constant(x[:1])))
    if not _close(single, logits[:1]):
        raise AssertionError("predict gives a different answer for a batch of one than for the same sample in a batch.")
