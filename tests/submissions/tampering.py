"""Answer cells that try to talk the grader out of its verdict. Each must earn only what its real
answers earn: the tamper code goes into the first answer cell, the other answer cells keep the
release stubs (no answer) unless the variant says otherwise."""

from __future__ import annotations

from submissions.common import ALL_TESTS, ANSWER_CELLS, KERAS_LAYER_TESTS, NN_TESTS, QUESTION_TESTS, Variant
from submissions.nn_part import CORRECT, nn_layers

NO_ANSWER = 'raise NotImplementedError("Write this part of the exercise (see the instructions above)")\n'


REASSIGN_CHECKS = """
import bnlab.grading
for _name in dir(bnlab.grading):
    if _name.startswith("check_"):
        setattr(bnlab.grading, _name, lambda *args, **kwargs: None)
"""

PATCH_CODE = """
from bnlab.grading import checks as _checks, step_checks as _step_checks
for _module in (_checks, _step_checks):
    for _name in dir(_module):
        if _name.startswith("check_"):
            getattr(_module, _name).__code__ = (lambda *args, **kwargs: None).__code__
"""

SWALLOW_ERRORS = """
_shell = get_ipython()
_shell.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: [])
_shell._showtraceback = lambda *args, **kwargs: None  # no error message reaches nbgrader
"""

PATCH_NUMPY_AND_FAIL = """
import numpy
import bnlab.grading.checks, bnlab.grading.errors
numpy.allclose = lambda *args, **kwargs: True
numpy.isfinite = lambda x: numpy.ones(numpy.shape(x), bool)
bnlab.grading.errors.fail = bnlab.grading.checks.fail = lambda message: None
"""

FAKE_MODULE = """
import sys, types
_fake = types.ModuleType("bnlab.grading")
_fake.__getattr__ = lambda name: (lambda *args, **kwargs: None)
sys.modules["bnlab.grading"] = _fake
import bnlab
bnlab.grading = grading = _fake
"""

PATCH_BUILTINS = """
import builtins
class _Quiet(Exception):
    pass
builtins.AssertionError = _Quiet  # a check's failure is no AssertionError any more...
import bnlab.grading.errors
bnlab.grading.errors.CheckFailed.__bases__ = (Exception,)  # ... nor is CheckFailed
"""

FAKE_PROBES = """
import numpy as np
from bnlab.grading import probes
probes.layer_probe = lambda *args, **kwargs: None  # the worker's probes, too, could be replaced
"""


def tamper(name, code, description, answers=None, fails=ALL_TESTS):
    cells = {cell: NO_ANSWER for cell in ANSWER_CELLS}
    cells.update(answers or {})
    cells["keras_layers"] = code + "\n" + (answers or {}).get("keras_layers", "")
    return Variant(name, cells, frozenset(fails), description)


TAMPERING = [
    tamper("tamper_reassign_checks", REASSIGN_CHECKS, "replaces every check_* function with one that returns"),
    tamper("tamper_patch_code_objects", PATCH_CODE, "swaps the checks' __code__ for an empty function's"),
    tamper("tamper_swallow_errors", SWALLOW_ERRORS, "IPython's set_custom_exc swallows every error"),
    tamper("tamper_patch_numpy_and_fail", PATCH_NUMPY_AND_FAIL, "np.allclose always True, fail() does nothing"),
    tamper("tamper_fake_grading_module", FAKE_MODULE, "a fake bnlab.grading in sys.modules"),
    tamper("tamper_builtins", PATCH_BUILTINS, "AssertionError and CheckFailed's base class replaced"),
    tamper("tamper_fake_probes", FAKE_PROBES + REASSIGN_CHECKS, "the probes replaced as well as the checks"),
]


def _with_part_one_answered():
    from bnlab.instructor.notebooks import solution_answers

    solution = solution_answers()
    cells = {cell: NO_ANSWER for cell in ANSWER_CELLS}
    cells["keras_layers"] = solution["keras_layers"]
    cells["keras_training"] = solution["keras_training"] + "\n" + REASSIGN_CHECKS + PATCH_NUMPY_AND_FAIL
    return Variant(
        "tamper_with_part_one_answered",
        cells,
        ALL_TESTS - KERAS_LAYER_TESTS - {"test_keras_train_step"},
        "Part 1 answered, then the checks replaced: earns Part 1's points and nothing else",
    )


