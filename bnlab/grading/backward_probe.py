"""TensorFlow side of Part 4's check: the student's ``batchnorm_backward`` run on the check's inputs.

:class:`BackwardProbe` calls the function on copies of the inputs the check drew and reports what it returned
as float64 arrays, with TensorFlow's autodiff of the same forward pass beside it in the notebook's kernel. It judges
nothing: the verdict is :func:`bnlab.grading.backward.check_backward`'s (NumPy only). In the trusted re-run it runs
without autodiff in Part 4's own process (:func:`bnlab.grading.worker.main_part_4`), where TensorFlow cannot be
imported.
"""

from __future__ import annotations

import numpy as np

import bnlab


def autodiff(dout, x, gamma, eps) -> dict:
    """TensorFlow's gradients of ``sum(dout * batch_norm(x))`` in float64: ``{"dx", "dgamma", "dbeta"}``."""
    tf = bnlab.tf
    x_t = tf.constant(np.asarray(x, dtype=np.float64))
    gamma_t = tf.constant(np.asarray(gamma, dtype=np.float64))
    beta_t = tf.zeros_like(gamma_t)
    with tf.GradientTape() as tape:
        tape.watch([x_t, gamma_t, beta_t])
        mean, variance = tf.nn.moments(x_t, axes=list(range(len(x_t.shape) - 1)))
        out = gamma_t * (x_t - mean) / tf.sqrt(variance + eps) + beta_t
    grads = tape.gradient(out, [x_t, gamma_t, beta_t], output_gradients=tf.constant(np.asarray(dout, np.float64)))
    return {k: g.numpy() for k, g in zip(("dx", "dgamma", "dbeta"), grads)}


def _array(value):
    value = value.numpy() if hasattr(value, "numpy") else value
    return None if value is None else np.asarray(value, dtype=np.float64)


class BackwardProbe:
    """Runs ``fn(dout, x, gamma, eps)``; :meth:`run` answers ``{"error", "answer", "autodiff"}`` (``"autodiff"``
    None when built with ``with_autodiff=False``)."""

    def __init__(self, fn, with_autodiff: bool = True):
        self.fn, self.with_autodiff = fn, with_autodiff

    def run(self, dout, x, gamma, eps) -> dict:
        inputs = [np.array(a, dtype=np.float64) for a in (dout, x, gamma)]
        report = {
            "error": None,
            "answer": None,
            "autodiff": autodiff(*inputs, float(eps)) if self.with_autodiff else None,
        }
        try:
            result = self.fn(*[a.copy() for a in inputs], float(eps))
        except Exception as exc:  # noqa: BLE001 - the check reports it
            report["error"] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            return report
        if isinstance(result, (tuple, list)):
            try:
                report["answer"] = [_array(v) for v in result]
            except (TypeError, ValueError) as exc:
                report["error"] = f"it returned values that are not arrays of numbers ({exc})"
        return report
