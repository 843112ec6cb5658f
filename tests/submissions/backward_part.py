"""Part 4 (the backward pass by hand, NumPy): bugs and alternatives.

Each bug is one mistake a student makes when deriving batch normalization's backward pass; the check must
fail it with a message that names the wrong term (MESSAGES: a fragment of that message, tested in
tests/course/test_backward.py). Each alternative is another correct way to write it."""

from __future__ import annotations

from submissions.common import Variant

BOTH = frozenset({"test_backward_dense", "test_backward_conv"})
CONV = frozenset({"test_backward_conv"})

# the seven steps of the lesson's graph, for any number of axes; {var}, {dc}, {dx}, ... are the places a bug changes
GRAPH = """
import numpy as np


def batchnorm_backward(dout, x, gamma, eps):
    axes = {axes}
    n = x.size // x.shape[-1] if len(axes) == x.ndim - 1 else x.shape[0]
    mu = x.mean(axis=axes)
    c = x - mu
    s = np.sqrt((c ** 2).sum(axis=axes) / {count} + eps)
    x_hat = c / s
    dbeta, dgamma = {dbeta}, {dgamma}
    dx_hat = {dx_hat}
    ds = -(dx_hat * c).sum(axis=axes) / s ** 2
    dvar = ds / (2 * s)
    dc = dx_hat / s{variance_path}
    dmu = -dc.sum(axis=axes)
    return dc{mean_path}, dgamma, dbeta
"""
RIGHT = dict(
    axes="tuple(range(x.ndim - 1))",
    count="n",
    dbeta="dout.sum(axis=axes)",
    dgamma="(dout * x_hat).sum(axis=axes)",
    dx_hat="gamma * dout",
    variance_path=" + 2 * c * dvar / {count}",
    mean_path=" + dmu / n",
)


def graph(**changes) -> dict:
    fields = {**RIGHT, **changes}
    fields["variance_path"] = fields["variance_path"].format(count=fields["count"])
    return {"backward_answer": GRAPH.format(**fields)}


BACKWARD_BUGS = [
    Variant("bw_no_mean_path", graph(mean_path=""), BOTH, "dx without the path through the batch mean"),
    Variant("bw_no_variance_path", graph(variance_path=""), BOTH, "dx without the path through the batch variance"),
    Variant(
        "bw_statistics_as_constants",
        graph(variance_path="", mean_path=""),
        BOTH,
        "dx = dout * gamma / sigma: the statistics treated as constants",
    ),
    Variant(
        "bw_batch_axis_only",
        graph(axes="(0,)"),
        CONV,
        "every sum over the batch axis only (right for (N, D), wrong for feature maps)",
    ),
    Variant(
        "bw_dx_batch_axis_only",
        {
            "backward_answer": """
import numpy as np


def batchnorm_backward(dout, x, gamma, eps):
    axes = tuple(range(x.ndim - 1))
    dbeta, dgamma = dout.sum(axis=axes), (dout * (x - x.mean(axis=axes)) / np.sqrt(x.var(axis=axes) + eps)).sum(axis=axes)
    s = np.sqrt(x.var(axis=0) + eps)
    x_hat = (x - x.mean(axis=0)) / s
    dx_hat = gamma * dout
    return (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0)) / s, dgamma, dbeta
"""
        },
        CONV,
        "dgamma and dbeta over the right axes, dx's statistics and sums over the batch axis only",
    ),
    Variant(
        "bw_bessel_corrected_variance",
        graph(count="(n - 1)"),
        BOTH,
        "the forward pass and its gradient with the Bessel-corrected variance",
    ),
    Variant("bw_dgamma_of_raw_input", graph(dgamma="(dout * x).sum(axis=axes)"), BOTH, "dgamma = sum(dout * x)"),
    Variant("bw_dbeta_mean", graph(dbeta="dout.mean(axis=axes)"), BOTH, "dbeta averaged instead of summed"),
    Variant("bw_gamma_left_out", graph(dx_hat="dout"), BOTH, "dx_hat = dout: gamma forgotten on the way to x"),
    Variant(
        "bw_returns_two_values",
        {
            "backward_answer": GRAPH.format(**{**RIGHT, "variance_path": " + 2 * c * dvar / n"}).replace(
                "return dc + dmu / n, dgamma, dbeta", "return dc + dmu / n, dgamma"
            )
        },
        BOTH,
        "returns (dx, dgamma) without dbeta",
    ),
    Variant(
        "q_upstream_shift_wrong_option",
        {"q_upstream_shift_answer": 'ANSWER_UPSTREAM_SHIFT = questions.find_option("upstream_shift", "All three")'},
        frozenset({"test_q_upstream_shift"}),
        "a wrong prediction",
    ),
]