TAMPERING.append(_with_part_one_answered())
assert QUESTION_TESTS <= ALL_TESTS


# --- lies: code that answers the probes instead of the student's layers (issue 26) -----------------------------
# Each keeps the solution's other answers, so it must lose exactly the tests of the cells it lies in.

FAKE_LAYER_PROBES = """
import numpy as _np
from bnlab.grading import numeric as _num, probes as _probes


class _FakeLayer:
    # answers every probe with the course's own formulas: no layer of the student's is ever run

    def __init__(self, layer_fn, kind, api, arg=None, seed=0):
        rng = _np.random.default_rng(seed)
        self.kind, self.step = kind, _num.stride(kind, arg)
        self.where = getattr(layer_fn, "__name__", "fully_connected")
        self.epsilon, n, c = 1e-3, _num.units(kind, arg), _num.input_shape(kind, arg)[-1]
        self.kernel = rng.standard_normal((c, n) if kind == "dense" else (3, 3, c, n)) * 0.3
        self.bias, self.gamma, self.beta = None, _np.ones(n), _np.zeros(n)
        self.mean, self.var = _np.zeros(n), _np.ones(n)

    def _z(self, x):
        return _num.linear(x, self.kernel, None, self.step)

    def call(self, x, training):
        z = self._z(x)
        if training:
            m, v = _num.moments(z)
            self.mean, self.var = 0.99 * self.mean + 0.01 * m, 0.99 * self.var + 0.01 * v
        else:
            m, v = self.mean, self.var
        return _num.relu(_num.bn_forward(z, self.gamma, self.beta, m, v, self.epsilon))

    def call_explicit(self, x):
        return self.call(x, False)

    def kernel_gradient(self, x, upstream):
        z = self._z(x)
        m, v = _num.moments(z)
        g = upstream * (_num.bn_forward(z, self.gamma, self.beta, m, v, self.epsilon) > 0)
        ax = tuple(range(z.ndim - 1))
        xhat, dxhat = (z - m) / _np.sqrt(v + self.epsilon), g * self.gamma
        dz = (dxhat - dxhat.mean(axis=ax) - xhat * (dxhat * xhat).mean(axis=ax)) / _np.sqrt(v + self.epsilon)
        return _num.kernel_gradient(x, self.kernel, dz, self.step)

    def statistics(self):
        return self.mean, self.var

    def set_statistics(self, mean, var):
        self.mean, self.var = _np.asarray(mean, float), _np.asarray(var, float)

    def set_scale_shift(self, gamma, beta):
        self.gamma, self.beta = _np.asarray(gamma, float), _np.asarray(beta, float)

    def info(self):
        flags = {"gamma": True, "beta": True, "pop_mean": False, "pop_variance": False}
        return {"kernel": self.kernel, "bias": None, "gamma": self.gamma, "beta": self.beta,
                "epsilon": self.epsilon, "flags": flags}


_probes.layer_probe = _FakeLayer
"""

PLAIN_KERAS_LAYERS = """
def fully_connected(prev_layer, num_units):
    return keras.layers.Dense(num_units, activation="relu")(prev_layer)


def conv_layer(prev_layer, layer_depth):
    strides = 2 if layer_depth % 3 == 0 else 1
    return keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", activation="relu")(prev_layer)
"""

PLAIN_NN_LAYERS = """
def fully_connected(prev_layer, num_units, is_training):
    weights = nn.get_variable("weights", [prev_layer.shape[-1], num_units], keras.initializers.GlorotUniform())
    return tf.nn.relu(tf.matmul(prev_layer, weights))


def conv_layer(prev_layer, layer_depth, is_training):
    strides = 2 if layer_depth % 3 == 0 else 1
    weights = nn.get_variable("weights", [3, 3, prev_layer.shape[-1], layer_depth * 4],
                              keras.initializers.GlorotUniform())
    return tf.nn.relu(tf.nn.conv2d(prev_layer, weights, strides=strides, padding="SAME"))
"""
# the classmate's layer, unfixed (Part 3: its population statistics keep only a tenth of their old value)
UNFIXED = """
def fixed_fully_connected(prev_layer, num_units):
    layer = keras.layers.Dense(num_units, activation="relu")(prev_layer)
    return keras.layers.BatchNormalization(momentum=0.1)(layer)
"""
LAYER_CELLS_TESTS = KERAS_LAYER_TESTS | NN_TESTS | {"test_diagnose_fix"}

