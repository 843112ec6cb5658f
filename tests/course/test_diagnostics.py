"""Tests of the lesson's experiment helpers: bnlab.diagnostics, bnlab.layer_viewer, bnlab.normalization."""

from __future__ import annotations

import fakes
import numpy as np
import pytest
from fakes import FakeRun

from bnlab import diagnostics, layer_viewer, normalization

keras = diagnostics.keras


def fake_mnist(n_train: int = 256, n_eval: int = 64, seed: int = 0):
    """Smaller than the lesson tests' default: these tests train the 20-layer CNN."""
    return fakes.fake_mnist(n_train, n_eval, seed)


# -- the exercise's network ------------------------------------------------------------------


def test_exercise_cnn_architecture_and_feature_map_sizes():
    plain, with_bn = diagnostics.build_exercise_twins(seed=3)
    sizes = diagnostics.feature_map_sizes(with_bn)
    assert [c for _, _, _, c in sizes] == [4 * d for d in range(1, 20)]
    assert [h for _, h, _, _ in sizes] == [28, 28, 14, 14, 14, 7, 7, 7, 4, 4, 4, 2, 2, 2, 1, 1, 1, 1, 1]
    assert diagnostics.feature_map_sizes(plain) == sizes
    conv = [layer for layer in with_bn.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(conv) == 19 and all(not layer.use_bias for layer in conv)
    assert all(layer.use_bias for layer in plain.layers if isinstance(layer, keras.layers.Conv2D))
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in with_bn.layers) == 20
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    assert with_bn.output_shape == (None, 10) and with_bn.get_layer("dense").units == 100
    for name in diagnostics.WEIGHT_LAYERS + ("logits",):
        np.testing.assert_array_equal(plain.get_layer(name).kernel.numpy(), with_bn.get_layer(name).kernel.numpy())


def test_train_and_record_snapshots_and_gradient_norms():
    data = fake_mnist()
    model = diagnostics.build_exercise_cnn(False, seed=0)
    run, seen = FakeRun(), []
    record = diagnostics.train_and_record(
        model,
        data,
        num_batches=6,
        snapshot_steps=(1, 4),
        run=run,
        batch_size=16,
        log_every=3,
        sample_size=50,
        validation_size=32,
        name="plain",
        on_snapshot=lambda r: seen.append(list(r.snapshot_steps)),
    )
    assert record.name == "plain" and record.layers == list(diagnostics.WEIGHT_LAYERS)
    assert record.snapshot_steps == [1, 4] and seen == [[1], [1, 4]]
    assert record.grad_steps == [1, 3, 4, 6]
    assert all(n.shape == (20,) and np.all(n >= 0) for n in record.grad_norms)
    assert len(record.samples[0]) == 20 and all(len(s) == 50 for s in record.samples[0][:18])
    assert record.preact_std[0].shape == (20,) and np.all(record.active_fraction[0] <= 1)
    assert [(b, split) for b, _, _, split in run.logs] == [(3, "train"), (6, "train"), (6, "validation")]
    assert set(run.final) == {"validation_accuracy"}
    assert run.final["validation_accuracy"] == record.validation_accuracy == run.logs[-1][2]
    assert record.train_accuracy == run.logs[1][2]
    assert 0 <= record.validation_accuracy <= 1 and record.seconds_per_batch > 0
    with pytest.raises(ValueError, match="num_batches"):
        diagnostics.train_and_record(model, data, num_batches=0)


def test_train_and_record_trains_like_the_exercise():
    """The exercise's batch size, learning rate and schedule by default, its loss, its batches and its Adam."""
    import inspect

    from bnlab import exercise, training
    from bnlab.training.adam import FusedAdam

    defaults = inspect.signature(diagnostics.train_and_record).parameters
    assert (
        defaults["batch_size"].default,
        defaults["learning_rate"].default,
        defaults["log_every"].default,
        defaults["validate_every"].default,
    ) == (exercise.BATCH_SIZE, exercise.LEARNING_RATE, exercise.TRAIN_LOG_EVERY, exercise.VALIDATE_EVERY)
    data = fake_mnist()
    tf = training.tf
    model = diagnostics.build_exercise_cnn(True, seed=2)
    copy = diagnostics.build_exercise_cnn(True, seed=2)
    copy.set_weights(model.get_weights())
    run = FakeRun()
    diagnostics.train_and_record(
        model, data, 2, run=run, batch_size=16, learning_rate=0.01, log_every=1, validation_size=16, seed=4
    )
    # the same two steps by hand: the exercise's batches, loss_fn on one-hot labels, FusedAdam
    optimizer = FusedAdam(0.01)
    optimizer.build(copy.trainable_variables)
    for (images, labels), (batch, loss, accuracy, _) in zip(data.train.batches(16, seed=4, num_batches=2), run.logs):
        with tf.GradientTape() as tape:
            logits = copy(images, training=True)
            expected = training.loss_fn(logits, tf.one_hot(labels, 10))
        optimizer.apply_gradients(zip(tape.gradient(expected, copy.trainable_variables), copy.trainable_variables))
        assert loss == pytest.approx(float(expected), rel=1e-4)  # batch 2: after the same first update
        assert accuracy == pytest.approx(float(np.mean(np.argmax(logits, axis=1) == labels)))


