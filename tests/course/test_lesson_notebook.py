"""What the lesson notebook shows, checked on one run of it (short mode unless BNLAB_SHORT says otherwise).

The lesson's cells print what a run shows; these tests execute the notebook once, in a kernel of its
own, and check that the run shows it. After the cell that computes something, the fixture reads the
values a test needs from the kernel (PROBES), before later cells reuse the names.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "source" / "batch_norm_lesson" / "Batch_Normalization_Lesson.ipynb"

# (name, a line of the cell after which the value is read, an expression evaluated in the kernel there)
PROBES = [
    (
        "numpy_example",
        "z = gamma * x_hat + beta",
        "dict(x_hat=x_hat, z=z, var=var, epsilon=epsilon, gamma=gamma, beta=beta)",
    ),
    (
        "undo",
        "inference_errors, training_errors = [], []",
        "dict(inference=inference_errors, training=training_errors, largest=float(np.abs(population).max()))",
    ),
    (
        "update_rule",
        "# One more step, compared with the update rule above:",
        "dict(mean=layer.moving_mean.numpy(), var=layer.moving_variance.numpy(), before_mean=before_mean,"
        " before_var=before_var, batch=batch, momentum=layer.momentum)",
    ),
    ("demo_momentum", "demo_momentum = ", "demo_momentum"),
    (
        "one_at_a_time",
        "with_batch_stats = lesson.predict_one_at_a_time(",
        "dict(population=np.asarray(with_population), batch=np.asarray(with_batch_stats), labels=np.asarray(labels))",
    ),
    ("twins", "same_start = ", "same_start"),
    (
        "demos",
        "init_results = lesson.compare(",
        "[(r['learning_rate'], r['activation'], r['init'], r['batch_norm'], r['validation_accuracy'])"
        " for r in learning_rate_results + activation_results + init_results]",
    ),
    ("tiny_weights", "keras_std = {}", "dict(variances=dict(variances), keras_std=keras_std, bn2_input=bn2_input)"),
    (
        "mlp_start",
        "mlps = {",
        "{name: [mlps[label].get_layer(name).kernel.numpy() for label in ('with BN', 'without BN')]"
        " for name in ('hidden1', 'hidden2', 'logits')}",
    ),
    ("mlp_results", "mlp_results = {}", "dict(short=SHORT, val={k: list(r['val']) for k, r in mlp_results.items()})"),
    (
        "bn_variables",
        'bn1 = mlp.get_layer("bn1")',
        "([v.name for v in bn1.trainable_weights], [v.name for v in bn1.non_trainable_weights])",
    ),
    (
        "by_hand_training",
        "by_keras = bn(features, training=True)",
        "dict(tf_nn=by_tf_nn.numpy(), formula=by_formula.numpy(), keras=by_keras.numpy(), mean=mean.numpy(),"
        " variance=variance.numpy(), moving_mean=bn.moving_mean.numpy(), moving_variance=bn.moving_variance.numpy(),"
        " momentum=bn.momentum)",
    ),
    (
        "by_hand_inference",
        "by_keras = bn(new_features, training=False)",
        "dict(tf_nn=by_tf_nn.numpy(), formula=by_formula.numpy(), keras=by_keras.numpy())",
    ),
    (
        "per_channel",
        "conv_bn = keras.layers.BatchNormalization()",
        "dict(mean=tuple(mean.shape), gamma=tuple(conv_bn.gamma.shape), formula=by_formula.numpy(),"
        " keras=by_keras.numpy())",
    ),
    (
        "cnn_batch_of_one",
        "bn_names = [layer.name for layer in cnn.layers",
        "dict(constant=constant, one_by_one=one_by_one, alone=alone)",
    ),
    (
        "layer_norm",
        "layer_norm = keras.layers.LayerNormalization()",
        "dict(alone=layer_norm(batch[:1]).numpy(), in_batch=layer_norm(batch).numpy()[:1],"
        " bn_alone=batch_norm(batch[:1], training=True).numpy(),"
        " bn_in_batch=batch_norm(batch, training=True).numpy()[:1])",
    ),
    ("rnn", "step_std = states.std(axis=(0, 2))", "step_std"),
    (
        "batch_of_one",
        "tiny = keras.layers.BatchNormalization(epsilon=1e-3)",
        "dict(out=out.numpy(), beta=tiny.beta.numpy())",
    ),
    (
        "cnn_records",
        "shrink = plain.preact_std[0][0]",
        "dict(shrink=float(shrink), bn_std=[float(s) for s in with_bn.preact_std[0]],"
        " bn_grad=float(with_bn.grad_norms[0][0]), plain_grad=float(plain.grad_norms[0][0]))",
    ),
    ("init_table", "init_rows = gradients.initialization_runs(", "init_rows"),
    (
        "noise",
        "noise_results[kind] = lesson.train_demo(",
        "{kind: float(r['validation_accuracy']) for kind, r in noise_results.items()}",
    ),
    (
        "sweep",
        "sweep = normalization.batch_size_sweep(",
        "{key: (float(r['validation_accuracy']), r.get('population_error')) for key, r in by.items()}",
    ),
    ("folding", "folded = normalization.fold_batch_norm(cnn_bn)", "dict(folded=folded_out, unfolded=unfolded_out)"),
    (
        "fine_tuning",
        "frozen = keras.layers.BatchNormalization()",
        "dict(same=bool(same), frozen_mean=frozen.moving_mean.numpy(), moved=bool(moved),"
        " kept=bool(np.array_equal(before, base.get_layer('base_bn').moving_mean.numpy())))",
    ),
    (
        "momentum_conventions",
        "torch_momentum, running_mean = 0.1, np.zeros(3)",
        "dict(keras=keras_bn.moving_mean.numpy(), torch=running_mean, moving_var=moving_var)",
    ),
    (
        "backward_check",
        "by_tape = [g.numpy() for g in tape.gradient(",
        "dict(graph=by_graph, compact=compact, finite=finite, tape=by_tape)",
    ),
    (
        "backward_properties",
        "cosine = (dx * x_hat).sum(axis=0)",
        "dict(sums=float(np.abs(dx.sum(axis=0)).max()), dx_max=float(np.abs(dx).max()),"
        " cosine=float(np.abs(cosine).max()), eps_share=float((eps / (x.var(axis=0) + eps)).max()))",
    ),
    ("weight_scale", "rows = gradients.weight_scale_rows(", "rows"),
    ("stopped_one_layer", "rows = gradients.input_gradient_rows()", "rows"),
    ("stopped_cnn", "through, skipped = (r.train_accuracy", "rows"),
]


@dataclass
class LessonRun:
    nb: nbformat.NotebookNode  # the executed notebook, outputs included
    values: dict  # name of a probe: the value it read

    def table_after(self, line: str, header: str) -> list[str]:
        """The lines of the table that the code cell holding ``line`` printed under ``header``."""
        [cell] = [c for c in self.nb.cells if c.cell_type == "code" and line in c.source]
        printed = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout").splitlines()
        [start] = [i for i, text in enumerate(printed) if text.startswith(header)]
        return printed[start:]


def _probe_cells(nb) -> dict[int, list[tuple[str, str]]]:
    """``{index of a code cell: [(probe name, expression), ...]}``; every probe must find exactly one cell."""
    found: dict[int, list[tuple[str, str]]] = {}
    for name, line, expression in PROBES:
        indices = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and line in c.source]
        assert len(indices) == 1, f"probe {name}: {len(indices)} code cells hold {line!r}"
        found.setdefault(indices[0], []).append((name, expression))
    return found


def _read(client, nb, expression: str, path: Path):
    """Evaluate ``expression`` in the notebook's kernel and return its value (pickled through ``path``)."""
    source = f"__import__('pathlib').Path({str(path)!r}).write_bytes(__import__('pickle').dumps({expression}))"
    nb.cells.append(nbformat.v4.new_code_cell(source))
    try:
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1, store_history=False)
    finally:
        nb.cells.pop()
    return pickle.loads(path.read_bytes())


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> LessonRun:
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    probes = _probe_cells(nb)
    folder = tmp_path_factory.mktemp("lesson-probes")
    env = dict(os.environ)
    env.setdefault("BNLAB_SHORT", "1")  # BNLAB_SHORT=0 checks a full run
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.reset_execution_trackers()
    values = {}
    with client.setup_kernel(env=env):
        for index in range(len(nb.cells)):
            client.execute_cell(nb.cells[index], index)
            for name, expression in probes.get(index, []):
                values[name] = _read(client, nb, expression, folder / f"{name}.pickle")
    return LessonRun(nb, values)


