"""NumPy-only helpers of the checks: test inputs and the reference forward pass.

Nothing here imports TensorFlow or runs student code, so the trusted re-verification
computes every reference in a process the student's code never ran in. Batch normalization's gradients are not
here: the checks take them from TensorFlow's autodiff (:func:`bnlab.grading.backward_probe.autodiff`), which Part 4's
answer cannot import where it is graded.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import numpy as np

from bnlab.reference import batch_norm_formula

# The checks probe a layer with what the exercise's network feeds it (bnlab.exercise): a training batch of 64 float32
# activations after a ReLU, shaped as the layer's real call. conv_layer(prev, depth) for depth 1..19 on 28x28x1
# images gets (depth - 1) * 4 feature maps (1 for depth 1), halved in size after every third depth; in the kernel its
# default depth is a real call at 4x4 (stride 1; 12 is the stride-2 call beside it, and some checks name 3), and
# in the trusted re-run every conv depth, named or not, is replaced by one drawn with the test cell's salt among the
# depths of the same stride that no check probes in the kernel (salted_depth). fully_connected gets the flattened
# 1x1x76 map of depth 19 and has 100 units.
BATCH = 64
IMAGE_SIZE, IMAGE_CHANNELS, CONV_LAYERS = 28, 1, 19
DENSE_FEATURES, DENSE_UNITS = 76, 100
CONV_DEPTHS = (11, 12)  # inputs 4x4x40 (44 feature maps, stride 1) and 4x4x44 (48 feature maps, stride 2)
# every depth a check probes in the notebook's kernel: the defaults above and depth 3 (stride 2 on 28x28x8 maps),
# which some checks name. A re-check with a salt never probes these, so normalizing only there earns nothing
KERNEL_DEPTHS = (*CONV_DEPTHS, 3)
ATOL = RTOL = 2e-3
DEPTH_STREAM = 19  # mixed with the salt for the depth, so that it is drawn apart from the inputs' values

# mixed into the seeds of the checks' inputs, and the default conv depth drawn from it, when set (the trusted re-run:
# a fresh secret per test cell, drawn in nbgrader's process after the submission's cells ran and never sent to the
# worker); unset in the notebook's kernel
_SALT: contextvars.ContextVar = contextvars.ContextVar("bnlab_probe_salt", default=None)


@contextlib.contextmanager
def salted(salt: int | None):
    """Within this block the checks' inputs (:func:`batches`) are drawn from their seeds mixed with ``salt``."""
    if salt is not None and (not isinstance(salt, int) or salt < 0):
        raise ValueError(f"the salt must be a non-negative int, got {salt!r}")
    token = _SALT.set(salt)
    try:
        yield
    finally:
        _SALT.reset(token)


def layer_arg(kind: str, arg):
    """The layer's size argument the checks probe: ``arg``, or the checks' default when it is None (100 units;
    depth ``CONV_DEPTHS[0]``). In the trusted re-run (under :func:`salted`) a conv depth, named or not, is replaced
    by the depth drawn with the salt among those of the same stride that the kernel's checks never probe
    (:func:`salted_depth`): a check that asks for a stride-2 call still gets one, and a layer cannot normalize
    only at the depths the checks name."""
    if kind == "dense":
        if arg is None:
            return DENSE_UNITS
        if not (isinstance(arg, int) and arg >= 1):
            raise ValueError(f"a dense layer's size is a positive int (its number of units), got {arg!r}")
        return arg
    depth = CONV_DEPTHS[0] if arg is None else arg
    if not (isinstance(depth, int) and 1 <= depth <= CONV_LAYERS):
        raise ValueError(f"a conv layer's depth is an int from 1 to {CONV_LAYERS} (the network's layers), got {arg!r}")
    salt = _SALT.get()
    return depth if salt is None else salted_depth(salt, _stride_at(depth))


@functools.lru_cache(maxsize=256)
def salted_depth(salt: int, step: int = 1) -> int:
    """The conv depth that a check asking for a depth of stride ``step`` probes in a test cell whose salt is
    ``salt``: one of :func:`drawn_depths` ``(step)``, the same for every depth of that stride (so resolving a drawn
    depth again gives it back). The worker builds the layer at this depth without knowing the salt."""
    depths = drawn_depths(step)
    return depths[int(np.random.default_rng([salt, DEPTH_STREAM, step]).integers(len(depths)))]


def drawn_depths(step: int | None = None) -> tuple:
    """The depths the trusted re-run draws a conv check's depth from: every real call of the network whose output
    is still a map (more than 1x1: depths 1 to 14; from depth 15 on, statistics per position and per feature map are
    the same, so the checks could not tell a layer that mixes them up) and that no check probes in the kernel
    (:data:`KERNEL_DEPTHS`), with stride ``step`` (both strides when None): 1, 2, 4, 5, 7, 8, 10, 13, 14 (stride 1)
    and 6, 9 (stride 2)."""
    return tuple(
        d
        for d in range(1, CONV_LAYERS + 1)
        if _input_size(d + 1) > 1 and d not in KERNEL_DEPTHS and step in (None, _stride_at(d))
    )


def _stride_at(depth: int) -> int:
    return 2 if depth % 3 == 0 else 1


