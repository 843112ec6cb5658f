"""bnlab.nn (variables that live across forward passes) and bnlab.training (the exercise's loop)."""

from __future__ import annotations

import numpy as np
import pytest

import bnlab
from bnlab import nn, training
from bnlab.monitor import TrainingMonitor

tf = bnlab.tf
keras = tf.keras


def _layer(x, is_training):
    w = nn.get_variable("w", [x.shape[-1], 3], keras.initializers.GlorotUniform())
    count = nn.get_variable("count", [], tf.zeros, trainable=False)
    if is_training:
        count.assign_add(1.0)
    return tf.matmul(x, w)


def test_variables_are_created_once_and_reused():
    net = nn.Network(_layer)
    x = tf.ones([2, 4])
    first = net(x, True)
    second = net(x, False)
    np.testing.assert_allclose(first, second)
    assert len(net.variables) == 2
    assert [v.name.split(":")[0] for v in net.trainable_variables] == ["w"]
    assert float(net.created[1]) == 1.0


def test_first_call_inside_tf_function_creates_variables_eagerly():
    net = nn.Network(_layer)
    step = tf.function(lambda x: net(x, True))
    step(tf.ones([2, 4]))
    step(tf.ones([2, 4]))
    assert float(net.created[1]) == 2.0


def test_a_pass_that_asks_for_other_variables_is_an_error():
    calls = {"n": 0}

    def layer(x, is_training):
        calls["n"] += 1
        name = "w" if calls["n"] == 1 else "v"
        return tf.matmul(x, nn.get_variable(name, [4, 3], tf.zeros))

    net = nn.Network(layer)
    net(tf.ones([1, 4]), True)
    with pytest.raises(nn.VariableOrderError, match="same order"):
        net(tf.ones([1, 4]), True)


def test_fewer_variables_on_a_later_pass_is_an_error():
    def layer(x, is_training):
        out = tf.matmul(x, nn.get_variable("w", [4, 3], tf.zeros))
        if is_training:
            out += nn.get_variable("b", [3], tf.zeros)
        return out

    net = nn.Network(layer)
    net(tf.ones([1, 4]), True)
    with pytest.raises(nn.VariableOrderError, match="same variables on every pass"):
        net(tf.ones([1, 4]), False)


def test_get_variable_outside_a_network_says_what_to_do():
    with pytest.raises(RuntimeError, match="Network"):
        nn.get_variable("w", [1], tf.zeros)


def test_initializer_shape_is_checked():
    net = nn.Network(lambda x, t: nn.get_variable("w", [3], lambda shape: tf.zeros([2])))
    with pytest.raises(ValueError, match="shape"):
        net(tf.ones([1]), True)


def test_loss_and_accuracy():
    logits = tf.constant([[5.0, -5.0], [-5.0, 5.0]])
    labels = tf.constant([[1.0, 0.0], [1.0, 0.0]])
    assert float(training.accuracy_fn(logits, labels)) == 0.5
    expected = np.mean(np.log1p(np.exp(-np.abs([5.0, 5.0, 5.0, 5.0]))) + np.array([0, 0, 5, 5]))
    assert float(training.loss_fn(logits, labels)) == pytest.approx(expected, rel=1e-5)


def _linear_model():
    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))


def _plain_step(model, optimizer, images, labels):
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = training.loss_fn(logits, labels)
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss, logits


def test_train_runs_the_loop_and_reports_the_final_figures(capsys):
    keras.utils.set_random_seed(0)
    model = _linear_model()
    calls = {"step": 0}

    def train_step(model, optimizer, images, labels):
        calls["step"] += 1
        return _plain_step(model, optimizer, images, labels)

    monitor = TrainingMonitor(total_batches=30, mode="silent")
    results = training.train(
        model,
        train_step,
        lambda m, x: m(x, training=False),
        num_batches=30,
        monitor=monitor,
        validation_size=500,
        compile=False,
    )
    assert calls["step"] == 30
    assert [b for b, *_ in results.train_log] == [25, 30]
    assert [b for b, *_ in results.validation_log] == [30]
    assert 0.5 < results.test_accuracy <= 1.0  # a linear model learns quickly
    assert 0.0 <= results.single_sample_accuracy <= 1.0
    assert monitor.history[results.name].final["test_accuracy"] == results.test_accuracy
    assert "Final test accuracy" in capsys.readouterr().out


def test_under_nbgrader_a_run_is_short_and_skips_what_nothing_reads(monkeypatch, capsys):
    """Under nbgrader: 10 batches, no single images; a run of given code only (skip_when_grading) does
    not train at all there, and trains as usual elsewhere."""
    from bnlab import settings

    monkeypatch.delenv("BNLAB_SHORT", raising=False)
    monkeypatch.delenv("BNLAB_SHORT_BATCHES", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    steps = []

    def counted(model, optimizer, images, labels):
        steps.append(1)
        return _plain_step(model, optimizer, images, labels)

    monitor = TrainingMonitor(total_batches=10, mode="silent")
    results = training.train(_linear_model, counted, lambda m, x: m(x, training=False), monitor=monitor, compile=False)
    assert len(steps) == results.num_batches == settings.GRADING_BATCHES
    assert np.isnan(results.single_sample_accuracy) and 0.0 <= results.test_accuracy <= 1.0
    assert "single_sample_accuracy" not in monitor.history[results.name].final
    out = capsys.readouterr().out
    assert "(one at a time): not measured under nbgrader" in out
    skipped = training.train(_linear_model, counted, lambda m, x: m(x), name="given", skip_when_grading=True)
    assert len(steps) == settings.GRADING_BATCHES and skipped.num_batches == 0 and skipped.batch_log == []
    assert "given: skipped while nbgrader checks the notebook" in capsys.readouterr().out
    monkeypatch.delenv("NBGRADER_EXECUTION")
    ran = training.train(
        _linear_model,
        counted,
        lambda m, x: m(x),
        num_batches=2,
        skip_when_grading=True,
        monitor=TrainingMonitor(total_batches=2, mode="silent"),
        compile=False,
        refresh_batches=0,
    )
    assert ran.num_batches == 2 and len(steps) == settings.GRADING_BATCHES + 2 and ran.single_sample_accuracy >= 0


def test_train_rejects_what_is_not_a_function():
    with pytest.raises(TypeError, match="train_step"):
        training.train(None, "not a function", lambda m, x: x, num_batches=1)


def test_one_evaluate_serves_the_exercise_and_the_lesson():
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, (300, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 300)
    images = np.arange(300, dtype=np.float32)[:, None]  # each "image" is the index of its logits
    predict = lambda model, x: tf.gather(model, tf.cast(x[:, 0], tf.int32))  # noqa: E731
    accuracy = float(np.mean(np.argmax(logits, 1) == labels))

    loss, acc = training.evaluate(predict, tf.constant(logits), images, labels, chunk=125)
    assert acc == accuracy
    one_hot = np.eye(10, dtype=np.float32)[labels]
    assert loss == pytest.approx(float(training.loss_fn(tf.constant(logits), one_hot)), rel=1e-5)

    from bnlab import lesson

    loss, acc = training.evaluate(predict, tf.constant(logits), images, labels, loss=lesson.demo_loss, chunk=125)
    assert acc == accuracy
    shifted = logits - logits.max(1, keepdims=True)
    softmax_ce = np.log(np.exp(shifted).sum(1)) - shifted[np.arange(300), labels]
    assert loss == pytest.approx(float(np.mean(softmax_ce)), rel=1e-5)
