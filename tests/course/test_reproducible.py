"""Reproducible runs (same seed, same figures batch by batch) and the population refresh after training."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import learnable_mnist

import bnlab
from bnlab import nn, training
from bnlab.monitor import TrainingMonitor
from bnlab.training import population

tf = bnlab.tf
keras = tf.keras


@pytest.fixture(scope="module")
def small_data():
    """A small, fixed, learnable stand-in for MNIST (tests/fakes.py)."""
    return learnable_mnist()


def build_keras():
    images = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, use_bias=False)(images)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Flatten()(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Dense(16, use_bias=False)(x)))
    return keras.Model(images, keras.layers.Dense(10)(x))


def keras_step(model, optimizer, images, labels, mode=True):
    with tf.GradientTape() as tape:
        logits = model(images, training=mode)
        loss = training.loss_fn(logits, labels)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, logits


def keras_predict(model, images):
    return model(images, training=False)


def run(data, seed, **options):
    options.setdefault("num_batches", 30)
    return training.train(
        build_keras,
        keras_step,
        keras_predict,
        data=data,
        seed=seed,
        monitor=TrainingMonitor(mode="silent"),
        validation_size=500,
        **options,
    )


def test_same_seed_same_figures_batch_by_batch(small_data):
    first, second = run(small_data, seed=7), run(small_data, seed=7)
    assert len(first.batch_log) == 30
    assert first.batch_log == second.batch_log, "every batch's loss and accuracy must repeat exactly"
    assert first.validation_log == second.validation_log
    assert (first.test_accuracy, first.single_sample_accuracy) == (second.test_accuracy, second.single_sample_accuracy)
    other = run(small_data, seed=8)
    assert other.batch_log != first.batch_log, "another seed gives another run"


def test_a_short_run_trains_on_the_same_batches_as_the_start_of_a_long_one(small_data):
    """A short run copies only its own images to the device; its batches and figures stay those of a long run."""
    short = run(small_data, seed=3, num_batches=5, refresh_batches=0)  # 320 of 2,048 images: the copied subset
    long = run(small_data, seed=3, num_batches=20, refresh_batches=0)  # 1,280 images: the whole split
    assert short.batch_log == long.batch_log[:5]


def test_timings_cover_the_run(small_data):
    timings = run(small_data, seed=1, num_batches=5).timings
    parts = training.Stopwatch.PARTS
    assert set(parts) | {"wall", "other"} == set(timings)
    assert all(timings[p] >= 0 for p in parts) and timings["steps"] > 0 and timings["tracing"] > 0
    assert sum(timings[p] for p in parts) + timings["other"] == pytest.approx(timings["wall"])


def test_refresh_sets_the_average_batch_statistics(small_data):
    training.set_seed(3)
    model = build_keras()
    optimizer = keras.optimizers.Adam(0.01)
    step = tf.function(keras_step)
    batches = [tf.constant(small_data.train.images[i * 64 : (i + 1) * 64]) for i in range(4)]
    labels = [tf.one_hot(small_data.train.labels[i * 64 : (i + 1) * 64], 10) for i in range(4)]
    for x, y in zip(batches, labels):  # train a little so that the moving averages lag the weights
        step(model, optimizer, x, y)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    inputs = keras.Model(model.input, [layer.input for layer in norms])
    outputs = [inputs(x, training=True) for x in batches]  # what each normalization sees when training
    weights = [w.numpy() for w in model.trainable_variables]
    found = population.refresh_population_statistics(
        model, lambda i: step(model, optimizer, batches[i], labels[i]), optimizer, batches=4
    )
    assert found["refreshed"] == 4 and found["kept"] == 0 and found["decay"] == pytest.approx([0.99] * 4, abs=1e-5)
    for before, after in zip(weights, model.trainable_variables):
        np.testing.assert_array_equal(before, after.numpy())  # learning rate 0: the weights did not move
    assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(0.01)
    for k, layer in enumerate(norms):
        axes = tuple(range(outputs[0][k].ndim - 1))
        mean = np.mean([np.mean(o[k], axis=axes) for o in outputs], axis=0)
        variance = np.mean([np.var(o[k], axis=axes) for o in outputs], axis=0)
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=1e-3, atol=1e-4)


def test_refresh_follows_the_students_own_update_rule():
    """A tf.nn layer with decay 0.9 and a (buggy) update without (1 - decay): the refresh converges where theirs
    would."""

    def layer(x, is_training, buggy):
        pop = nn.get_variable("pop_mean", [2], tf.zeros, trainable=False)
        w = nn.get_variable("w", [2], tf.ones)
        if is_training:
            batch = tf.reduce_mean(x, 0)
            pop.assign(pop * 0.9 + batch * (0.9 if buggy else 0.1))
        return x * w

    for buggy in (False, True):
        net = nn.Network(lambda x, t: layer(x, t, buggy))
        optimizer = keras.optimizers.Adam(0.1)
        data = [tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([[5.0, 6.0], [7.0, 8.0]])]

        def step(i):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(net(data[i], True))
            optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))

        step(0)
        found = population.refresh_population_statistics(net, step, optimizer, batches=2)
        average = np.array([4.0, 5.0]) * (9.0 if buggy else 1.0)  # the fixed point of their update
        np.testing.assert_allclose(net.created[0].numpy(), average, rtol=1e-4)
        assert found["decay"] == pytest.approx([0.9], abs=1e-5)


def test_refresh_keeps_statistics_that_training_does_not_update(small_data):
    """A train_step that runs the model in inference mode never updates the statistics; the refresh does not either."""
    training.set_seed(0)
    model = build_keras()
    optimizer = keras.optimizers.Adam(0.01)
    x = tf.constant(small_data.train.images[:64])
    y = tf.one_hot(small_data.train.labels[:64], 10)
    keras_step(model, optimizer, x, y, mode=False)
    before = [v.numpy() for v in model.non_trainable_variables]
    found = population.refresh_population_statistics(
        model, lambda i: keras_step(model, optimizer, x, y, mode=False), optimizer, batches=3
    )
    assert found["refreshed"] == 0 and found["kept"] == 4
    for value, variable in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(value, variable.numpy())


def test_a_model_without_statistics_is_left_alone():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert population.refresh_population_statistics(model, lambda i: None, keras.optimizers.Adam(), 5) == {
        "refreshed": 0,
        "kept": 0,
        "decay": [],
    }


def test_fused_adam_matches_keras_adam():
    from bnlab.training.adam import FusedAdam

    reference = None
    for optimizer_class in (keras.optimizers.Adam, FusedAdam):
        training.set_seed(2)
        model = build_keras()
        optimizer = optimizer_class(0.002)
        step = tf.function(keras_step)
        rng = np.random.default_rng(0)
        for _ in range(5):
            x = tf.constant(rng.normal(size=(16, 28, 28, 1)).astype(np.float32))
            step(model, optimizer, x, tf.one_hot(rng.integers(0, 10, 16), 10))
        weights = [w.numpy() for w in model.trainable_variables]
        if optimizer_class is FusedAdam:
            assert int(optimizer.iterations) == 5
            for ours, theirs in zip(weights, reference):
                np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
        reference = weights
