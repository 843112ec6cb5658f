"""bnlab.training.step: the one training step, evaluation and batch-of-one predictor of the course."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import fake_mnist

import bnlab
from bnlab import lesson, questions, training
from bnlab.training import step

tf = bnlab.tf
keras = tf.keras


def _bn_model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Dense(12, use_bias=False)(keras.layers.Flatten()(inputs))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.5)(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.fixture(scope="module")
def data():
    return fake_mnist()


@pytest.mark.parametrize("compile", [False, True])
def test_batch_of_one_in_inference_mode_matches_the_batch(data, compile):
    model = _bn_model()
    images = data.test.images[:12]
    classes = step.predict_one_at_a_time(lambda x: model(x, training=False), images, compile=compile)
    np.testing.assert_array_equal(classes, np.argmax(model(images, training=False).numpy(), axis=1))
    assert classes.dtype == np.int64 and classes.shape == (12,)


@pytest.mark.parametrize("compile", [False, True])
def test_batch_of_one_in_training_mode_restores_the_statistics_it_is_given(data, compile):
    model = _bn_model()
    images = data.test.images[:8]
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    classes = step.predict_one_at_a_time(lambda x: model(x, training=True), images, compile=compile, model=model)
    assert len(set(classes.tolist())) == 1, "a batch of one normalized by itself loses its input"
    for old, new in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(old, new.numpy())
    step.predict_one_at_a_time(lambda x: model(x, training=True), images, compile=compile)
    assert any(not np.array_equal(old, new.numpy()) for old, new in zip(before, model.non_trainable_variables)), (
        "without a model to restore, the training-mode passes move the statistics"
    )


def test_the_three_batch_of_one_callers_agree(data):
    """The lesson's predictor, the question's and the exercise's single-image accuracy are one function."""
    model = _bn_model(3)
    images, labels = data.test.images[:10], data.test.labels[:10]
    for training_mode in (False, True):
        by_lesson = lesson.predict_one_at_a_time(model, images, training=training_mode)
        by_question = questions._one_at_a_time(model, images, training_mode)
        np.testing.assert_array_equal(by_lesson, by_question)
    by_lesson = lesson.predict_one_at_a_time(model, images, training=False)
    predict = lambda m, x: m(x, training=False)  # noqa: E731
    eager = training.single_sample_accuracy(predict, model, images, labels)
    compiled = step.Trainer(model, None, predict, compile=True)
    assert eager == pytest.approx(float(np.mean(by_lesson == labels)))
    assert float(compiled.singles(tf.constant(images), tf.constant(labels))) == pytest.approx(eager)


def test_device_batches_are_the_splits_batches(data):
    for num_batches in (3, 40):  # a few batches copy only their images; many copy the whole split
        batches = step.device_batches(data.train, 16, num_batches, seed=5)
        assert len(batches) == num_batches
        expected = list(data.train.batches(16, seed=5, num_batches=num_batches))
        for i, (images, labels) in enumerate(expected):
            rows = batches.rows[i]
            np.testing.assert_array_equal(tf.gather(batches.images, rows).numpy(), images)
            np.testing.assert_array_equal(tf.gather(batches.labels, rows).numpy(), labels)
    assert step.device_batches(data.train, 16, 3, seed=5).images.shape[0] == 48
    assert step.device_batches(data.train, 16, 40, seed=5).images.shape[0] == len(data.train)


@pytest.mark.parametrize("one_hot", [True, False])
def test_the_step_hands_its_labels_and_figures_over(data, one_hot):
    model = _bn_model(1)
    seen = {}

    def train_step(model, optimizer, images, labels):
        seen["labels"] = labels
        logits = model(images, training=True)
        return tf.constant(0.25), logits

    trainer = step.Trainer(model, train_step, lambda m, x: m(x, training=False), compile=False, one_hot=one_hot)
    batches = step.device_batches(data.train, 8, 2, seed=0)
    loss, accuracy = trainer.train_on(batches, 1)
    images, labels = list(data.train.batches(8, seed=0, num_batches=2))[1]
    expected_labels = np.eye(10)[labels] if one_hot else labels
    np.testing.assert_array_equal(seen["labels"].numpy(), expected_labels)
    assert float(loss) == 0.25
    logits = model(images, training=True).numpy()
    assert float(accuracy) == pytest.approx(float(np.mean(np.argmax(logits, axis=1) == labels)))


def test_gradient_step_inspects_the_gradients_before_it_applies_them(data):
    model = _bn_model(2)
    images, labels = data.train.images[:16], data.train.labels[:16]
    with tf.GradientTape() as tape:
        expected = lesson.demo_loss(model(images, training=True), labels)
    gradients = tape.gradient(expected, model.trainable_variables)
    start = [v.numpy().copy() for v in model.trainable_variables]

    def inspect(pairs, seen):
        assert seen is None
        return tf.stack([tf.norm(g) for _, g in pairs]), tf.stack([tf.norm(v) for v, _ in pairs])

    trainer = step.Trainer(
        model,
        step.gradient_step(lesson.demo_loss, inspect=inspect),
        lambda m, x: m(x, training=False),
        keras.optimizers.SGD(0.5),
        one_hot=False,
        extra=True,
    )
    batches = step.Batches(tf.constant(images), tf.constant(labels), tf.constant([np.arange(16)]))
    loss, accuracy, (norms, weights) = trainer.train_on(batches, 0)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    np.testing.assert_allclose(norms.numpy(), [np.linalg.norm(g) for g in gradients], rtol=1e-4)
    np.testing.assert_allclose(weights.numpy(), [np.linalg.norm(w) for w in start], rtol=1e-5)
    for before, gradient, after in zip(start, gradients, model.trainable_variables):
        np.testing.assert_allclose(after.numpy(), before - 0.5 * gradient.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("compile", [False, True])
def test_trainer_evaluation_is_the_eager_evaluation(data, compile):
    model = _bn_model(4)
    predict = lambda m, x: m(x, training=False)  # noqa: E731
    trainer = step.Trainer(model, None, predict, compile=compile)
    images, labels = tf.constant(data.validation.images), tf.constant(data.validation.labels)
    trainer.trace(images, labels, images[:5], labels[:5], chunk=25)
    loss, accuracy = trainer.evaluate(images, labels, chunk=25)
    assert (loss, accuracy) == pytest.approx(training.evaluate(predict, model, images, labels, chunk=64), rel=1e-5)
