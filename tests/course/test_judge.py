"""The judge of the trusted re-run (bnlab.grading.judge) on graphs exported from layers (bnlab.grading.export).

In-process here, so the mutation suite is quick to run: every probe of a check is the layer's exported graph,
loaded and run as the judge process does. Every alternative keeps full marks and every bug loses the same tests
as in the kernel; graphs holding Python callbacks or file operations are refused. (The judge in its own process,
through nbgrader: tests/instructor/test_tamper_pipeline.py and test_integrity.py.)"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from submissions import ALTERNATIVES, BUGS, TAMPERING
from test_grading import grade_in_process

import bnlab
from bnlab import grading
from bnlab.grading import export, judge, numeric, probes, wire

tf = bnlab.tf
keras = tf.keras
LAYER_CELLS = {"keras_layers", "nn_layers", "diagnose_fix"}


def _through_the_judge(layer_probe):
    def build(*args, **kwargs):
        package = export.export_layer(layer_probe(*args, **kwargs))
        return judge.JudgedLayer(wire.decode(wire.encode(package)))  # as it crosses the pipes

    return build


@pytest.fixture
def judged(monkeypatch):
    monkeypatch.setattr(probes, "layer_probe", _through_the_judge(probes.layer_probe))


def _layer_variants(pool):
    return [v for v in pool if set(v.cells) & LAYER_CELLS]


def _failed(verdicts):
    return {name for name, message in verdicts.items() if message}


def test_the_solution_passes_through_its_graphs(judged):
    assert _failed(grade_in_process({})) == set()


@pytest.mark.parametrize("variant", _layer_variants(ALTERNATIVES), ids=lambda v: v.name)
def test_alternatives_keep_full_marks_through_their_graphs(judged, variant):
    assert _failed(grade_in_process(variant.cells)) == set()


@pytest.mark.parametrize("variant", _layer_variants(BUGS), ids=lambda v: v.name)
def test_bugs_lose_the_same_tests_through_their_graphs(judged, variant):
    assert _failed(grade_in_process(variant.cells)) == set(variant.fails)


def test_a_layer_that_normalizes_only_the_old_probe_shapes_fails_through_its_graph(judged):
    """Its graph is computation only, so the judge runs it: on the network's shapes it does no normalization."""
    lie = next(v for v in TAMPERING if v.name == "lie_normalizes_only_the_old_probe_shapes")
    assert _failed(grade_in_process(lie.cells)) == set(lie.fails)


def _dense_nn(normalize):
    def fully_connected(prev_layer, num_units, is_training):
        weights = bnlab.nn.get_variable("weights", [prev_layer.shape[-1], num_units], tf.ones)
        return normalize(tf.matmul(prev_layer, weights), num_units, is_training)

    return fully_connected


def _bn(linear, size, is_training):
    gamma = bnlab.nn.get_variable("gamma", [size], tf.ones)
    beta = bnlab.nn.get_variable("beta", [size], tf.zeros)
    mean = bnlab.nn.get_variable("pop_mean", [size], tf.zeros, trainable=False)
    var = bnlab.nn.get_variable("pop_variance", [size], tf.ones, trainable=False)
    if is_training:
        m, v = tf.nn.moments(linear, [0])
        mean.assign(mean * 0.99 + m * 0.01)
        var.assign(var * 0.99 + v * 0.01)
        return tf.nn.relu(tf.nn.batch_normalization(linear, m, v, beta, gamma, 1e-3))
    return tf.nn.relu(tf.nn.batch_normalization(linear, mean, var, beta, gamma, 1e-3))


def _refusal(layer_fn):
    package = export.export_layer(probes.layer_probe(layer_fn, "dense", "nn"))
    try:
        judge.JudgedLayer(wire.decode(wire.encode(package)))
    except judge.Unjudgeable as exc:
        return str(exc)
    return None


def test_graphs_that_print_to_the_console_are_judged_but_not_those_that_write_files():
    def printing(linear, size, is_training):
        tf.print("mean", tf.reduce_mean(linear), output_stream=sys.stderr)
        return _bn(linear, size, is_training)

    def to_file(linear, size, is_training):
        tf.print("mean", tf.reduce_mean(linear), output_stream="file:///tmp/bnlab-judge-test.txt")
        return _bn(linear, size, is_training)

    assert _refusal(_dense_nn(_bn)) is None
    assert _refusal(_dense_nn(printing)) is None
    assert "PrintV2 to 'file:///tmp/bnlab-judge-test.txt'" in _refusal(_dense_nn(to_file))