slow = pytest.mark.slow


# -- the run as a whole --------------------------------------------------------------------------


@slow
def test_the_lesson_writes_nothing_to_stderr(run):
    """nbgrader gives zero points to cells that write to stderr; a student would see a red box."""
    noisy = [
        (index, output.get("text", "")[:300])
        for index, cell in enumerate(run.nb.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("name") == "stderr"
    ]
    assert not noisy, f"cells wrote to stderr: {noisy}"


@slow
def test_the_tables_print_a_header_and_one_line_per_row(run):
    sweep = run.table_after("sweep = normalization.batch_size_sweep(", "batch size")
    assert sweep[0].endswith("BN population error")
    sizes = sorted({size for _, size in run.values["sweep"]})
    assert [int(text.split()[0]) for text in sweep[1 : 1 + len(sizes)]] == sizes
    tiny = run.table_after("keras_std = {}", "layer")
    assert [text.split()[0] for text in tiny[1:3]] == list(run.values["tiny_weights"]["variances"])
    cnn = run.table_after('plain, with_bn = cnn_records["without BN"]', "at batch 1 (initial weights)")
    assert [text[:10].strip() for text in cnn[1:3]] == ["without BN", "with BN"]


# -- 1. the idea and the math --------------------------------------------------------------------


@slow
def test_normalized_features_have_mean_zero_and_the_expected_spread(run):
    v = run.values["numpy_example"]
    shrink = np.sqrt(v["var"] / (v["var"] + v["epsilon"]))  # just below 1
    np.testing.assert_allclose(v["x_hat"].mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(v["x_hat"].std(axis=0), shrink)
    np.testing.assert_allclose(v["z"].mean(axis=0), v["beta"], atol=1e-9)
    np.testing.assert_allclose(v["z"].std(axis=0), v["gamma"] * shrink)
    assert np.all(shrink < 1)


@slow
def test_gamma_and_beta_undo_the_normalization_only_with_population_statistics(run):
    v = run.values["undo"]
    assert len(v["inference"]) == len(v["training"]) == 3
    # |z - x| <= 1e-4 + 1e-4 |x| for every value, and no value is larger than the largest of the population
    assert max(v["inference"]) <= 1e-4 * (1 + v["largest"])
    assert min(v["training"]) > 1e-2, "with batch statistics fixed gamma and beta do not give the input back"


# -- 2. training versus inference ----------------------------------------------------------------


@slow
def test_moving_averages_follow_the_update_rule(run):
    v = run.values["update_rule"]
    assert v["momentum"] == pytest.approx(0.9)
    np.testing.assert_allclose(v["mean"], 0.9 * v["before_mean"] + 0.1 * v["batch"].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(v["var"], 0.9 * v["before_var"] + 0.1 * v["batch"].var(axis=0), rtol=1e-5)


@slow
def test_demo_networks_use_momentum_0_9(run):
    assert run.values["demo_momentum"] == 0.9


@slow
def test_single_images_in_training_mode_all_get_one_class(run):
    v = run.values["one_at_a_time"]
    assert len(v["labels"]) == 100
    assert len(set(v["batch"].tolist())) == 1, "with batch statistics every single image should get the same class"
    assert np.mean(v["population"] == v["labels"]) > 0.5, (
        "with population statistics the network should be right most of the time"
    )


# -- 3. demos --------------------------------------------------------------------------------------


@slow
def test_twins_start_from_identical_kernels(run):
    assert run.values["twins"] == [True, True, True]


@slow
def test_batch_normalization_wins_where_the_demos_say(run):
    scores = {setting[:4]: setting[4] for setting in run.values["demos"]}
    assert scores[(2.0, "relu", "glorot", True)] > scores[(2.0, "relu", "glorot", False)] + 0.3, (
        "at learning rate 2 batch normalization should win by far"
    )
    assert scores[(0.01, "sigmoid", "glorot", True)] > scores[(0.01, "sigmoid", "glorot", False)], (
        "the sigmoid network should learn faster with batch normalization"
    )
    assert scores[(0.1, "relu", "normal-0.001", True)] > scores[(0.1, "relu", "normal-0.001", False)] + 0.3, (
        "batch normalization should rescue tiny initial weights"
    )


@slow
def test_tiny_weights_reach_the_bn_layers_below_epsilon(run):
    v = run.values["tiny_weights"]
    assert list(v["variances"]) == ["bn1", "bn2"]
    assert max(v["variances"].values()) < 1e-3, "the variance reaching the BN layers should be below epsilon"
    assert sorted(v["keras_std"]) == [1e-8, 1e-3]
    variance = v["bn2_input"].var(axis=0)
    for eps, std in v["keras_std"].items():  # real Keras layers give the std the formula predicts
        np.testing.assert_allclose(std, np.sqrt(variance / (variance + eps)), rtol=2e-2, atol=1e-4)
    assert v["keras_std"][1e-3].mean() < 0.9 < v["keras_std"][1e-8].mean(), (
        "only a smaller epsilon brings the spread of bn2's output near 1"
    )


# -- 4. the textbook MLP ---------------------------------------------------------------------------


@slow
def test_textbook_mlps_start_from_the_same_weights(run):
    for name, (with_bn, without_bn) in run.values["mlp_start"].items():
        np.testing.assert_array_equal(with_bn, without_bn, err_msg=name)


@slow
def test_textbook_mlps_learn(run):
    v = run.values["mlp_results"]
    for label, accuracies in v["val"].items():
        floor = 0.8 if v["short"] else (0.95 if label == "with BN" else 0.9)
        assert accuracies[-1] > floor, f"{label}: validation accuracy {accuracies[-1]:.4f} is too low"


@slow
def test_a_bn_layer_trains_gamma_and_beta_and_keeps_the_moving_averages(run):
    assert run.values["bn_variables"] == (["gamma", "beta"], ["moving_mean", "moving_variance"])


# -- 5. batch normalization by hand -----------------------------------------------------------------


@slow
def test_tf_nn_and_the_formula_agree_with_keras_in_training_mode(run):
    v = run.values["by_hand_training"]
    np.testing.assert_allclose(v["tf_nn"], v["keras"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v["formula"], v["keras"], rtol=1e-4, atol=1e-5)
    assert v["mean"].shape == (5,)


@slow
def test_the_moving_averages_moved_once_and_normalize_at_inference(run):
    training = run.values["by_hand_training"]
    assert training["momentum"] == pytest.approx(0.9)
    np.testing.assert_allclose(training["moving_mean"], 0.1 * training["mean"], rtol=1e-5)
    np.testing.assert_allclose(training["moving_variance"], 0.9 + 0.1 * training["variance"], rtol=1e-5)
    v = run.values["by_hand_inference"]
    np.testing.assert_allclose(v["tf_nn"], v["keras"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v["formula"], v["keras"], rtol=1e-4, atol=1e-5)


# -- 6. convolutional and recurrent networks ---------------------------------------------------------


@slow
def test_conv_bn_keeps_one_mean_and_variance_per_channel(run):
    v = run.values["per_channel"]
    assert v["mean"] == v["gamma"] == (8,)
    np.testing.assert_allclose(v["formula"], v["keras"], rtol=1e-4, atol=1e-4)


@slow
def test_a_single_image_collapses_the_exercise_cnn(run):
    v = run.values["cnn_batch_of_one"]
    assert v["one_by_one"], "the exercise's CNN has convolutions with 1x1 feature maps"
    assert v["constant"] == [name.replace("conv", "bn") for name in v["one_by_one"]] + ["bn_dense"]
    assert len(v["alone"]) == 5 and all(np.allclose(logits, v["alone"][0]) for logits in v["alone"])


@slow
def test_layer_norm_gives_an_example_the_same_output_alone_and_in_a_batch(run):
    v = run.values["layer_norm"]
    np.testing.assert_allclose(v["in_batch"], v["alone"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(v["bn_in_batch"], v["bn_alone"], atol=1e-2), "batch normalization depends on the batch"


@slow
def test_the_recurrent_state_grows_after_the_blank_first_rows(run):
    step_std = run.values["rnn"]
    assert len(step_std) == 28
    assert step_std[14] > 2 * step_std[1], "the first rows of MNIST are (almost) blank: the state only grows later"


# -- 7. check yourself ---------------------------------------------------------------------------------


@slow
def test_a_batch_of_one_in_training_mode_outputs_beta(run):
    v = run.values["batch_of_one"]
    np.testing.assert_allclose(v["out"], v["beta"][None, :])


# -- 8. inside the exercise's network -----------------------------------------------------------------


@slow
def test_without_bn_the_signal_and_the_gradients_fade(run):
    v = run.values["cnn_records"]
    assert v["shrink"] > 1e3, "without BN the signal should fade layer after layer"
    assert len(v["bn_std"]) == 20
    assert all(0.5 < s <= 1.0 + 1e-3 for s in v["bn_std"]), "BN keeps every layer's spread near 1"
    assert v["bn_grad"] > 1e3 * v["plain_grad"], "without BN conv1 hardly gets a gradient"


# -- 9. why does it work ----------------------------------------------------------------------------


@slow
def test_noisy_batch_normalization_still_trains(run):
    assert run.values["noise"]["noisy_batch"] > 0.5, "noisy BN should still train"


# -- 10. batch size ----------------------------------------------------------------------------------


@slow
def test_small_batches_hurt_batch_normalization_not_layer_normalization(run):
    by = run.values["sweep"]
    assert sorted({size for _, size in by}) == [2, 8, 32, 128]
    assert by[("batch", 2)][1] > by[("batch", 32)][1], "population statistics from batches of 2 are further off"
    assert by[("batch", 2)][0] < by[("layer", 2)][0], "at batch size 2 layer normalization should win"


# -- 11. deployment ------------------------------------------------------------------------------------


@slow
def test_the_folded_cnn_computes_the_same_logits(run):
    v = run.values["folding"]
    unfolded, folded = v["unfolded"], v["folded"]
    assert unfolded.shape == (2000, 10)
    np.testing.assert_allclose(folded, unfolded, rtol=1e-3, atol=1e-3 * max(1.0, np.abs(unfolded).max()))
    assert (folded.argmax(axis=1) == unfolded.argmax(axis=1)).mean() > 0.99


@slow
def test_frozen_bn_layers_run_in_inference_mode_and_the_training_flag_does_not_survive(run):
    v = run.values["fine_tuning"]
    assert v["same"] and np.allclose(v["frozen_mean"], 0.0), "a frozen BN layer computes in inference mode"
    assert v["moved"], "a base called with training=False inside a model called with training=True updates its BN"
    assert v["kept"], "a frozen BN layer keeps its statistics"


@slow
def test_keras_and_pytorch_momentum_conventions_and_the_biased_variance(run):
    v = run.values["momentum_conventions"]
    np.testing.assert_allclose(v["keras"], v["torch"], rtol=1e-4)
    assert abs(v["moving_var"] - 2.0) < abs(v["moving_var"] - 4.0), "Keras averages the biased batch variance"


# -- the notebook as stored (no execution) ------------------------------------------------------------


def test_the_lesson_shows_what_it_computes_instead_of_asserting():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    asserting = [c.source for c in nb.cells if c.cell_type == "code" and re.search(r"\bassert", c.source)]
    assert not asserting, "the lesson prints what a run shows; the tests of this module guard it"


# -- section 8's initialization table and section 12, the backward pass ------------------------------


@slow
def test_he_and_glorot_are_trained_over_seeds_next_to_batch_normalization(run):
    from bnlab.gradients import SETTINGS

    rows = run.values["init_table"]
    seeds = sorted({row[1] for row in rows})
    assert len(seeds) >= 2 and len(rows) == len(seeds) * len(SETTINGS)
    assert {row[0] for row in rows} == set(SETTINGS)
    assert all(0.0 <= row[2] <= 1.0 and 0.0 <= row[3] <= 1.0 for row in rows)


@slow
def test_the_backward_pass_matches_finite_differences_and_the_tape(run):
    """The graph and the compact formula agree; both match finite differences at CS231n's float64 level
    (its upper end, 1e-8, up to a factor for a larger batch) and TensorFlow's autodiff to rounding."""
    from bnlab.grading.backward import relative_error

    values = run.values["backward_check"]
    for graph, compact in zip(values["graph"], values["compact"]):
        assert np.allclose(graph, compact, rtol=1e-12, atol=1e-12)
    for ours, finite, tape in zip(values["compact"], values["finite"], values["tape"]):
        assert relative_error(ours, finite) < 1e-7
        assert relative_error(ours, tape) < 1e-10


@slow
def test_the_gradient_sums_to_zero_and_is_orthogonal_to_x_hat_up_to_epsilon(run):
    values = run.values["backward_properties"]
    assert values["sums"] < 1e-12 * max(1.0, values["dx_max"])
    assert values["cosine"] <= values["eps_share"]


@slow
def test_scaling_the_weights_keeps_the_output_and_divides_the_gradient(run):
    for factor, change, ratio in run.values["weight_scale"]:
        assert change < 1e-5
        assert np.isclose(ratio, factor, rtol=1e-6)


@slow
def test_stopped_statistics_leave_the_directions_normalization_erases_in_the_gradient(run):
    (through, sums_through, cos_through), (stopped, sums_stopped, cos_stopped) = run.values["stopped_one_layer"]
    assert "through" in through and "stopped" in stopped
    assert sums_through < 1e-4 and cos_through < 1e-3
    assert sums_stopped > 1e-2 and cos_stopped > 1e-2
    assert [row[0] for row in run.values["stopped_cnn"]] == ["through the statistics", "statistics stopped"]
