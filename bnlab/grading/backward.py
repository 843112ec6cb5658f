"""Part 4's checks: a student's NumPy ``batchnorm_backward`` judged against TensorFlow's autodiff.

The contract (stated in the exercise): ``batchnorm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta)``
for training-mode batch normalization ``out = gamma * (x - mean) / sqrt(var + eps) + beta``, the mean and
the (biased) variance taken over every axis but the last: the batch for a dense layer's ``(N, D)``
activations, batch and positions for a convolution's ``(N, H, W, C)`` feature maps.

The check draws the inputs itself (from its seed, mixed with the test cell's secret salt in the trusted re-run):
small ones, then once inputs of a layer of the network's size (:data:`LAYER_SHAPES`). It runs the student's function
through a probe (:mod:`bnlab.grading.backward_probe`), which stops it past a time limit, and compares its answer with
TensorFlow's autodiff of the forward pass in float64 (:func:`bnlab.grading.backward_probe.autodiff`), computed here,
in the process that judges. In the trusted re-run the probe is Part 4's own process
(:func:`bnlab.grading.worker.main_part_4`): it runs only the answer cell, where TensorFlow cannot be imported, on the
arrays drawn here, and reports only what the function returned. There is no backward pass in the library that an
answer could call there: a wrong answer is named by differentiating, the same way, forward passes that contain the
mistake (the mean or the variance held constant, the statistics over the batch axis only, the Bessel-corrected
variance) and finding the one the answer matches. A backward pass by finite differences is right on small inputs but
runs past the time limit on the layer's.
"""

from __future__ import annotations

import builtins
import linecache

import numpy as np

from bnlab.exercise import BATCH_SIZE, conv_output_shape
from bnlab.grading.backward_probe import TIME_LIMIT, reference
from bnlab.grading.checks import _judged, _name_of, _remote
from bnlab.grading.errors import fail
from bnlab.grading.numeric import generator

TOLERANCE = 1e-4  # relative (norm) error a float64 or float32 answer stays within; the mistakes differ by >1%
# Part 4 is graded from its answer cell alone, where these cannot be imported (bnlab.grading.worker.main_part_4)
AUTODIFF_PACKAGES = ("tensorflow", "keras", "tf_keras", "jax", "torch")
NUMPY_ONLY = "TensorFlow cannot be imported in Part 4: write the backward pass with NumPy, node by node"
# The inputs of a layer of the network's size: what batch normalization gets at the network's first conv layer,
# conv_layer(images, 1), for a training batch of 64 (64 x 28 x 28 positions of 4 feature maps, 200,704 values); the
# dense check gets the same statistics as a dense batch, one row per position. The network's own dense layer (64
# rows of 100 units) is too small to tell a derived backward pass from a finite-difference one: moving one row of
# every unit at once takes 128 forward passes of 6,400 values, well under a second. With 50,176 rows any
# finite-difference pass needs at least 100,352 forward passes of 200,704 values (over 1,000 s), a derived one
# milliseconds
_CONV_LAYER = conv_output_shape(1, BATCH_SIZE)
LAYER_SHAPES = {"conv": _CONV_LAYER, "dense": (int(np.prod(_CONV_LAYER[:-1])), _CONV_LAYER[-1])}


def draw(kind: str, seed: int, layer: bool = False) -> tuple:
    """``(dout, x, gamma, eps)`` for a check: shapes, offsets and scales drawn from ``seed`` (mixed with the salt of
    :func:`bnlab.grading.numeric.salted`); with ``layer``, of the shape :data:`LAYER_SHAPES` gives ``kind``."""
    if kind not in LAYER_SHAPES:
        raise ValueError("kind must be 'dense' or 'conv'")
    rng = generator((2000 if layer else 1000) + seed)
    shape = (int(rng.integers(6, 11)), int(rng.integers(3, 7)))
    if kind == "conv":
        shape = (int(rng.integers(3, 6)), int(rng.integers(3, 5)), int(rng.integers(3, 5)), int(rng.integers(2, 5)))
    if layer:
        shape = LAYER_SHAPES[kind]
    channels = shape[-1]
    x = rng.uniform(-2.0, 2.0, channels) + rng.uniform(0.5, 3.0, channels) * rng.standard_normal(shape)
    gamma = rng.uniform(0.5, 2.0, channels) * rng.choice([-1.0, 1.0], channels)
    eps = float(rng.choice([1e-3, 1e-5]))
    return rng.standard_normal(shape), x, gamma, eps