@pytest.mark.parametrize("seed", [0, 1])
def test_without_bn_the_signal_fades_and_with_bn_it_does_not(seed):
    """What lesson section 8 asserts, on random images (the effect is the initialisation's, not MNIST's)."""
    data = fake_mnist(seed=seed)
    records = [
        diagnostics.train_and_record(
            model, data, num_batches=1, snapshot_steps=(1,), batch_size=32, validation_size=16, seed=seed
        )
        for model in diagnostics.build_exercise_twins(seed=seed)
    ]
    plain, with_bn = records
    assert plain.preact_std[0][0] / plain.preact_std[0][-1] > 1e3
    assert np.all((with_bn.preact_std[0] > 0.5) & (with_bn.preact_std[0] <= 1.001))
    assert with_bn.grad_norms[0][0] > 1e3 * plain.grad_norms[0][0]


def test_snapshot_schedule_is_sorted_and_covers_both_ends():
    steps = diagnostics.snapshot_schedule(800, 10)
    assert steps[0] == 1 and steps[-1] == 800 and steps == sorted(set(steps)) and len(steps) <= 10


# -- the viewer ------------------------------------------------------------------------------


def _record(name, steps, scale):
    layers = list(diagnostics.WEIGHT_LAYERS)
    record = diagnostics.LayerRecord(name, layers)
    rng = np.random.default_rng(0)
    for step in steps:
        record.snapshot_steps.append(step)
        record.samples.append([rng.normal(0, scale, 30) for _ in layers])
        record.preact_std.append(np.full(20, scale))
        record.active_fraction.append(np.full(20, 0.5))
        record.grad_steps.append(step)
        record.grad_norms.append(np.full(20, scale))
    return record


def test_viewer_figure_selection_and_errors():
    viewer = layer_viewer.LayerViewer([_record("without BN", [1, 5], 1e-6), _record("with BN", [1, 5], 1.0)])
    assert viewer.steps() == [1, 5]
    fig = viewer.figure("conv3", 5)
    assert len(fig.axes) == 6 and "conv3" in fig.axes[0].get_title()
    assert viewer.png("dense", 1)[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="unknown layer"):
        viewer.select(layer="conv42")
    with pytest.raises(ValueError, match="layers="):
        layer_viewer.LayerViewer()


def test_viewer_widget_follows_new_records_and_keeps_a_png_fallback():
    pytest.importorskip("ipywidgets")
    viewer = layer_viewer.LayerViewer(layers=diagnostics.WEIGHT_LAYERS)
    viewer.widget()
    record = _record("without BN", [1], 0.1)
    viewer.follow(record)
    layer_widget, step_widget, image, _ = viewer._widgets
    assert list(step_widget.options) == [1] and image.value[:4] == b"\x89PNG"
    record.snapshot_steps.append(7)
    for field in ("samples", "preact_std", "active_fraction", "grad_norms"):
        getattr(record, field).append(getattr(record, field)[0])
    record.grad_steps.append(7)
    viewer.follow(record)
    assert len(viewer.records) == 1, "following the same record twice must not add it again"
    assert list(step_widget.options) == [1, 7] and step_widget.value == 7
    layer_widget.value = "conv5"  # what a student's choice does
    assert viewer.layer == "conv5" and viewer.step == 7
    bundle = viewer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle


def test_show_draws_static_figures_without_a_live_kernel(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    viewer = layer_viewer.LayerViewer([_record("with BN", [1], 1.0)])
    assert layer_viewer.live_kernel() is False and viewer.show_live() is False
    viewer.show(layers=("conv1", "dense"), step=1)
    assert len(shown) == 2 and all(obj.data[:4] == b"\x89PNG" for obj in shown)


# -- normalization experiments ---------------------------------------------------------------


def test_pre_bn_variances_are_the_batch_variances_of_the_bn_inputs():
    from bnlab import lesson

    images = fake_mnist().train.images[:40]
    model = lesson.build_demo_net(True, init="normal-0.001", seed=0)
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    variances = normalization.pre_bn_variances(model, images)
    for old, new in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(old, new.numpy(), err_msg="the moving averages must be restored")
    first = keras.Model(model.inputs[0], model.get_layer("bn1").input)(images, training=True).numpy()
    assert list(variances) == ["bn1", "bn2"]
    assert variances["bn1"] == pytest.approx(float(first.var(axis=0).mean()), rel=1e-4)
    assert max(variances.values()) < 1e-3, "tiny weights put the BN inputs' variance below epsilon"
    with pytest.raises(ValueError, match="no BatchNormalization"):
        normalization.pre_bn_variances(lesson.build_demo_net(False), images)


@pytest.mark.parametrize("normalizer", sorted(normalization.NORMALIZERS))
def test_norm_nets_share_their_initial_kernels(normalizer):
    reference = normalization.build_norm_net("none", seed=4)
    model = normalization.build_norm_net(normalizer, seed=4)
    for name in ("dense1", "dense2", "logits"):
        np.testing.assert_array_equal(model.get_layer(name).kernel.numpy(), reference.get_layer(name).kernel.numpy())
    assert model(np.zeros((3, 28, 28, 1), np.float32), training=True).shape == (3, 10)
    with pytest.raises(ValueError, match="unknown normalizer"):
        normalization.build_norm_net("instance")


def test_noisy_shift_moves_every_batch_in_training_only():
    layer = normalization.NoisyShift(seed=1)
    x = np.ones((5, 4), np.float32)
    first, second = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert not np.allclose(first, second), "a new shift and scale every batch"
    np.testing.assert_allclose(first, np.broadcast_to(first[0], first.shape))  # the same for every example
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)


def test_fold_batch_norm_matches_the_unfolded_model_in_inference():
    rng = np.random.default_rng(0)
    model = diagnostics.build_exercise_cnn(True, seed=0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 2.0, n))
            layer.beta.assign(rng.normal(size=n))
            layer.moving_mean.assign(rng.normal(size=n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
    folded = normalization.fold_batch_norm(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    images = fake_mnist().test.images[:16]
    expected = model(images, training=False).numpy()
    np.testing.assert_allclose(folded(images).numpy(), expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    with pytest.raises(TypeError, match="Sequential"):
        normalization.fold_batch_norm(keras.Model(model.inputs, model.outputs))


def test_fold_handles_a_dense_bias_and_rejects_a_lonely_bn():
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()])
    dense.layers[0].bias.assign([0.5, -1.0])
    bn = dense.layers[1]
    bn.moving_mean.assign([1.0, 2.0])
    bn.moving_variance.assign([4.0, 0.25])
    bn.gamma.assign([2.0, 3.0])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(
        normalization.fold_batch_norm(dense)(x).numpy(), dense(x, training=False).numpy(), rtol=1e-5, atol=1e-5
    )
    lonely = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="cannot be folded"):
        normalization.fold_batch_norm(lonely)


def test_population_error_and_batch_size_sweep():
    data = fake_mnist(n_train=300)
    results = normalization.batch_size_sweep(
        data, batch_sizes=(4, 32), normalizers=("batch", "layer"), images=128, learning_rate=0.05, validation_size=32
    )
    assert [(r["normalizer"], r["batch_size"]) for r in results] == [
        ("batch", 4),
        ("layer", 4),
        ("batch", 32),
        ("layer", 32),
    ]
    assert all(0 <= r["validation_accuracy"] <= 1 for r in results)
    assert all(r["population_error"] >= 0 for r in results if r["normalizer"] == "batch")
    assert all(np.isnan(r["population_error"]) for r in results if r["normalizer"] == "layer")


def test_loss_along_gradient_restores_the_model():
    data = fake_mnist()
    model = normalization.build_norm_net("batch", seed=0)
    before = [v.numpy().copy() for v in model.variables]
    losses = normalization.loss_along_gradient(model, data.train.images[:32], data.train.labels[:32], [0.0, 0.1, 1.0])
    assert losses.shape == (3,) and np.all(np.isfinite(losses))
    assert losses[1] < losses[0], "a small step along the negative gradient lowers the loss"
    for old, new in zip(before, model.variables):
        np.testing.assert_array_equal(old, new.numpy())


def test_inference_seconds_is_positive():
    model = normalization.build_norm_net("layer", seed=0)
    assert normalization.inference_seconds(model, np.zeros((8, 28, 28, 1), np.float32), repeats=2) > 0