@pytest.mark.parametrize(
    "callback,op",
    [
        (lambda z: tf.numpy_function(lambda a: a, [z], tf.float32), "PyFunc"),
        (lambda z: tf.py_function(lambda a: a, [z], tf.float32), "EagerPyFunc"),
        (lambda z: tf.function(lambda a: tf.numpy_function(lambda b: b, [a], tf.float32))(z), "PyFunc"),
        (lambda z: z + 0 * tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname")), tf.float32), "ReadFile"),
    ],
    ids=["numpy_function", "py_function", "numpy_function_in_nested_tf_function", "read_file"],
)
def test_graphs_with_python_callbacks_or_file_operations_are_refused(callback, op):
    def sneaky(linear, size, is_training):
        return _bn(tf.reshape(callback(linear), [-1, size]), size, is_training)

    why = _refusal(_dense_nn(sneaky))
    assert why is not None and op in why
    assert ("Python callback" in why) == ("PyFunc" in op)


def test_the_graph_runs_on_the_judges_variables():
    """Outputs come from running the graph; its assignments move the judge's own copies of the variables, which the
    judge resets as the checks ask."""
    package = export.export_layer(probes.layer_probe(_dense_nn(_bn), "dense", "nn"))
    layer = judge.JudgedLayer(wire.decode(wire.encode(package)))
    f, n = numeric.DENSE_FEATURES, numeric.DENSE_UNITS
    x = np.random.default_rng(0).uniform(0, 2, (16, f)).astype(np.float32)
    assert layer.info()["epsilon"] == pytest.approx(1e-3) and layer.info()["flags"]["pop_mean"] is False
    out = layer.call(x, True)
    z = x @ layer.info()["kernel"]
    expected = np.maximum((z - z.mean(0)) / np.sqrt(z.var(0) + 1e-3), 0)
    assert np.allclose(out, expected, atol=1e-4)
    assert np.allclose(layer.statistics()[0], 0.01 * z.mean(0), atol=1e-5)
    layer.set_statistics(np.zeros(n), np.ones(n))
    layer.set_scale_shift(2 * np.ones(n), np.ones(n))
    assert np.allclose(layer.call(x, False), np.maximum(2 * z / np.sqrt(1 + 1e-3) + 1, 0), atol=1e-4)
    grad = layer.kernel_gradient(x, np.ones((16, n), np.float32))
    assert grad.shape == (f, n) and np.all(np.isfinite(grad))


def test_a_graph_judged_again_is_registered_once_and_runs_on_fresh_variables():
    """The checks that build the same probe get the same graph: the judge registers (and TensorFlow optimizes) its
    functions once, and each check's layer still starts from the exported values of the variables. A graph it refused
    is refused again."""
    package = export.export_layer(probes.layer_probe(_dense_nn(_bn), "dense", "nn"))
    x = np.random.default_rng(1).uniform(0, 2, (64, numeric.DENSE_FEATURES)).astype(np.float32)
    first = judge.JudgedLayer(wire.decode(wire.encode(package)))
    out = first.call(x, True)
    moved = first.statistics()[0]
    again = judge.JudgedLayer(wire.decode(wire.encode(package)))
    assert again._main["train"][0] is first._main["train"][0]  # the same registered function
    assert np.array_equal(again.statistics()[0], np.zeros(numeric.DENSE_UNITS))  # its own variables, as exported
    assert np.allclose(again.call(x, True), out) and np.allclose(again.statistics()[0], moved)
    doubled = _dense_nn(lambda linear, size, is_training: _bn(2.0 * linear, size, is_training))  # another graph
    other = judge.JudgedLayer(wire.decode(wire.encode(export.export_layer(probes.layer_probe(doubled, "dense", "nn")))))
    assert other._main["train"][0] is not first._main["train"][0]

    def sneaky(linear, size, is_training):
        return _bn(tf.reshape(tf.numpy_function(lambda a: a, [linear], tf.float32), [-1, size]), size, is_training)

    assert _refusal(_dense_nn(sneaky)) == _refusal(_dense_nn(sneaky)) is not None


class _StepThroughTheJudge:
    """The checks' step probe as the trusted re-run runs it: the student's function exported, the reference model
    and the graph in the judge (in-process here)."""

    def __init__(self, seed=0):
        self.seed, self.judged = seed, judge.judged_step(seed)
        self.warm_up, self.statistics = self.judged.warm_up, self.judged.statistics

    def train_step(self, function, x, y, learning_rate):
        package = wire.decode(wire.encode(export.export_step(function, self.seed, learning_rate)))
        return self.judged.train_step(package, x, y, learning_rate)

    def predict(self, function, x):
        return self.judged.predict(wire.decode(wire.encode(export.export_step(function, self.seed))), x)


@pytest.fixture
def judged_steps(monkeypatch):
    from bnlab.grading import step_checks

    monkeypatch.setattr(step_checks, "_step_probe", lambda fn, seed: _StepThroughTheJudge(seed))


STEP_CELLS = {"keras_training"}


@pytest.mark.parametrize(
    "variant",
    [v for v in BUGS + ALTERNATIVES if set(v.cells) & STEP_CELLS],
    ids=lambda v: v.name,
)
def test_train_step_is_judged_the_same_through_its_graph(judged_steps, variant):
    expected = set(variant.fails) if variant in BUGS else set()
    assert _failed(grade_in_process(variant.cells)) == expected


def test_predict_is_judged_through_its_graph(judged_steps):
    def predict(model, images):
        return model(images, training=False)

    def predict_in_training_mode(model, images):
        return model(images, training=True)

    grading.check_predict(predict)
    with pytest.raises(AssertionError, match="changed the population statistics"):
        grading.check_predict(predict_in_training_mode)


def test_a_step_graph_with_a_python_callback_is_refused(judged_steps):
    def train_step(model, optimizer, images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = bnlab.training.loss_fn(logits, labels)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        tf.numpy_function(lambda v: v, [loss], tf.float32)
        return loss, logits

    with pytest.raises(judge.Unjudgeable, match="Python callback"):
        grading.check_train_step(train_step)