# what each bug's message must say (a fragment of it)
MESSAGES = {
    "bw_no_mean_path": "path through the batch mean",
    "bw_no_variance_path": "path through the batch variance",
    "bw_statistics_as_constants": "paths through both statistics",
    "bw_batch_axis_only": "one entry per feature map",
    "bw_dx_batch_axis_only": "batch axis only",
    "bw_bessel_corrected_variance": "Bessel-corrected variance",
    "bw_dgamma_of_raw_input": "dgamma",
    "bw_dbeta_mean": "dbeta is not the sum",
    "bw_gamma_left_out": "leaves out gamma",
    "bw_returns_two_values": "three arrays",
}

BACKWARD_ALTERNATIVES = [
    Variant(
        "alt_bw_step_by_step_graph", graph(), frozenset(), "the lesson's seven steps, over every axis but the last"
    ),
    Variant(
        "alt_bw_compact_float32",
        {
            "backward_answer": """
import numpy as np


def batchnorm_backward(dout, x, gamma, eps):
    dout, x, gamma = (np.asarray(a, dtype=np.float32) for a in (dout, x, gamma))
    axes = tuple(range(x.ndim - 1))
    s = np.sqrt(x.var(axis=axes) + np.float32(eps))
    x_hat = (x - x.mean(axis=axes)) / s
    dx_hat = dout * gamma
    dx = (dx_hat - dx_hat.mean(axis=axes) - x_hat * (dx_hat * x_hat).mean(axis=axes)) / s
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)
"""
        },
        frozenset(),
        "the compact formula in float32",
    ),
    Variant(
        "alt_bw_one_expression_other_order",
        {
            "backward_answer": """
import numpy as np


def batchnorm_backward(dout, x, gamma, eps):
    c = x.shape[-1]
    flat, g = x.reshape(-1, c), dout.reshape(-1, c)
    n = flat.shape[0]
    inv = 1.0 / np.sqrt(flat.var(axis=0) + eps)
    x_hat = (flat - flat.mean(axis=0)) * inv
    dgamma, dbeta = np.einsum("nc,nc->c", g, x_hat), g.sum(axis=0)
    dx = gamma * inv / n * (n * g - dbeta - x_hat * dgamma)
    return dx.reshape(x.shape), dgamma, dbeta
"""
        },
        frozenset(),
        "one expression, flattened to (count, C), dgamma and dbeta reused",
    ),
    Variant(
        "alt_bw_dvar_dmu_explicit",
        {
            "backward_answer": """
import numpy as np


def batchnorm_backward(dout, x, gamma, eps):
    axes = tuple(range(x.ndim - 1))
    m = x.size / x.shape[-1]
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    x_hat = (x - mu) / np.sqrt(var + eps)
    dx_hat = dout * gamma
    dvar = np.sum(dx_hat * (x - mu), axis=axes) * -0.5 * (var + eps) ** -1.5
    dmu = np.sum(-dx_hat / np.sqrt(var + eps), axis=axes) + dvar * np.mean(-2.0 * (x - mu), axis=axes)
    dx = dx_hat / np.sqrt(var + eps) + dvar * 2.0 * (x - mu) / m + dmu / m
    return dx, np.sum(dout * x_hat, axis=axes), np.sum(dout, axis=axes)
"""
        },
        frozenset(),
        "the derivatives of the variance and the mean written out, summed in another order",
    ),
    Variant(
        "q_upstream_shift_upper_case",
        {
            "q_upstream_shift_answer": 'ANSWER_UPSTREAM_SHIFT = " " + questions.find_option("upstream_shift", "Only dbeta").upper() + " "'
        },
        frozenset(),
        "the right letter in upper case, with spaces",
    ),
]
