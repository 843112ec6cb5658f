"""Population statistics for inference, recomputed after training with the weights frozen.

During training a batch-normalized network keeps its population statistics as a moving average,
``pop = pop * decay + batch * (1 - decay)``. With decay 0.99 that average still carries the
statistics of the weights of the last ~100 steps, weights that Adam has moved since.

Ioffe & Szegedy (2015, Algorithm 2) compute the inference statistics after training, as the
average over training mini-batches of the batch statistics. :func:`refresh_population_statistics`
does that *through the student's own code*: it runs the student's ``train_step`` with the learning
rate set to 0 (the weights do not move) and reads what their update did to each non-trainable
variable. From a start at 0 the update leaves ``(1 - decay) * batch``; from a start at 1 it leaves
``decay + (1 - decay) * batch``; the two give ``decay`` and then each batch's statistic. The
refreshed value is the average of those statistics: what the student's own moving average would
converge to if the weights stopped changing. An update that does not happen (a ``train_step``
that does not train the normalization) stays not happening: such variables are left as they were.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

import bnlab

tf = bnlab.tf


def population_variables(model) -> list:
    """The floating-point non-trainable variables of a Keras model or ``tf.Module``."""
    if hasattr(model, "non_trainable_variables"):
        variables = list(model.non_trainable_variables)
    else:
        variables = [v for v in model.variables if not v.trainable]
    return [v for v in variables if np.dtype(_dtype(v)).kind == "f"]


def _dtype(variable):
    dtype = variable.dtype
    return getattr(dtype, "as_numpy_dtype", dtype)


def refresh_population_statistics(
    model, step: Callable[[int], object], optimizer, batches: int, tolerance: float = 1e-3
) -> dict:
    """Set the population statistics of ``model`` to the average batch statistics of ``batches`` batches.

    ``step(i)`` runs the student's training step on the ``i``-th refresh batch (the same batch
    each time it is called with the same ``i``); ``optimizer``'s learning rate is 0 meanwhile, so
    the weights stay as trained. Returns ``{"refreshed": n, "kept": m, "decay": [...]}``: how many
    variables were set, how many were left as trained (no linear moving-average update seen).
    """
    variables = population_variables(model)
    if batches <= 0 or not variables:
        return {"refreshed": 0, "kept": len(variables), "decay": []}
    trained = [v.numpy() for v in variables]
    learning_rate = float(np.asarray(optimizer.learning_rate))
    fill_fn = tf.function(lambda value: [v.assign(tf.fill(tf.shape(v), tf.cast(value, v.dtype))) for v in variables])

    def fill(value: float):  # one trace for every value
        return fill_fn(tf.constant(value, tf.float32))

    read = tf.function(lambda: [tf.identity(v) for v in variables])
    optimizer.learning_rate = 0.0
    try:
        fill(0.0)
        step(0)
        from_zero = [t.numpy() for t in read()]
        fill(1.0)
        step(0)
        from_one = [t.numpy() for t in read()]
        decays, usable = [], []
        for zero, one in zip(from_zero, from_one):
            d = one - zero
            decay = float(np.mean(d)) if d.size else 1.0
            ok = (
                np.all(np.isfinite(d))
                and 0.0 <= decay < 1.0 - tolerance
                and float(np.max(np.abs(d - decay), initial=0.0)) < tolerance
            )
            decays.append(decay)
            usable.append(ok)
        sums = [tf.constant(z) for z in from_zero]
        for i in range(1, batches):  # the sums stay on the device: one call to read them per batch
            fill(0.0)
            step(i)
            sums = [total + value for total, value in zip(sums, read())]
    finally:
        optimizer.learning_rate = learning_rate
        for v, value in zip(variables, trained):
            v.assign(value)
    for v, total, decay, ok in zip(variables, sums, decays, usable):
        if ok:
            v.assign((total.numpy() / (batches * (1.0 - decay))).astype(_dtype(v)))
    return {"refreshed": sum(usable), "kept": len(usable) - sum(usable), "decay": [round(d, 6) for d in decays]}
