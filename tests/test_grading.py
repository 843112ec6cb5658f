"""The grading checks on the solution, on known-buggy answers and on accepted alternatives,
run in-process on the answer cells of the source notebook (fast; the nbgrader pipeline runs the
same submissions in tests/test_pipeline.py)."""
from __future__ import annotations

import numpy as np
import pytest

import bnlab
from bnlab import grading
from bnlab.exercise import code_cells
from submissions import ALL_TESTS, ALTERNATIVES, BUGS, Variant


def grade_in_process(replacements: dict) -> dict:
    """Execute the notebook's code (training runs skipped) with some answer cells replaced.
    Returns ``{test grade_id: None if passed else the AssertionError message}``."""
    namespace: dict = {}
    results = {}
    for grade_id, meta, source in code_cells():
        source = replacements.get(grade_id, source)
        if meta.get("grade"):
            try:
                exec(source, namespace)
                results[grade_id] = None
            except AssertionError as exc:
                results[grade_id] = str(exc)
        else:
            exec(source, namespace)
    return results


def test_solution_passes_every_check():
    results = grade_in_process({})
    assert set(results) == ALL_TESTS
    assert {k: v for k, v in results.items() if v} == {}


@pytest.mark.parametrize("variant", BUGS, ids=lambda v: v.name)
def test_bug_loses_points_on_the_test_that_names_it(variant: Variant):
    results = grade_in_process(variant.cells)
    failed = {k for k, v in results.items() if v}
    assert failed == set(variant.fails), {k: results[k] for k in failed ^ set(variant.fails)}


@pytest.mark.parametrize("variant", ALTERNATIVES, ids=lambda v: v.name)
def test_alternative_gets_full_marks(variant: Variant):
    results = grade_in_process(variant.cells)
    assert {k: v for k, v in results.items() if v} == {}


def test_messages_name_the_bug():
    expectations = {
        "keras_training_flag_never_set": ("test_keras_train_step", "training=True"),
        "keras_predict_with_batch_statistics": ("test_keras_predict", "training=False"),
        "keras_momentum_wrong_way_round": ("test_keras_fc_population", "wrong way round"),
        "nn_no_population_update": ("test_nn_fc_population", "never changed"),
        "nn_decay_wrong_way_round": ("test_nn_conv_population", "wrong way round"),
        "nn_batch_statistics_at_inference": ("test_nn_conv_inference_output", "batch of one"),
        "nn_variance_instead_of_standard_deviation": ("test_nn_fc_training_output", "sqrt(variance + epsilon)"),
        "nn_population_statistics_trainable": ("test_nn_fc_variables", "must not be trainable"),
        "nn_updates_during_inference": ("test_nn_fc_inference_output", "changed in inference mode"),
        "nn_conv_moments_over_batch_axis_only": ("test_nn_conv_population", "axes"),
        "keras_conv_statistics_wrong_axis": ("test_keras_conv_structure", "per feature map"),
        "keras_no_batch_norm": ("test_keras_fc_structure", "no tf.keras.layers.BatchNormalization"),
    }
    by_name = {v.name: v for v in BUGS}
    for name, (test_id, phrase) in expectations.items():
        message = grade_in_process(by_name[name].cells)[test_id]
        assert message and phrase in message, (name, message)


def test_wrong_signature_gets_a_clear_message():
    def fully_connected(prev_layer):  # forgot num_units
        return prev_layer

    with pytest.raises(AssertionError, match="signature"):
        grading.check_structure(fully_connected, "dense", api="keras")


def test_population_check_reports_inferred_momentum():
    keras = bnlab.tf.keras

    def fully_connected(prev_layer, num_units):
        x = keras.layers.Dense(num_units, use_bias=False)(prev_layer)
        return keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.95)(x))

    found = grading.check_population_statistics(fully_connected, "dense", api="keras")
    assert found["momentum"] == pytest.approx(0.95, abs=1e-3)


def test_infer_momentum_solves_the_update():
    before, batch = np.array([0.0, 1.0]), np.array([2.0, 3.0])
    after = 0.9 * before + 0.1 * batch
    assert grading._infer_momentum(before, after, batch) == pytest.approx(0.9)
    assert grading._infer_momentum(before, after, before) is None