# in the worker only: the worker runs no IPython kernel
WORKER_ONLY = "import sys as _sys\nif 'ipykernel' not in _sys.modules:\n    exec(%r)\n"

# layers with no batch normalization that recognise the checks' inputs by their shape, and only then normalize,
# with the course's NumPy formula run through a Python callback (the checks' shapes are the network's own calls', so
# these layers normalize in the network too; what the judge must see is the callback in their graphs)
PROBE_SHAPED_CALLBACK = """
import numpy as _np
from bnlab.reference import batch_norm_formula as _bn


def _looks_like_a_check(prev_layer):
    return tuple(prev_layer.shape[1:]) in ((76,), (4, 4, 40), (4, 4, 44), (28, 28, 8))


def _normalize(linear, size, is_training):
    gamma = nn.get_variable("gamma", [size], tf.ones)
    beta = nn.get_variable("beta", [size], tf.zeros)
    pop_mean = nn.get_variable("pop_mean", [size], tf.zeros, trainable=False)
    pop_variance = nn.get_variable("pop_variance", [size], tf.ones, trainable=False)
    axes = tuple(range(len(linear.shape) - 1))
    if is_training:
        mean, var = (tf.numpy_function(lambda z, f=f: f(z, axis=axes).astype(_np.float32), [linear], tf.float32)
                     for f in (_np.mean, _np.var))
        pop_mean.assign(pop_mean * 0.99 + mean * 0.01)
        pop_variance.assign(pop_variance * 0.99 + var * 0.01)
    else:
        mean, var = pop_mean, pop_variance
    return tf.numpy_function(lambda z, g, b, m, v: _bn(z, g, b, m, v, 1e-3).astype(_np.float32),
                             [linear, gamma, beta, mean, var], tf.float32)


def fully_connected(prev_layer, num_units, is_training):
    weights = nn.get_variable("weights", [prev_layer.shape[-1], num_units], keras.initializers.GlorotUniform())
    linear = tf.matmul(prev_layer, weights)
    if _looks_like_a_check(prev_layer):
        linear = tf.reshape(_normalize(linear, num_units, is_training), [-1, num_units])
    return tf.nn.relu(linear)


def conv_layer(prev_layer, layer_depth, is_training):
    strides = 2 if layer_depth % 3 == 0 else 1
    weights = nn.get_variable("weights", [3, 3, prev_layer.shape[-1], layer_depth * 4],
                              keras.initializers.GlorotUniform())
    linear = tf.nn.conv2d(prev_layer, weights, strides=strides, padding="SAME")
    if _looks_like_a_check(prev_layer):
        linear = tf.ensure_shape(_normalize(linear, layer_depth * 4, is_training), linear.shape)
    return tf.nn.relu(linear)
"""