def _input_size(depth: int) -> int:
    """The height (and width) of the maps ``conv_layer(prev, depth)`` gets: 28, halved (rounded up) after every
    stride-2 depth before it."""
    size = IMAGE_SIZE
    for before in range(1, depth):
        size = -(-size // _stride_at(before))
    return size


def units(kind: str, arg) -> int:
    arg = layer_arg(kind, arg)
    return arg if kind == "dense" else arg * 4


def stride(kind: str, arg) -> int:
    return 1 if kind == "dense" else _stride_at(layer_arg(kind, arg))


def input_shape(kind: str, arg=None) -> tuple:
    """The shape (without the batch axis) of what the exercise's network feeds the layer: the flattened last
    feature map for ``fully_connected``, the output of depth ``arg - 1`` for ``conv_layer(prev, arg)``."""
    if kind == "dense":
        return (DENSE_FEATURES,)
    depth = layer_arg(kind, arg)
    size = _input_size(depth)
    return (size, size, IMAGE_CHANNELS if depth == 1 else (depth - 1) * 4)


def output_shape(kind: str, arg=None) -> tuple:
    """The layer's output shape without the batch axis ('same' padding: the size divided by the stride, rounded up)."""
    if kind == "dense":
        return (units(kind, arg),)
    size = -(-input_shape(kind, arg)[0] // stride(kind, arg))
    return (size, size, units(kind, arg))


def batches(kind: str, steps: int, seed: int, arg=None, batch: int | None = None) -> list:
    """``steps`` float32 batches shaped as the layer's real input (:func:`input_shape`), ``batch`` (default
    :data:`BATCH`) examples each: activations after a ReLU, non-negative with many zeros, with a per-feature offset
    and scale so that their statistics are distinctive. Drawn from ``seed``, mixed with the salt of :func:`salted`."""
    rng = generator(seed)
    shape = (batch or BATCH,) + input_shape(kind, arg)
    offset = rng.uniform(-1.0, 2.0, size=shape[-1])
    scale = rng.uniform(0.5, 3.0, size=shape[-1])
    return [relu(offset + scale * rng.standard_normal(shape)).astype(np.float32) for _ in range(steps)]


def generator(seed: int) -> np.random.Generator:
    """The random generator of a check's draws from ``seed``: mixed with the salt of :func:`salted` when one is set."""
    salt = _SALT.get()
    return np.random.default_rng(seed if salt is None else [seed, salt])


def axes(z) -> tuple:
    """The axes of the statistics: all but the last (units or feature maps)."""
    return tuple(range(np.ndim(z) - 1))


def count(z) -> int:
    return int(np.prod(np.shape(z)[:-1]))


def moments(z, unbiased: bool = False):
    z = np.asarray(z, dtype=np.float64)
    mean, var = z.mean(axis=axes(z)), z.var(axis=axes(z))
    if unbiased:
        var = var * count(z) / (count(z) - 1)
    return mean, var


def relu(x):
    return np.maximum(x, 0.0)


def close(a, b, atol=ATOL, rtol=RTOL) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(np.isfinite(a))) and bool(np.allclose(a, b, atol=atol, rtol=rtol))


def close_rel(a, b, tol=2e-2) -> bool:
    """``a`` equals ``b`` up to ``tol`` of ``b``'s size (for gradients, whose scale varies)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return False
    return float(np.linalg.norm(a - b)) <= tol * float(np.linalg.norm(b)) + 1e-6


def patches(x, kernel_size: int, step: int) -> np.ndarray:
    """'same'-padded 3x3 patches of an NHWC batch, shape (N, H_out, W_out, k*k*C), TF's padding rule."""
    x = np.asarray(x, dtype=np.float64)
    n, h, w, c = x.shape
    out_h, out_w = -(-h // step), -(-w // step)
    pad_h = max((out_h - 1) * step + kernel_size - h, 0)
    pad_w = max((out_w - 1) * step + kernel_size - w, 0)
    x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    cols = np.empty((n, out_h, out_w, kernel_size, kernel_size, c))
    for i in range(kernel_size):
        for j in range(kernel_size):
            cols[:, :, :, i, j, :] = x[:, i : i + step * out_h : step, j : j + step * out_w : step, :]
    return cols.reshape(n, out_h, out_w, -1)


def linear(x, kernel, bias=None, step: int = 1) -> np.ndarray:
    """The layer's linear output, x @ W (dense) or a 'same' convolution (conv), plus the bias."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim == 2:
        out = np.asarray(x, dtype=np.float64) @ kernel
    else:
        out = patches(x, kernel.shape[0], step) @ kernel.reshape(-1, kernel.shape[-1])
    return out if bias is None else out + np.asarray(bias, dtype=np.float64)


def kernel_gradient(x, kernel, upstream_of_linear, step: int = 1) -> np.ndarray:
    """d(loss)/d(kernel) given d(loss)/d(linear output)."""
    kernel = np.asarray(kernel)
    g = np.asarray(upstream_of_linear, dtype=np.float64)
    if kernel.ndim == 2:
        return np.asarray(x, dtype=np.float64).T @ g
    cols = patches(x, kernel.shape[0], step).reshape(-1, int(np.prod(kernel.shape[:3])))
    return (cols.T @ g.reshape(-1, kernel.shape[-1])).reshape(kernel.shape)


def bn_forward(z, gamma, beta, mean, var, epsilon):
    """Batch normalization of ``z``: :func:`bnlab.reference.batch_norm_formula`, whose Args these are."""
    return batch_norm_formula(z, gamma, beta, mean, var, epsilon)


def infer_momentum(before, after, batch_value):
    """Solve ``after = m * before + (1 - m) * batch`` for m, from the entry that says most."""
    before, after, batch_value = (np.asarray(v, np.float64).ravel() for v in (before, after, batch_value))
    if before.shape != batch_value.shape or after.shape != before.shape:
        return None
    gap = batch_value - before
    if not np.any(np.abs(gap) > 1e-3):
        return None
    i = int(np.argmax(np.abs(gap)))
    return float(1.0 - (after[i] - before[i]) / gap[i])
