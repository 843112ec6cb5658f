"""bnlab.training.adam.FusedAdam offers what a Keras 3 train_step may call: apply_gradients and apply."""

from __future__ import annotations

import numpy as np
import pytest

import bnlab
from bnlab.training.adam import FusedAdam

tf = bnlab.tf


def _variables():
    return [tf.Variable([1.0, -2.0]), tf.Variable([[0.5], [3.0]])]


GRADS = [tf.constant([0.1, -0.3]), tf.constant([[2.0], [-1.0]])]


def _after(step) -> list:
    variables = _variables()
    optimizer = FusedAdam(0.01)
    optimizer.build(variables)
    tf.function(lambda: step(optimizer, variables))()  # traced, as the training run calls a train_step
    assert int(optimizer.iterations) == 1
    return [v.numpy() for v in variables]


def test_apply_is_apply_gradients():
    expected = _after(lambda opt, vs: opt.apply_gradients(zip(GRADS, vs)))
    for step in (lambda opt, vs: opt.apply(GRADS, vs), lambda opt, vs: opt.apply(GRADS)):
        for ours, theirs in zip(_after(step), expected):
            np.testing.assert_array_equal(ours, theirs)
    assert not np.allclose(expected[0], [1.0, -2.0])


def test_apply_with_the_wrong_number_of_gradients_says_so():
    variables = _variables()
    optimizer = FusedAdam(0.01)
    optimizer.build(variables)
    with pytest.raises(ValueError, match="1 gradients for 2 variables"):
        optimizer.apply(GRADS[:1])