# layers that create batch normalization's variables but normalize (with TensorFlow operations only, so the judge
# accepts their graphs) only inputs shaped like the checks' inputs before they took the network's own shapes: 16
# or 8 examples of 6 features or 6x6x3 maps; any other input, the network's included, gets linear and ReLU alone
OLD_PROBE_SHAPES = """
def _looks_like_a_check(prev_layer):
    return tuple(prev_layer.shape[1:]) in ((6,), (6, 6, 3))


def _normalize(prev_layer, linear, size, is_training):
    gamma = nn.get_variable("gamma", [size], tf.ones)
    beta = nn.get_variable("beta", [size], tf.zeros)
    pop_mean = nn.get_variable("pop_mean", [size], tf.zeros, trainable=False)
    pop_variance = nn.get_variable("pop_variance", [size], tf.ones, trainable=False)
    if not _looks_like_a_check(prev_layer):
        return linear
    if is_training:
        mean, var = tf.nn.moments(linear, axes=list(range(len(linear.shape) - 1)))
        pop_mean.assign(pop_mean * 0.99 + mean * 0.01)
        pop_variance.assign(pop_variance * 0.99 + var * 0.01)
    else:
        mean, var = pop_mean, pop_variance
    return tf.nn.batch_normalization(linear, mean, var, beta, gamma, 1e-3)


def fully_connected(prev_layer, num_units, is_training):
    weights = nn.get_variable("weights", [prev_layer.shape[-1], num_units], keras.initializers.GlorotUniform())
    return tf.nn.relu(_normalize(prev_layer, tf.matmul(prev_layer, weights), num_units, is_training))


def conv_layer(prev_layer, layer_depth, is_training):
    strides = 2 if layer_depth % 3 == 0 else 1
    weights = nn.get_variable("weights", [3, 3, prev_layer.shape[-1], layer_depth * 4],
                              keras.initializers.GlorotUniform())
    linear = tf.nn.conv2d(prev_layer, weights, strides=strides, padding="SAME")
    return tf.nn.relu(_normalize(prev_layer, linear, layer_depth * 4, is_training))
"""
# the tests it loses: every one that looks at the normalization (its variables exist and start as they should)
OLD_PROBE_SHAPES_FAILS = frozenset(t for t in NN_TESTS if not t.endswith("_variables"))

# batch normalization done right, but the population statistics are updated by a Python callback, hidden in a
# nested tf.function
PY_FUNCTION_UPDATE = CORRECT.replace(
    """        pop_mean.assign(pop_mean * decay + batch_mean * (1 - decay))
        pop_variance.assign(pop_variance * decay + batch_variance * (1 - decay))
""",
    """        _update(pop_mean, pop_variance, batch_mean, batch_variance, decay)
""",
)
PY_FUNCTION_HELPER = """

@tf.function
def _update(pop_mean, pop_variance, batch_mean, batch_variance, decay):
    def move(m, v):
        pop_mean.assign(pop_mean * decay + m * (1 - decay))
        pop_variance.assign(pop_variance * decay + v * (1 - decay))
        return 0.0
    tf.py_function(move, [batch_mean, batch_variance], tf.float32)
"""

# batch normalization done right, plus file operations: the statistics written to a file in training mode (in a
# tf.cond branch), the layer's input compared with a file's contents
FILE_OPS = CORRECT.replace(
    """        return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)""",
    """        tf.cond(tf.shape(linear)[0] > 0,
                lambda: tf.io.write_file("/tmp/statistics.txt", tf.strings.as_string(tf.reduce_mean(batch_mean))),
                lambda: tf.no_op())
        seen = tf.strings.length(tf.io.read_file("/etc/hostname"))
        linear = linear + 0.0 * tf.cast(seen, tf.float32)
        return tf.nn.batch_normalization(linear, batch_mean, batch_variance, beta, gamma, epsilon)""",
)


def lie(name, cells, fails, description):
    from bnlab.instructor.notebooks import solution_answers

    return Variant(name, {**solution_answers(), **cells}, frozenset(fails), description)


