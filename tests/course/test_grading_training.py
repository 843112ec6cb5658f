"""A passing check must mean the notebook's training works: every accepted alternative of the mutation
suite, and a sample of its bugs, run through the notebook's own training loop (``training.train``, a few
batches, with the notebook's ``build_network``, ``train_step`` and ``predict``).

Alternatives must train and evaluate with no symptom; each sampled bug must show, in that loop, the
defect its check reports (or crash it), so the checks' verdicts are about what the notebook really does."""

from __future__ import annotations

import numpy as np
import pytest
from submissions import ALTERNATIVES, BUGS, Variant

import bnlab
from bnlab import training
from bnlab.instructor.notebooks import code_cells
from bnlab.monitor import TrainingMonitor

tf = bnlab.tf
KERAS_CELLS = {"keras_layers", "keras_training"}
NN_CELLS = {"nn_layers"}
RUN_CELLS = {"keras": "keras_bn_run", "nn": "nn_bn_run"}
NUM_BATCHES = 3


@pytest.fixture(scope="module")
def mnist():
    from bnlab.data import load_mnist

    return load_mnist()


def _parts(variant: Variant) -> list:
    return [part for part, cells in (("keras", KERAS_CELLS), ("nn", NN_CELLS)) if set(variant.cells) & cells]


def _network_and_steps(variant: Variant, part: str) -> tuple:
    """The notebook's code (with the variant's answer cells) up to the training run of ``part``:
    (build function, train step, predict) exactly as that run passes them to ``training.train``."""
    namespace: dict = {"__name__": "__exercise__"}
    for grade_id, meta, source in code_cells(skip_training_runs=False):
        if grade_id == RUN_CELLS[part]:
            if part == "keras":
                return namespace["build_network"], namespace["train_step"], namespace["predict"]
            nn = namespace["nn"]
            return (
                (lambda: nn.Network(namespace["build_network_nn"])),
                namespace["train_step_nn"],
                namespace["predict_nn"],
            )
        if (
            meta.get("grade")
            or grade_id in set(RUN_CELLS.values())
            or grade_id in {"keras_baseline_run", "diagnose_symptom"}
        ):
            continue
        exec(variant.cells.get(grade_id, source), namespace)
    raise KeyError(RUN_CELLS[part])


def _statistics(model) -> list:
    return [np.array(v.numpy()) for v in model.variables if not v.trainable]


def symptoms(model, predict, images, start: dict) -> set:
    """What the trained network shows that batch normalization must not: weights that never learned (``start``:
    the trainable variables' values when built, by id), statistics never learned, statistics moved by evaluation,
    an image's logits that depend on the batch it is scored in."""
    found = set()
    kernels = [v for v in model.trainable_variables if len(v.shape) >= 2 and id(v) in start]
    if kernels and all(np.array_equal(np.asarray(v.numpy()), start[id(v)]) for v in kernels):
        found.add("no layer's weights moved")
    stats = _statistics(model)
    if stats and all(np.allclose(s, 0) or np.allclose(s, 1) for s in stats):
        found.add("statistics never learned")
    singles = np.concatenate([np.asarray(predict(model, tf.constant(images[i : i + 1]))) for i in range(4)])
    if any(not np.allclose(a, b) for a, b in zip(stats, _statistics(model))):
        found.add("statistics moved by predict")
    together = np.asarray(predict(model, tf.constant(images)))[:4]
    scale = float(np.max(np.abs(together))) + 1e-6
    if not np.allclose(singles, together, rtol=1e-3, atol=1e-3 * scale):
        found.add("an image scored alone gets other logits than inside a batch")
    return found


def run_loop(variant: Variant, part: str, mnist):
    build, train_step, predict = _network_and_steps(variant, part)
    start = {}

    def build_and_record():  # (a Part 2 network creates its variables in its first pass: none recorded)
        model = build()
        start.update({id(v): np.array(v.numpy()) for v in getattr(model, "trainable_variables", [])})
        return model

    results = training.train(
        build_and_record,
        train_step,
        predict,
        data=mnist,
        name=variant.name,
        num_batches=NUM_BATCHES,
        validation_size=250,
        refresh_batches=0,
        monitor=TrainingMonitor(total_batches=NUM_BATCHES, mode="silent"),
    )
    losses = [loss for loss, _ in results.batch_log]
    return results, predict, losses, start


TRAINED_ALTERNATIVES = [v for v in ALTERNATIVES if _parts(v)]


@pytest.mark.parametrize("variant", TRAINED_ALTERNATIVES, ids=lambda v: v.name)
def test_alternative_trains_in_the_notebooks_loop(variant: Variant, mnist):
    for part in _parts(variant):
        results, predict, losses, start = run_loop(variant, part, mnist)
        assert len(losses) == NUM_BATCHES and np.all(np.isfinite(losses)), losses
        assert np.isfinite(results.test_accuracy)
        assert symptoms(results.model, predict, mnist.test.images[:32], start) == set()


# each sampled bug, and what the notebook's own loop shows of it (None: the loop itself fails)
BUG_SYMPTOMS = {
    "keras_hard_coded_training_flag": "an image scored alone gets other logits than inside a batch",
    "keras_frozen_batch_norm": "statistics never learned",
    "keras_training_flag_never_set": "statistics never learned",
    "nn_batch_statistics_at_inference": "an image scored alone gets other logits than inside a batch",
    "nn_updates_during_inference": "statistics moved by predict",
    "keras_train_step_eager_only": None,
    "keras_gamma_starts_at_zero": "no layer's weights moved",
}


@pytest.mark.parametrize("name", sorted(BUG_SYMPTOMS))
def test_bug_shows_in_the_notebooks_loop(name, mnist):
    variant = next(v for v in BUGS if v.name == name)
    (part,) = _parts(variant)
    if BUG_SYMPTOMS[name] is None:
        with pytest.raises(Exception):
            run_loop(variant, part, mnist)
        return
    results, predict, losses, start = run_loop(variant, part, mnist)
    assert BUG_SYMPTOMS[name] in symptoms(results.model, predict, mnist.test.images[:32], start)


def test_every_trained_alternative_is_in_the_suite():
    names = {v.name for v in TRAINED_ALTERNATIVES}
    assert {"alt_keras_train_step_other_spelling", "alt_keras_train_step_apply_built_variables"} <= names
    assert len(TRAINED_ALTERNATIVES) >= 12
