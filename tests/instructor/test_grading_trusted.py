"""The new classes of the mutation suite (a training flag fixed in a layer, a frozen layer, a train_step
that ignores the run's optimizer, Keras 3's optimizer.apply) judged the same way by the trusted
re-verification, whose probes run in a worker process, as by the kernel."""

from __future__ import annotations

from submissions import ALTERNATIVES, BUGS
from test_integrity import _by_name, combine, failed, trusted_verdicts


def test_trusted_rerun_agrees_on_the_notebooks_own_calls():
    cells, fails = combine(
        *_by_name(["keras_hard_coded_training_flag", "keras_train_step_own_optimizer", "diagnose_frozen"], BUGS)
    )
    verdicts = trusted_verdicts(cells)
    assert failed(verdicts) == fails, verdicts
    assert "training flag fixed inside" in verdicts["test_keras_conv_outputs"]
    assert "optimizer it is given" in verdicts["test_keras_train_step"]
    assert "trainable=False" in verdicts["test_diagnose_fix"]


def test_trusted_rerun_accepts_keras_3_spellings():
    cells, _ = combine(
        *_by_name(["alt_keras_explicit_last_axis", "alt_keras_train_step_apply_built_variables"], ALTERNATIVES)
    )
    assert failed(trusted_verdicts(cells)) == set()


def test_trusted_rerun_agrees_on_networks_that_cannot_learn():
    """The checks that see a network that cannot learn (gamma at zero, cached layers, misshapen variables, moments
    over every axis, statistics that barely move) give the kernel's verdicts in the re-run too, and its valid
    neighbours pass there."""
    for names in (
        ["keras_layers_cached_across_calls", "nn_variables_shape_1_by_c", "diagnose_momentum_barely_moves"],
        ["keras_gamma_starts_at_zero", "nn_conv_moments_over_all_four_axes"],
    ):
        cells, fails = combine(*_by_name(names, BUGS))
        assert failed(trusted_verdicts(cells)) == fails, names
    valid = ["alt_keras_explicit_initializers_momentum_0_999", "alt_nn_decay_0_999", "alt_diagnose_momentum_0_999"]
    cells, _ = combine(*_by_name(valid, ALTERNATIVES))
    assert failed(trusted_verdicts(cells)) == set()
