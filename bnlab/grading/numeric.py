"""NumPy-only helpers of the checks: test inputs, the reference forward pass and its numerical gradients.

Nothing here imports TensorFlow or runs student code, so the trusted re-verification
(:mod:`bnlab.instructor.preprocessors.verify`) computes every reference in a process the student's code never ran in.
"""

from __future__ import annotations

import numpy as np

from bnlab.reference import batch_norm_formula

DENSE_BATCH, DENSE_FEATURES, DENSE_UNITS = 16, 6, 5
CONV_BATCH, CONV_SIZE, CONV_CHANNELS = 8, 6, 3
CONV_DEPTHS = (2, 3)  # 8 feature maps with stride 1, 12 with stride 2
ATOL = RTOL = 2e-3


def layer_arg(kind: str, arg):
    return arg if arg is not None else (DENSE_UNITS if kind == "dense" else CONV_DEPTHS[0])


def units(kind: str, arg) -> int:
    arg = layer_arg(kind, arg)
    return arg if kind == "dense" else arg * 4


def stride(kind: str, arg) -> int:
    return 1 if kind == "dense" or layer_arg(kind, arg) % 3 else 2


def input_shape(kind: str) -> tuple:
    return (DENSE_FEATURES,) if kind == "dense" else (CONV_SIZE, CONV_SIZE, CONV_CHANNELS)


def batches(kind: str, steps: int, seed: int, batch: int | None = None) -> list:
    """Input batches with a per-feature offset and scale, so the statistics are distinctive."""
    rng = np.random.default_rng(seed)
    shape = (batch or (DENSE_BATCH if kind == "dense" else CONV_BATCH),) + input_shape(kind)
    offset = rng.uniform(-1.0, 2.0, size=shape[-1])
    scale = rng.uniform(1.0, 3.0, size=shape[-1])
    return [(offset + scale * rng.standard_normal(shape)).astype(np.float32) for _ in range(steps)]


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


# a forward pass of batch normalization, correct or with one of Part 4's mistakes:
# {name: (axes of the statistics, Bessel-corrected variance, mean held constant, variance held constant)}
FORWARDS = {
    "correct": ("all", False, False, False),
    "no_mean_path": ("all", False, True, False),
    "no_variance_path": ("all", False, False, True),
    "no_statistics_path": ("all", False, True, True),
    "batch_axis_only": ("batch", False, False, False),
    "bessel": ("all", True, False, False),
}
DIFFERENCE_STEP = 1e-5


def _variant_statistics(x, variant):
    rule, unbiased, _, _ = FORWARDS[variant]
    over = axes(x) if rule == "all" else (0,)
    n = int(np.prod([x.shape[a] for a in over]))
    mean = x.mean(axis=over, keepdims=True)
    return mean, ((x - mean) ** 2).mean(axis=over, keepdims=True) * (n / (n - 1) if unbiased else 1.0)


def differences(variant: str, dout, x, gamma, eps, step: float = DIFFERENCE_STEP) -> dict:
    """Centred finite differences of ``sum(dout * out)``, ``out`` training-mode batch normalization of ``x``
    (forward pass ``variant``, a key of :data:`FORWARDS`): ``{"dx", "dgamma", "dbeta"}`` in float64.

    There is no analytic backward pass in the library (Part 4 asks students for one): the checks differentiate
    the forward pass numerically. The features (last axis) are independent, so one perturbation per position
    of the other axes gives the derivative for every feature at once, the loss kept per feature."""
    dout, x, gamma = (np.asarray(a, dtype=np.float64) for a in (dout, x, gamma))
    held = _variant_statistics(x, variant)
    lead = axes(x)

    def loss(xv, g):
        mean, var = _variant_statistics(xv, variant)
        mean = held[0] if FORWARDS[variant][2] else mean
        var = held[1] if FORWARDS[variant][3] else var
        return (dout * g * (xv - mean) / np.sqrt(var + eps)).sum(axis=lead)

    dx = np.empty_like(x)
    for index in np.ndindex(*x.shape[:-1]):
        plus, minus = x.copy(), x.copy()
        plus[index] += step
        minus[index] -= step
        dx[index] = (loss(plus, gamma) - loss(minus, gamma)) / (2 * step)
    dgamma = (loss(x, gamma + step) - loss(x, gamma - step)) / (2 * step)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dout.sum(axis=lead)}  # out + beta: d/dbeta is exact


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
