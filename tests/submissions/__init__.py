"""The exercise's mutation suite: submissions the grader must judge right, kept with the exercise.

Each :class:`Variant` is ``{answer cell grade_id: source}`` to put in place of the solution's answer
cells, plus the graded test cells that must fail (all others must pass):

- ``BUGS``: wrong answers, one mistake each; each must lose the points of the tests that name it;
- ``ALTERNATIVES``: other correct answers a student could write; each must get full marks;
- ``TAMPERING``: answer cells that try to talk the grader out of its verdict; each must earn only
  what its real answers earn (nothing, for most).

``tests/test_grading.py`` runs BUGS and ALTERNATIVES in-process; ``tests/test_integrity.py`` runs
TAMPERING through the trusted re-verification; the slow pipeline tests grade a subset with nbgrader.
"""

from __future__ import annotations

from submissions.backward_part import BACKWARD_ALTERNATIVES, BACKWARD_BUGS
from submissions.common import ALL_TESTS, KERAS_LAYER_TESTS, NN_TESTS, Variant, nn_tests
from submissions.keras_part import KERAS_ALTERNATIVES, KERAS_BUGS
from submissions.nn_part import NN_ALTERNATIVES, NN_BUGS
from submissions.tampering import TAMPERING

BUGS = KERAS_BUGS + NN_BUGS + BACKWARD_BUGS
ALTERNATIVES = KERAS_ALTERNATIVES + NN_ALTERNATIVES + BACKWARD_ALTERNATIVES

# a representative subset for the (slow) nbgrader pipeline: one bug of every kind of check
PIPELINE_BUGS = [
    v
    for v in BUGS
    if v.name
    in {
        "keras_no_batch_norm",
        "keras_no_relu",
        "keras_loss_from_inference_pass",
        "keras_momentum_wrong_way_round",
        "q_single_images_wrong_option",
        "diagnose_left_unfixed",
        "nn_stop_gradient_on_batch_statistics",
        "nn_accumulates_statistics_of_another_tensor",
        "nn_numpy_on_tensors",
        "nn_updates_during_inference",
        "nn_batch_statistics_at_inference",
        "nn_population_statistics_trainable",
        "keras_hard_coded_training_flag",
        "bw_no_variance_path",
    }
]
PIPELINE_ALTERNATIVES = [
    v
    for v in ALTERNATIVES
    if v.name
    in {
        "alt_keras_nested_sequential_block",
        "alt_keras_train_step_decorated",
        "alt_nn_bessel_corrected_population_variance",
        "alt_nn_relu_first_by_hand_tf_cond_decay_0_9",
        "alt_keras_train_step_apply_built_variables",
    }
]

__all__ = [
    "ALL_TESTS",
    "ALTERNATIVES",
    "BUGS",
    "TAMPERING",
    "PIPELINE_BUGS",
    "PIPELINE_ALTERNATIVES",
    "Variant",
    "KERAS_LAYER_TESTS",
    "NN_TESTS",
    "nn_tests",
]