def relative_error(a, b) -> float:
    """The largest entry of ``|a - b| / max(1e-8, |a| + |b|)`` (CS231n's relative error)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def agrees(a, b, tol: float = TOLERANCE) -> bool:
    """Same shape, finite, and ``|a - b| <= tol * |b|`` (norms: robust to float32 and to entries near 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return False
    return float(np.linalg.norm(a - b)) <= tol * float(np.linalg.norm(b)) + 1e-12


def _probe(fn):
    session = _remote(fn)
    if session is not None:
        return session.probe("backward", fn)
    from bnlab.grading import backward_probe

    return backward_probe.BackwardProbe(fn)


DX_MISTAKES = {
    "no_mean_path": "dx leaves out the path through the batch mean: every input moves the mean, and the mean "
    "moves every output of its feature (the term with the sum of dxhat over the batch).",
    "no_variance_path": "dx leaves out the path through the batch variance: every input moves the variance, "
    "and the variance scales every output of its feature (the term with x_hat times the sum of dxhat * x_hat).",
    "no_statistics_path": "dx treats the batch mean and variance as constants (dx = dout * gamma / sigma): "
    "the paths through both statistics are missing.",
    "batch_axis_only": "dx takes its sums over the batch axis only: for (N, H, W, C) feature maps the mean "
    "and the variance, and so every sum of the backward pass, run over batch and positions (all axes but the "
    "last).",
    "bessel": "dx uses the Bessel-corrected variance (dividing by count - 1): batch normalization normalizes "
    "with the biased variance of the batch, dividing by the count.",
}


@_judged
def check_backward(batchnorm_backward, kind: str = "dense", seed: int = 0) -> None:
    """``batchnorm_backward(dout, x, gamma, eps)`` returns ``(dx, dgamma, dbeta)`` of training-mode batch
    normalization for ``kind`` ``"dense"`` ``(N, D)`` or ``"conv"`` ``(N, H, W, C)`` inputs that the check
    draws from ``seed``: small ones, then once those of a layer of the network's size (:data:`LAYER_SHAPES`), each
    call within :data:`bnlab.grading.backward_probe.TIME_LIMIT` seconds; compared with TensorFlow's autodiff
    (float64)."""
    __tracebackhide__ = True
    name = _name_of(batchnorm_backward, "batchnorm_backward")
    probe = _probe(batchnorm_backward)
    inputs = draw(kind, seed)
    answer = _judge(probe.run(*inputs), name, kind, inputs)
    layer = draw(kind, seed, layer=True)
    _judge(probe.run(*layer), name, kind, layer, "the size of the network's first conv layer for a batch of 64")
    if _remote(batchnorm_backward) is None:  # in the notebook: would it also pass from its own cell alone?
        _check_alone(batchnorm_backward, name, inputs, answer)


def _judge(report: dict, name: str, kind: str, inputs: tuple, size: str = "") -> tuple:
    """Fail unless the probe's ``report`` on ``inputs`` holds the right ``(dx, dgamma, dbeta)``, which it returns;
    ``size`` says what the inputs' size is (for the message of a function that ran past the time limit)."""
    __tracebackhide__ = True
    dout, x, gamma, eps = inputs
    if report.get("undefined"):
        fail(f"{name} could not be run: {report['undefined']}.", "backward")
    if report.get("slow"):
        fail(
            f"{name} took more than {TIME_LIMIT:g} s on inputs of shape {x.shape} ({x.size:,} values"
            + (f", {size}" if size else "")
            + "). A backward pass by finite differences costs two forward passes per input value "
            f"({2 * x.size:,} forward passes here); derive the gradient node by node instead, which takes "
            "milliseconds.",
            "backward",
        )
    if report.get("error"):
        fail(f"{name} raised an error on inputs of shape {x.shape}: {report['error']}", "backward")
    got = report["answer"]
    if not isinstance(got, (list, tuple)) or len(got) != 3 or any(v is None for v in got):
        fail(f"{name} must return three arrays, (dx, dgamma, dbeta), as the task states.", "backward")
    dx, dgamma, dbeta = (np.asarray(v, dtype=np.float64) for v in got)
    per = "feature" if kind == "dense" else "feature map (last axis)"
    if dx.shape != x.shape:
        fail(f"{name}: dx has shape {dx.shape}, the input {x.shape}: dx has one entry per input.", "backward")
    for label, value in (("dgamma", dgamma), ("dbeta", dbeta)):
        if value.shape != gamma.shape:
            fail(
                f"{name}: {label} has shape {value.shape} for inputs of shape {x.shape}: it needs one entry per "
                f"{per}, a sum over every other axis (batch and positions for feature maps).",
                "backward",
            )
    expected = reference(dout, x, gamma, eps)
    if not agrees(dx, expected["dx"]):
        for variant, message in DX_MISTAKES.items():
            if agrees(dx, reference(dout, x, gamma, eps, variant)["dx"], 1e-3):
                fail(f"{name}: {message}", "backward")
        if agrees(dx, reference(dout, x, np.ones_like(gamma), eps)["dx"], 1e-3):
            fail(f"{name}: dx leaves out gamma: the gradient that reaches x_hat is gamma * dout.", "backward")
        fail(
            f"{name}: dx differs from TensorFlow's gradient of the forward pass (largest relative error "
            f"{relative_error(dx, expected['dx']):.1e}). Follow the computational graph node by node: x_hat, "
            "then the variance, then the mean, each one's gradient summed over the axes it was taken over.",
            "backward",
        )
    if not agrees(dgamma, expected["dgamma"]):
        lead = tuple(range(x.ndim - 1))
        hint = ""
        if agrees(dgamma, (np.asarray(dout) * x).sum(axis=lead), 1e-3):
            hint = " It multiplies dout by the raw input: gamma scales the normalized input x_hat."
        fail(f"{name}: dgamma is not the sum of dout * x_hat over every axis but the last.{hint}", "backward")
    if not agrees(dbeta, expected["dbeta"]):
        fail(
            f"{name}: dbeta is not the sum of dout over every axis but the last (beta is added to every output).",
            "backward",
        )
    return dx, dgamma, dbeta


_ALONE: list = []  # the check running a cell alone (so that a check called from that cell does not run it again)


def _numpy_only_import(module, *args, **kwargs):
    if module.partition(".")[0] in AUTODIFF_PACKAGES:
        raise ModuleNotFoundError(NUMPY_ONLY, name=module)
    return builtins.__import__(module, *args, **kwargs)


def _check_alone(fn, name: str, inputs: tuple, answer: tuple) -> None:
    """In the notebook's kernel: run ``fn``'s cell again on its own, as Part 4 is graded (no other cell, no
    TensorFlow), and fail where the function it defines there does not give ``answer`` on ``inputs``. As there, an
    error in the cell after the function is defined does not matter. Nothing to do for a function not defined in a
    notebook cell, or while the cell runs alone (a check called from the cell itself)."""
    __tracebackhide__ = True
    code = getattr(fn, "__code__", None)
    cell = linecache.cache.get(code.co_filename) if code is not None else None
    if not cell or cell[1] is not None or _ALONE:  # IPython keeps a cell's source with no time stamp, a file has one
        return
    namespace = {"__name__": "__main__", "__builtins__": {**vars(builtins), "__import__": _numpy_only_import}}
    alone = "on its own, as it is graded: its cell runs without the notebook's other cells, and without TensorFlow"
    _ALONE.append(name)
    try:
        try:
            exec(compile("".join(cell[2]), code.co_filename, "exec"), namespace)  # noqa: S102 - the student's cell
        except Exception as exc:  # noqa: BLE001 - as in the graded run: only the function counts
            stopped = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        else:
            stopped = None
        try:
            again = namespace[fn.__name__](*[np.array(a, dtype=np.float64) for a in inputs[:3]], float(inputs[3]))
            same = len(again) == 3 and all(agrees(np.asarray(a, np.float64), b, 1e-6) for a, b in zip(again, answer))
        except Exception as exc:  # noqa: BLE001 - what stops it is the message
            why = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            if isinstance(exc, KeyError) and stopped:
                why = f"the cell stopped with {stopped} before it defined {fn.__name__}"
            fail(f"{name} passes here but fails {alone}: {why}", "backward")
    finally:
        _ALONE.clear()
    if not same:
        fail(f"{name} passes here but gives another answer {alone}.", "backward")
