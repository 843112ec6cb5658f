"""Batch normalization in plain NumPy: the one reference formula of the course.

The lesson shows it to students and the grader compares their layers with it. NumPy only (float64),
so it is independent of the TensorFlow code it checks.
"""

from __future__ import annotations

import numpy as np


def batch_norm_formula(x, gamma, beta, mean, variance, epsilon: float) -> np.ndarray:
    """``(x - mean) / sqrt(variance + epsilon) * gamma + beta``, in float64 with NumPy broadcasting.

    Args:
        x: the values to normalize, last axis the units or feature maps.
        gamma: the scale, one per unit (or a scalar).
        beta: the shift, one per unit (or a scalar).
        mean: the mean to subtract: the batch's in training, the population's at inference.
        variance: the variance to divide by (its square root, with ``epsilon``).
        epsilon: added to the variance before the square root.
    """
    x = np.asarray(x, dtype=np.float64)
    return (x - mean) / np.sqrt(np.asarray(variance, dtype=np.float64) + epsilon) * gamma + beta


def moments(x, axes) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (biased) variance of ``x`` over ``axes``, as ``tf.nn.moments`` computes them."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=tuple(axes)), x.var(axis=tuple(axes))
