"""The grader's NumPy reference for batch normalization's backward pass, in nbgrader's process.

The checks' reference is TensorFlow's autodiff (:func:`bnlab.grading.backward_probe.autodiff`) wherever a student's
kernel runs them. nbgrader's process, where the trusted re-run judges, does not load TensorFlow: importing it there
would add about 1 GiB to every submission's memory, next to the kernel and the re-run's processes, under the same
limit (``make autograde``'s per-submission memory). There :func:`install` (called when the re-run's
parent side, :mod:`bnlab.instructor.preprocessors.remote`, is imported) makes the checks use :func:`differences`
instead. This module is
instructor-side: it is not in the students' bundle, so no answer can call it.
"""

from __future__ import annotations

import numpy as np

from bnlab.grading import backward_probe
from bnlab.grading.backward_probe import FORWARDS

DIFFERENCE_STEP = 1e-5


def _groups(x, batch_axis_only: bool):
    """``x`` as (values in a statistics group, groups): a column per feature, or per position and feature for the
    variant whose statistics are taken over the batch axis only."""
    return x.reshape(x.shape[0], -1) if batch_axis_only else x.reshape(-1, x.shape[-1])


def differences(dout, x, gamma, eps, variant: str = "correct", step: float = DIFFERENCE_STEP) -> dict:
    """Centred finite differences of ``sum(dout * out)``, ``out`` training-mode batch normalization of ``x``
    (forward pass ``variant``, a key of :data:`~bnlab.grading.backward_probe.FORWARDS`): ``{"dx", "dgamma",
    "dbeta"}`` in float64, as :func:`~bnlab.grading.backward_probe.autodiff` returns them.

    Each value of ``x`` is moved by ``+-step`` and the forward pass evaluated again. The values of a statistics
    group are independent of the other groups, and the group's loss ``gamma * sum(dout * (x - mean)) /
    sqrt(var + eps)`` is a function of four sums over the group (of ``dout * x``, ``dout``, ``x`` and ``x**2``),
    so the forward pass at every moved value is evaluated at once from those sums moved by that one value: the
    cost is a few passes over ``x``, also at a layer's size."""
    batch_axis_only, unbiased, hold_mean, hold_var = FORWARDS[variant]
    dout, x, gamma = (np.asarray(a, dtype=np.float64) for a in (dout, x, gamma))
    lead = tuple(range(x.ndim - 1))
    cols, douts = _groups(x, batch_axis_only), _groups(dout, batch_axis_only)
    cols = cols - cols.mean(axis=0)  # (the loss does not change when a group is shifted: sums of small values)
    n = cols.shape[0]
    g = _groups(np.broadcast_to(gamma, x.shape), batch_axis_only)[0]
    s_dx, s_d, s_x, s_xx = (douts * cols).sum(0), douts.sum(0), cols.sum(0), (cols * cols).sum(0)
    mean0, var0 = s_x / n, s_xx / n - (s_x / n) ** 2
    correction = n / (n - 1) if unbiased else 1.0

    def loss(h, gain=g):
        """The group's loss with each value moved by ``h`` in turn (one loss per value): shape of ``cols``."""
        moved_x = s_x + h
        mean = mean0 if hold_mean else moved_x / n
        var = var0 if hold_var else (s_xx + 2 * cols * h + h * h) / n - (moved_x / n) ** 2
        return gain * (s_dx + douts * h - mean * s_d) / np.sqrt(var * correction + eps)

    dx = ((loss(step) - loss(-step)) / (2 * step)).reshape(x.shape)
    by_group = (loss(0.0, g + step) - loss(0.0, g - step))[0] / (2 * step)
    dgamma = by_group.reshape(-1, x.shape[-1]).sum(axis=0)  # a feature's groups (one per position, or just one)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dout.sum(axis=lead)}  # out + beta: d/dbeta is exact


def install() -> None:
    """Make the checks in this process take their reference gradients from :func:`differences`."""
    backward_probe.GRADER_REFERENCE = differences