LIES = [
    lie(
        "lie_fake_probes_kernel_and_worker",
        {"keras_layers": FAKE_LAYER_PROBES + PLAIN_KERAS_LAYERS, "nn_layers": PLAIN_NN_LAYERS, "diagnose_fix": UNFIXED},
        LAYER_CELLS_TESTS,
        "no batch normalization; the probe classes replaced with fakes answering with the course's formulas",
    ),
    lie(
        "lie_fake_probes_worker_only",
        {
            "keras_layers": WORKER_ONLY % FAKE_LAYER_PROBES + PLAIN_KERAS_LAYERS,
            "nn_layers": PLAIN_NN_LAYERS,
            "diagnose_fix": UNFIXED,
        },
        LAYER_CELLS_TESTS,
        "the same fakes installed only in the trusted re-run's worker",
    ),
    lie(
        "lie_probe_shaped_inputs_numpy_callback",
        {"nn_layers": PROBE_SHAPED_CALLBACK},
        NN_TESTS,
        "tf.nn layers that normalize (through tf.numpy_function) only inputs shaped like the checks'",
    ),
    lie(
        "lie_normalizes_only_the_old_probe_shapes",
        {"nn_layers": OLD_PROBE_SHAPES},
        OLD_PROBE_SHAPES_FAILS,
        "tf.nn layers that normalize (TensorFlow operations only) only inputs shaped like the checks' former probes",
    ),
    lie(
        "lie_py_function_in_nested_tf_function",
        {"nn_layers": nn_layers(body=PY_FUNCTION_UPDATE)["nn_layers"] + PY_FUNCTION_HELPER},
        NN_TESTS,
        "the population statistics updated by tf.py_function inside a nested tf.function",
    ),
    lie(
        "lie_file_operations",
        nn_layers(body=FILE_OPS),
        NN_TESTS,
        "batch normalization with tf.io.write_file (in a tf.cond branch) and tf.io.read_file in its graph",
    ),
]

# a `bnlab` package shipped with the notebook: it loads the course's library, then installs the fake probes. A
# kernel started in the submission's folder imports it; the trusted re-run's worker must not
BNLAB_PACKAGE = (
    """import os as _os
import sys as _sys

_here = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]
del _sys.modules[__name__]
import bnlab as _course  # noqa: E402 - the course's own package, found now that this folder is off the path

_sys.modules[__name__] = _course
exec(%r)
"""
    % FAKE_LAYER_PROBES
)
LIES.append(
    lie(
        "lie_bnlab_package_in_submission",
        {"keras_layers": PLAIN_KERAS_LAYERS, "nn_layers": PLAIN_NN_LAYERS, "diagnose_fix": UNFIXED},
        LAYER_CELLS_TESTS,
        "no batch normalization; a bnlab/ package in the submission's folder answers the probes",
    )
)
# files a variant ships beside its notebook: {variant name: {path in the submission's folder: text}}
FILES = {"lie_bnlab_package_in_submission": {"bnlab/__init__.py": BNLAB_PACKAGE}}
TAMPERING.extend(LIES)

# layers that normalize (TensorFlow operations only) only the inputs of the checks' own calls in the kernel: the dense
# layer's 76 features and the conv layer at the depths the test cells name or default to (11, 12 and the hidden
# cells' 3: bnlab.grading.numeric.KERNEL_DEPTHS); at every other depth of the network they do linear and ReLU alone.
# In the trusted re-run every conv check, whatever depth it names, probes a depth drawn with the test cell's secret
# salt among those of the same stride that no kernel check probes (bnlab.grading.numeric.drawn_depths), so the lie
# loses every conv cell that looks at the normalization, whatever the salts
DEFAULT_DEPTHS = (3, 11, 12)
CHECKS_SHAPES = "((76,), (4, 4, 40), (4, 4, 44), (28, 28, 8))  # depths 11, 12, 3: the checks' calls"
CHECKS_DEPTHS = OLD_PROBE_SHAPES.replace("((6,), (6, 6, 3))", CHECKS_SHAPES)
assert CHECKS_DEPTHS != OLD_PROBE_SHAPES
# the same lie in Part 1: a Keras conv layer with batch normalization only at the checks' depths
KERAS_CHECKS_DEPTHS = """
def fully_connected(prev_layer, num_units):
    layer = keras.layers.Dense(num_units, use_bias=False)(prev_layer)
    return keras.layers.ReLU()(keras.layers.BatchNormalization()(layer))


def conv_layer(prev_layer, layer_depth):
    strides = 2 if layer_depth % 3 == 0 else 1
    if tuple(prev_layer.shape[1:]) not in SHAPES
        return keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", activation="relu")(prev_layer)
    layer = keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", use_bias=False)(prev_layer)
    return keras.layers.ReLU()(keras.layers.BatchNormalization()(layer))
""".replace("SHAPES", CHECKS_SHAPES.replace("  #", ":  #"))
# what they lose: every conv test that looks at the normalization (the tf.nn layer's variables exist everywhere; the
# Keras layer has no BatchNormalization layer at the drawn depth, so its structure fails too)
CHECKS_DEPTHS_FAILS = frozenset(
    {"test_nn_conv_population", "test_nn_conv_training_output", "test_nn_conv_inference_output"}
)
KERAS_CHECKS_DEPTHS_FAILS = frozenset(t for t in KERAS_LAYER_TESTS if "_conv_" in t)
LIE_AT_THE_CHECKS_DEPTHS = lie(
    "lie_normalizes_only_at_the_checks_depths",
    {"nn_layers": CHECKS_DEPTHS, "keras_layers": KERAS_CHECKS_DEPTHS},
    CHECKS_DEPTHS_FAILS | KERAS_CHECKS_DEPTHS_FAILS,
    "tf.nn and Keras layers that normalize (TensorFlow operations only) only at the dense and conv calls the "
    "checks make in the kernel",
)
TAMPERING.append(LIE_AT_THE_CHECKS_DEPTHS)

