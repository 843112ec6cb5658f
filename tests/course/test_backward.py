"""Part 4's check of a NumPy backward pass: its references, its inputs and its messages, in-process.

The mutation suite (tests/submissions/backward_part.py) runs through tests/course/test_grading.py like every
other part; these tests hold the pieces of the check to account."""

from __future__ import annotations

import ast
import linecache
from pathlib import Path

import numpy as np
import pytest
from submissions.backward_part import graph

from bnlab import grading
from bnlab.grading import backward, backward_probe, numeric

PACKAGE = Path(backward.__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_numerical_gradient_matches_tensorflow_autodiff(kind):
    """The finite differences (float64) agree with tf.GradientTape to CS231n's float64 level."""
    for seed in range(3):
        dout, x, gamma, eps = backward.draw(kind, seed)
        numerical = numeric.differences("correct", dout, x, gamma, eps)
        tape = backward_probe.autodiff(dout, x, gamma, eps)
        for key in ("dx", "dgamma", "dbeta"):
            assert backward.relative_error(numerical[key], tape[key]) < 1e-5, key


def _moved_one_at_a_time(variant, dout, x, gamma, eps, step=numeric.DIFFERENCE_STEP):
    """d sum(dout * out) / dx by moving one value at a time and running the whole forward pass again."""
    rule, unbiased, hold_mean, hold_var = numeric.FORWARDS[variant]
    over = tuple(range(x.ndim - 1)) if rule == "all" else (0,)

    def loss(xv):
        mean, var = xv.mean(axis=over), xv.var(axis=over, ddof=1 if unbiased else 0)
        mean, var = (
            (x.mean(axis=over) if hold_mean else mean),
            (x.var(axis=over, ddof=int(unbiased)) if hold_var else var),
        )
        return float((dout * gamma * (xv - mean) / np.sqrt(var + eps)).sum())

    dx = np.empty_like(x)
    for index in np.ndindex(*x.shape):
        moved = [x.copy(), x.copy()]
        moved[0][index] += step
        moved[1][index] -= step
        dx[index] = (loss(moved[0]) - loss(moved[1])) / (2 * step)
    return dx


@pytest.mark.parametrize("shape", [(12, 5), (6, 3, 3, 4)])
def test_differences_from_group_sums_are_those_of_moving_one_value_at_a_time(shape):
    rng = np.random.default_rng(3)
    x, dout, gamma = 1.5 + 2 * rng.standard_normal(shape), rng.standard_normal(shape), rng.uniform(0.5, 2, shape[-1])
    for variant in numeric.FORWARDS:
        fast = numeric.differences(variant, dout, x, gamma, 1e-3)["dx"]
        assert backward.relative_error(fast, _moved_one_at_a_time(variant, dout, x, gamma, 1e-3)) < 1e-6, variant


def test_every_mistake_differs_from_the_right_gradient_beyond_the_tolerance():
    """Each mistake's gradient differs from the right one by far more than the tolerance, for every draw."""
    for kind in ("dense", "conv"):
        for seed in range(4):
            dout, x, gamma, eps = backward.draw(kind, seed)
            right = numeric.differences("correct", dout, x, gamma, eps)["dx"]
            for variant in backward.DX_MISTAKES:
                if variant == "batch_axis_only" and kind == "dense":
                    continue  # the same axes for (N, D)
                wrong = numeric.differences(variant, dout, x, gamma, eps)["dx"]
                assert not backward.agrees(wrong, right, 10 * backward.TOLERANCE), (kind, seed, variant)


def test_inputs_vary_with_the_seed_and_the_kind():
    shapes = {backward.draw(kind, seed)[1].shape for kind in ("dense", "conv") for seed in range(6)}
    assert len(shapes) > 4 and {len(s) for s in shapes} == {2, 4}
    with pytest.raises(ValueError):
        backward.draw("rnn", 0)


def test_a_function_that_raises_or_returns_too_little_gets_a_message():
    def raises(dout, x, gamma, eps):
        raise ValueError("not written yet")

    def two(dout, x, gamma, eps):
        return dout, gamma

    for fn, words in ((raises, "raised an error"), (two, "three arrays")):
        with pytest.raises(grading.CheckFailed, match=words) as info:
            grading.check_backward(fn, "dense")
        assert "lesson, section 12, *The backward pass by hand*" in str(info.value)


def test_the_library_ships_no_analytic_backward_pass():
    """What a student receives (bnlab outside instructor/) defines no function that returns batch
    normalization's gradient by formula: the checks differentiate the forward pass numerically."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "instructor" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and "backward" in node.name and node.name != "check_backward":
                offenders.append(f"{path.name}:{node.name}")
    assert offenders == []


def test_stopped_statistics_message_points_to_the_backward_section():
    from bnlab.grading.errors import lesson_reference

    assert "section 12" in lesson_reference("stopped_statistics")
    assert "When the gradient skips the statistics" in lesson_reference("stopped_statistics")
    assert np.isclose(backward.relative_error([1.0], [1.0]), 0.0)


def test_every_backward_bug_is_named_by_its_message():
    """Each wrong backward pass of the suite fails with the message that names its wrong term (the suite's
    own test checks which cells fail; this one checks what they say)."""
    from submissions.backward_part import BACKWARD_BUGS, MESSAGES

    for variant in BACKWARD_BUGS:
        if variant.name not in MESSAGES:
            continue
        namespace: dict = {}
        exec(variant.cells["backward_answer"], namespace)
        for kind in ("dense", "conv"):
            if f"test_backward_{kind}" not in variant.fails:
                assert grading.check_backward(namespace["batchnorm_backward"], kind) is None
                continue
            with pytest.raises(grading.CheckFailed) as info:
                grading.check_backward(namespace["batchnorm_backward"], kind, seed=3)
            assert MESSAGES[variant.name] in str(info.value), (variant.name, str(info.value))
            assert "lesson, section 12, *The backward pass by hand*" in str(info.value)
    assert len([v for v in BACKWARD_BUGS if v.name.startswith("bw_")]) >= 8


def test_the_demo_after_the_upstream_question_shows_a_neighbouring_case_not_the_answer(capsys):
    """The exercise asks what a constant added to ``dout`` changes; the demo after it adds the constant to the
    inputs (nothing changes, as x_hat does not), and nothing shipped measures the question's own case."""
    from bnlab import gradients

    change = gradients.show_input_shift()
    assert max(change.values()) < 1e-9
    assert "every input of feature 0" in capsys.readouterr().out
    assert not hasattr(gradients, "show_upstream_shift")


def _notebook_cell(source: str, number: int) -> dict:
    """Run ``source`` as a notebook cell is run: IPython keeps a cell's source in linecache with no time stamp
    (IPython.core.compilerop), and compiles it under that name. Returns the namespace it defined."""
    filename = f"<notebook cell {number}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


AUTODIFF_ANSWER = """
import numpy as np
import tensorflow as tf


def batchnorm_backward(dout, x, gamma, eps):
    x_t, g = tf.constant(x), tf.constant(gamma)
    with tf.GradientTape() as tape:
        tape.watch([x_t, g])
        mean, var = tf.nn.moments(x_t, axes=list(range(len(x.shape) - 1)))
        out = g * (x_t - mean) / tf.sqrt(var + eps)
    dx, dgamma = tape.gradient(out, [x_t, g], output_gradients=tf.constant(dout))
    return dx.numpy(), dgamma.numpy(), dout.sum(axis=tuple(range(x.ndim - 1)))
"""


def test_in_the_notebook_the_check_runs_the_answer_cell_alone_as_it_is_graded():
    """Part 4 is graded from its answer cell alone, without TensorFlow: the notebook's check says so when an
    answer passes only with another cell's help or with TensorFlow's autodiff, and the answer cell that stands on
    its own passes."""
    right = graph()["backward_answer"]
    grading.check_backward(_notebook_cell(right, 1)["batchnorm_backward"], "conv")
    helper = _notebook_cell(right.replace("def batchnorm_backward", "def derived"), 2)["derived"]
    leaning = _notebook_cell(
        "def batchnorm_backward(dout, x, gamma, eps):\n    return derived(dout, x, gamma, eps)\n", 3
    )
    leaning["batchnorm_backward"].__globals__["derived"] = helper  # defined in another cell of the notebook
    with pytest.raises(grading.CheckFailed, match="fails on its own.*NameError: name 'derived'"):
        grading.check_backward(leaning["batchnorm_backward"], "dense")
    with pytest.raises(grading.CheckFailed, match="on its own.*TensorFlow cannot be imported in Part 4"):
        grading.check_backward(_notebook_cell(AUTODIFF_ANSWER, 4)["batchnorm_backward"], "dense")
