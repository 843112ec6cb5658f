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
