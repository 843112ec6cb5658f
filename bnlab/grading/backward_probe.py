"""TensorFlow side of Part 4's check: the reference gradients, and the student's ``batchnorm_backward`` run on the
check's inputs within a time limit.

:func:`autodiff` is the checks' reference for batch normalization's backward pass in the notebook: TensorFlow's
autodiff of a forward pass in float64, correct or with one of Part 4's named mistakes. It is TensorFlow and not NumPy
on purpose: the checks compute it in the kernel, where TensorFlow is at hand, while Part 4's answer is graded from its
cell alone where TensorFlow cannot be imported (:func:`bnlab.grading.worker.main_part_4`, and the notebook's
``backward._check_alone``). So nothing in the library that an answer can call there returns batch normalization's
gradients. Where a notebook is graded, the checks judge in a process without TensorFlow, with the grader's own NumPy
reference (:data:`GRADER_REFERENCE`, not part of the library), which gives the same gradients.

:class:`BackwardProbe` calls the function on copies of the inputs the check drew and reports what it returned as
float64 arrays, or that it ran past :data:`TIME_LIMIT`. It judges nothing: the verdict is
:func:`bnlab.grading.backward.check_backward`'s. In the trusted re-run it runs in Part 4's own process.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import numpy as np

import bnlab

# Seconds one call of the student's function may take. The checks also call it on a layer of the network's size
# (backward.LAYER_SHAPES, 200,704 values), where an answer derived node by node takes 20 to 70 ms on the course's
# shared 2-core machine (load 5 to 8) and a finite-difference one needs two forward passes per value, of 10 to 45 ms
# each (hours one value at a time; 1,000 s or more even moving one value of every feature at once)
TIME_LIMIT = 10.0

# the forward passes the reference differentiates: the correct one and Part 4's mistakes (backward.DX_MISTAKES)
# {name: (statistics over the batch axis only, Bessel-corrected variance, mean held constant, variance held constant)}
FORWARDS = {
    "correct": (False, False, False, False),
    "no_mean_path": (False, False, True, False),
    "no_variance_path": (False, False, False, True),
    "no_statistics_path": (False, False, True, True),
    "batch_axis_only": (True, False, False, False),
    "bessel": (False, True, False, False),
}


# where the checks judge without TensorFlow (when a notebook is graded): the grader's NumPy reference, set there
GRADER_REFERENCE = None


def reference(dout, x, gamma, eps, variant: str = "correct") -> dict:
    """The checks' reference gradients: :func:`autodiff`, or where a notebook is graded the grader's NumPy one
    (:data:`GRADER_REFERENCE`), which gives the same ``{"dx", "dgamma", "dbeta"}``."""
    if GRADER_REFERENCE is not None:
        return GRADER_REFERENCE(dout, x, gamma, eps, variant)
    return autodiff(dout, x, gamma, eps, variant)


def autodiff(dout, x, gamma, eps, variant: str = "correct") -> dict:
    """TensorFlow's gradients of ``sum(dout * out)``, ``out`` training-mode batch normalization of ``x`` (float64),
    statistics over every axis but the last: ``{"dx", "dgamma", "dbeta"}``. ``variant`` (a key of :data:`FORWARDS`)
    differentiates a mistaken forward pass instead: a statistic held constant (``tf.stop_gradient``), statistics
    over the batch axis only, or the variance times ``count / (count - 1)``."""
    batch_axis_only, unbiased, hold_mean, hold_variance = FORWARDS[variant]
    tf = bnlab.tf
    x_t = tf.constant(np.asarray(x, dtype=np.float64))
    gamma_t = tf.constant(np.asarray(gamma, dtype=np.float64))
    beta_t = tf.zeros_like(gamma_t)
    axes = [0] if batch_axis_only else list(range(len(x_t.shape) - 1))
    with tf.GradientTape() as tape:
        tape.watch([x_t, gamma_t, beta_t])
        mean, variance = tf.nn.moments(x_t, axes=axes)
        if unbiased:
            count = int(np.prod([x_t.shape[a] for a in axes]))
            variance = variance * count / (count - 1)
        mean = tf.stop_gradient(mean) if hold_mean else mean
        variance = tf.stop_gradient(variance) if hold_variance else variance
        out = gamma_t * (x_t - mean) / tf.sqrt(variance + eps) + beta_t
    grads = tape.gradient(out, [x_t, gamma_t, beta_t], output_gradients=tf.constant(np.asarray(dout, np.float64)))
    return {k: g.numpy() for k, g in zip(("dx", "dgamma", "dbeta"), grads)}


class TooSlow(BaseException):
    """Raised in the student's function when it runs past its time limit (a BaseException, so that an
    ``except Exception`` in the answer does not swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`TooSlow` in the block once it has run ``seconds`` (wall time), by ``SIGALRM``; the signal's
    handler and timer are put back afterwards. Only the main thread receives signals: elsewhere there is no limit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TooSlow(seconds)

    start = time.monotonic()
    handler = signal.signal(signal.SIGALRM, expire)
    before = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if handler is None else handler)
        if before[0] > 0:  # a timer was set (pytest-timeout's, say): what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(before[0] - (time.monotonic() - start), 1e-3), before[1])


def _array(value):
    value = value.numpy() if hasattr(value, "numpy") else value
    return None if value is None else np.asarray(value, dtype=np.float64)


class BackwardProbe:
    """Runs ``fn(dout, x, gamma, eps)`` for at most ``limit`` seconds; :meth:`run` answers ``{"error", "answer",
    "slow"}`` (``"slow"``: the limit, when the function ran past it)."""

    def __init__(self, fn, limit: float = TIME_LIMIT):
        self.fn, self.limit = fn, limit

    def run(self, dout, x, gamma, eps) -> dict:
        inputs = [np.array(a, dtype=np.float64) for a in (dout, x, gamma)]
        report = {"error": None, "answer": None, "slow": None}
        start = time.monotonic()
        try:
            with time_limit(self.limit):
                result = self.fn(*[a.copy() for a in inputs], float(eps))
        except TooSlow:
            report["slow"] = self.limit
            return report
        except Exception as exc:  # noqa: BLE001 - the check reports it
            report["error"] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            return report
        if time.monotonic() - start > self.limit:  # (the answer caught TooSlow itself)
            report["slow"] = self.limit
            return report
        if isinstance(result, (tuple, list)):
            try:
                report["answer"] = [_array(v) for v in result]
            except (TypeError, ValueError) as exc:
                report["error"] = f"it returned values that are not arrays of numbers ({exc})"
        return report