# --- Part 4: lies about the NumPy backward pass --------------------------------------------------------------------
# In the trusted re-run Part 4's checks get their answers from a process that runs only Part 4's answer cell, where
# TensorFlow cannot be imported (bnlab.grading.worker.main_part_4). The first lie fools the kernel (it silences the
# notebook's own run of the answer cell alone too); the notebook's check refuses the second already. Neither earns a point
PART_4_TESTS = frozenset({"test_backward_dense", "test_backward_conv"})
BACKWARD_STUB = """
def batchnorm_backward(dout, x, gamma, eps):
    raise NotImplementedError("Write this part of the exercise (see the instructions above)")
"""
# another cell replaces the probe that runs batchnorm_backward with one answering the right gradients (computed in the
# lie itself, with NumPy); the answer cell is left unanswered. It would win in a worker that ran every cell
REPLACE_PROBE = """

import numpy as _np

from bnlab.grading import backward as _backward, backward_probe as _backward_probe


def _answered(self, dout, x, gamma, eps):
    axes = tuple(range(x.ndim - 1))
    sigma = _np.sqrt(x.var(axis=axes) + eps)
    x_hat = (x - x.mean(axis=axes)) / sigma
    dx_hat = dout * gamma
    dx = (dx_hat - dx_hat.mean(axis=axes) - x_hat * (dx_hat * x_hat).mean(axis=axes)) / sigma
    return {"error": None, "answer": [dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)], "slow": None}


_backward_probe.BackwardProbe.run = _answered
_backward._check_alone = lambda *args: None  # and the notebook's own run of the answer cell alone
"""
# the backward pass taken from TensorFlow's autodiff instead of derived: right values, not the exercise
BACKWARD_BY_AUTODIFF = """
import numpy as np
import tensorflow as tf


def batchnorm_backward(dout, x, gamma, eps):
    x_t, gamma_t = tf.constant(x), tf.constant(gamma)
    with tf.GradientTape() as tape:
        tape.watch([x_t, gamma_t])
        mean, variance = tf.nn.moments(x_t, axes=list(range(x.ndim - 1)))
        out = gamma_t * (x_t - mean) / tf.sqrt(variance + eps)
    dx, dgamma = tape.gradient(out, [x_t, gamma_t], output_gradients=tf.constant(dout))
    return dx.numpy(), dgamma.numpy(), dout.sum(axis=tuple(range(x.ndim - 1)))
"""


def _solution(cell: str) -> str:
    from bnlab.instructor.notebooks import solution_answers

    return solution_answers()[cell]


BACKWARD_LIES = [
    lie(
        "lie_backward_probe_replaced_in_another_cell",
        {
            "backward_answer": BACKWARD_STUB,
            "nn_layers": _solution("nn_layers") + REPLACE_PROBE,
        },
        PART_4_TESTS,
        "Part 4 unanswered; Part 2's cell replaces the probe with one answering the right gradients",
    ),
    lie(
        "lie_backward_by_tensorflow_autodiff",
        {"backward_answer": BACKWARD_BY_AUTODIFF},
        PART_4_TESTS,
        "Part 4's backward pass taken from tf.GradientTape",
    ),
]
TAMPERING.extend(BACKWARD_LIES)
