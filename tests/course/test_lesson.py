"""Tests of the lesson helpers (bnlab/lesson.py) and of the lesson notebook itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import FakeRun, fake_mnist
from nbval_run import nbval

from bnlab import lesson

keras = lesson.keras
tf = lesson.tf

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "source/batch_norm_lesson/Batch_Normalization_Lesson.ipynb"
APPENDIX = "source/batch_norm_lesson/Appendix_TF1_Code.ipynb"


# -- models ----------------------------------------------------------------------------------


def test_initial_kernels_are_reproducible_and_shaped():
    first = lesson.initial_kernels((784, 100, 100, 10), init="he", seed=3)
    again = lesson.initial_kernels((784, 100, 100, 10), init="he", seed=3)
    other = lesson.initial_kernels((784, 100, 100, 10), init="he", seed=4)
    assert [k.shape for k in first] == [(784, 100), (100, 100), (100, 10)]
    assert all(k.dtype == np.float32 for k in first)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0]), "a different seed should give different weights"


def test_unknown_init_and_activation_are_rejected():
    with pytest.raises(ValueError, match="unknown init"):
        lesson.initial_kernels((4, 3), init="uniform-7")
    with pytest.raises(ValueError, match="unknown activation"):
        lesson.build_demo_net(True, activation="softsign")


@pytest.mark.parametrize("activation,init", [("relu", "glorot"), ("sigmoid", "normal-5"), ("tanh", "normal-0.001")])
def test_twin_nets_start_from_identical_weights(activation, init):
    plain, with_bn = lesson.build_twin_nets(activation=activation, init=init, seed=7)
    plain_kernels, bn_kernels = lesson.dense_kernels(plain), lesson.dense_kernels(with_bn)
    assert len(plain_kernels) == len(bn_kernels) == 3
    for a, b in zip(plain_kernels, bn_kernels):
        np.testing.assert_array_equal(a, b, err_msg="the twins must start with the same kernels")
    bn_layers = [layer for layer in with_bn.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bn_layers) == 2
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    hidden_dense = [layer for layer in with_bn.layers if isinstance(layer, keras.layers.Dense)][:-1]
    assert all(not layer.use_bias for layer in hidden_dense), "BN makes the hidden layers' bias redundant"
    assert all(layer.momentum == pytest.approx(0.9) for layer in bn_layers)


def test_bad_init_really_changes_the_weight_scale():
    def first_kernel_std(init):
        return float(lesson.dense_kernels(lesson.build_demo_net(False, init=init, seed=0))[0].std())

    glorot = first_kernel_std("glorot")  # sqrt(2 / (784 + 100)) ~ 0.048
    assert 0.03 < glorot < 0.07
    assert first_kernel_std("normal-5") == pytest.approx(5.0, rel=0.02)
    assert first_kernel_std("normal-0.001") == pytest.approx(0.001, rel=0.02)
    assert first_kernel_std("he") == pytest.approx(np.sqrt(2 / 784), rel=0.02)


def test_textbook_mlp_architecture():
    mlp = lesson.build_textbook_mlp(seed=1)
    dense = [layer for layer in mlp.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [300, 100, 10]
    assert all(isinstance(layer.kernel_initializer, keras.initializers.HeNormal) for layer in dense)
    kinds = [type(layer).__name__ for layer in mlp.layers]
    assert kinds == [
        "Flatten",
        "Dense",
        "BatchNormalization",
        "Activation",
        "Dense",
        "BatchNormalization",
        "Activation",
        "Dense",
        "BatchNormalization",
    ], "BN before each ELU, and on the logits (as in the textbook's notebook)"
    assert [layer.momentum for layer in mlp.layers if isinstance(layer, keras.layers.BatchNormalization)] == [0.9] * 3
    assert mlp.get_layer("elu1").activation is keras.activations.elu
    assert mlp.output_shape == (None, 10)


def test_textbook_mlp_without_bn_is_the_same_network_minus_bn():
    with_bn, without = lesson.build_textbook_mlp(seed=5), lesson.build_textbook_mlp(seed=5, batch_norm=False)
    assert [type(layer).__name__ for layer in without.layers] == [
        "Flatten",
        "Dense",
        "Activation",
        "Dense",
        "Activation",
        "Dense",
    ]
    for name in ("hidden1", "hidden2", "logits"):
        np.testing.assert_array_equal(with_bn.get_layer(name).kernel.numpy(), without.get_layer(name).kernel.numpy())


def test_describe_variables_of_a_bn_layer():
    layer = keras.layers.BatchNormalization()
    layer.build((None, 6))
    assert lesson.describe_variables(layer) == [
        ("gamma", (6,), True),
        ("beta", (6,), True),
        ("moving_mean", (6,), False),
        ("moving_variance", (6,), False),
    ]


# -- batch normalization by hand -------------------------------------------------------------


@pytest.mark.parametrize("shape", [(32, 5), (8, 6, 6, 3)])
def test_hand_written_bn_matches_keras_in_training_and_inference(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=shape).astype(np.float32)
    layer = keras.layers.BatchNormalization(momentum=0.8)
    layer.build(x.shape)
    layer.gamma.assign(rng.uniform(0.5, 2.0, size=shape[-1]))
    layer.beta.assign(rng.normal(size=shape[-1]))
    axes = tuple(range(len(shape) - 1))

    by_tf_nn = lesson.batch_norm_tf_nn(x, layer, training=True).numpy()
    by_formula = lesson.batch_norm_formula(
        x, layer.gamma.numpy(), layer.beta.numpy(), x.mean(axis=axes), x.var(axis=axes), layer.epsilon
    )
    by_keras = layer(x, training=True).numpy()  # also moves the averages once
    np.testing.assert_allclose(by_tf_nn, by_keras, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(by_formula, by_keras, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.2 * x.mean(axis=axes), rtol=1e-4)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.8 + 0.2 * x.var(axis=axes), rtol=1e-4)

    new = rng.normal(2.0, 3.0, size=shape).astype(np.float32)
    by_tf_nn = lesson.batch_norm_tf_nn(new, layer, training=False).numpy()
    by_formula = lesson.batch_norm_formula(
        new,
        layer.gamma.numpy(),
        layer.beta.numpy(),
        layer.moving_mean.numpy(),
        layer.moving_variance.numpy(),
        layer.epsilon,
    )
    by_keras = layer(new, training=False).numpy()
    np.testing.assert_allclose(by_tf_nn, by_keras, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(by_formula, by_keras, rtol=1e-4, atol=1e-4)


def test_batch_of_one_in_training_mode_gives_one_class_and_leaves_the_model_unchanged():
    data = fake_mnist()
    model = lesson.build_demo_net(True, seed=2)
    lesson.train_demo(model, FakeRun(), data, learning_rate=0.1, num_batches=10, batch_size=30)
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    images = data.test.images[:15]
    in_training_mode = lesson.predict_one_at_a_time(model, images, training=True)
    assert len(set(in_training_mode.tolist())) == 1, "normalizing a batch of one by itself erases the input"
    for old, new in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(old, new.numpy(), err_msg="the moving averages must be restored")
    in_inference_mode = lesson.predict_one_at_a_time(model, images, training=False)
    expected = np.argmax(model(images, training=False).numpy(), axis=1)
    np.testing.assert_array_equal(in_inference_mode, expected)


# -- training loop and comparisons -----------------------------------------------------------


def test_train_demo_reports_every_25_batches_and_validates_every_100():
    run = FakeRun()
    result = lesson.train_demo(
        lesson.build_demo_net(True, seed=0),
        run,
        fake_mnist(),
        learning_rate=0.1,
        num_batches=110,
        batch_size=20,
        validation_size=50,
        test_size=40,
    )
    train_batches = [b for b, _, _, split in run.logs if split == "train"]
    val_batches = [b for b, _, _, split in run.logs if split == "validation"]
    assert train_batches == [25, 50, 75, 100, 110]
    assert val_batches == [100, 110]
    assert set(run.final) == {"validation_accuracy", "test_accuracy"}
    assert 0.0 <= result["validation_accuracy"] <= 1.0 and 0.0 <= result["test_accuracy"] <= 1.0
    assert all(0.0 <= acc <= 1.0 for _, _, acc, _ in run.logs)


def test_twins_see_the_same_batches():
    data = fake_mnist()
    runs = []
    for batch_norm in (False, False):  # the same network twice: identical curves prove identical batches
        run = FakeRun()
        lesson.train_demo(
            lesson.build_demo_net(batch_norm, seed=5), run, data, learning_rate=0.05, num_batches=50, batch_size=20
        )
        runs.append(run)
    np.testing.assert_allclose([p[1] for p in runs[0].logs], [p[1] for p in runs[1].logs], rtol=1e-5)


def test_compare_trains_both_twins_for_each_setting():
    pytest.importorskip("bnlab.monitor")
    results = lesson.compare(
        [{"learning_rate": 0.1}, {"learning_rate": 0.5, "activation": "sigmoid", "init": "he"}],
        fake_mnist(),
        title="test",
        num_batches=30,
        batch_size=20,
        mode="silent",
    )
    assert [(r["learning_rate"], r["activation"], r["init"], r["batch_norm"]) for r in results] == [
        (0.1, "relu", "glorot", False),
        (0.1, "relu", "glorot", True),
        (0.5, "sigmoid", "he", False),
        (0.5, "sigmoid", "he", True),
    ]
    assert len({r["name"] for r in results}) == 4, "run names must differ, or the monitor merges the runs"
    table = lesson.results_table(results)
    assert table.count("\n") == 4 and "with BN" in table and "no BN" in table


def test_comparison_controls_offer_the_choices_and_run():
    pytest.importorskip("bnlab.monitor")
    pytest.importorskip("ipywidgets")
    controls = lesson.ComparisonControls(
        fake_mnist(), num_batches=25, batch_size=20, learning_rate=0.01, activation="relu", init="normal-5"
    )
    assert list(controls.learning_rate.options) == list(lesson.LEARNING_RATES)
    assert list(controls.activation.options) == list(lesson.ACTIVATIONS)
    assert [value for _, value in controls.init.options] == list(lesson.INITIALISERS)
    assert controls.setting() == {"learning_rate": 0.01, "activation": "relu", "init": "normal-5"}
    controls.activation.value = "tanh"
    results = controls.run()
    assert [(r["activation"], r["init"], r["batch_norm"]) for r in results] == [
        ("tanh", "normal-5", False),
        ("tanh", "normal-5", True),
    ]

    controls.learning_rate.value = 0.1
    controls.button.click()  # what a student's click does: train, print the table, enable the button again
    assert [(r["learning_rate"], r["activation"]) for r in controls.last_results] == [(0.1, "tanh"), (0.1, "tanh")]
    assert not controls.button.disabled


# -- the notebook ----------------------------------------------------------------------------


def test_notebook_is_stored_without_outputs_and_starts_with_bnlab():
    import nbformat

    nb = nbformat.read(REPO_ROOT / NOTEBOOK, as_version=4)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells), (
        "clear the outputs before committing the lesson notebook"
    )
    assert code_cells[0].source.splitlines()[0] == "import bnlab"
    assert "bnlab.device.print_device()" in code_cells[0].source
    sources = "\n".join(cell.source for cell in code_cells)
    assert "SHORT = bnlab.short_mode()" in sources
    assert "from bnlab.monitor import TrainingMonitor" in sources
    assert "tf.compat.v1" not in sources


def test_appendix_sets_legacy_keras_before_tensorflow_and_is_stored_without_outputs():
    import nbformat

    nb = nbformat.read(REPO_ROOT / APPENDIX, as_version=4)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells)
    first = code_cells[0].source
    assert first.index('os.environ["TF_USE_LEGACY_KERAS"] = "1"') < first.index("import bnlab"), (
        "TF_USE_LEGACY_KERAS must be set before anything imports TensorFlow"
    )
    sources = "\n".join(cell.source for cell in code_cells)
    for idiom in (
        "v1.placeholder",
        "v1.layers.batch_normalization",
        "v1.GraphKeys.UPDATE_OPS",
        "tf.control_dependencies",
        "tf.cond",
        "v1.Session",
    ):
        assert idiom in sources, f"the appendix should show the TF1 idiom {idiom}"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", [NOTEBOOK, APPENDIX])
def test_lesson_notebook_executes_under_nbval_in_short_mode(notebook):
    """Every cell runs, and none writes to stderr (tests/nbval_run.py); the lesson's claims are checked on a run
    of its own (tests/course/test_lesson_notebook.py)."""
    nbval(notebook, {"BNLAB_SHORT": "1"})


def test_an_overflowing_loss_is_logged_as_nan_and_training_goes_on():
    run = FakeRun()
    model = lesson.build_demo_net(False, activation="relu", init="normal-5", seed=0)
    result = lesson.train_demo(model, run, fake_mnist(), learning_rate=1e6, num_batches=30, batch_size=20)
    assert [b for b, _, _, split in run.logs if split == "train"] == [25, 30]
    assert not any(np.isinf(loss) for _, loss, _, _ in run.logs), "the run sees nan, never inf"
    assert any(np.isnan(loss) for _, loss, _, _ in run.logs)
    assert set(run.final) == {"validation_accuracy", "test_accuracy"}
    assert 0.0 <= result["test_accuracy"] <= 1.0
