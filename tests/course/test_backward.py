"""Part 4's check of a NumPy backward pass: its references, its inputs and its messages, in-process.

The mutation suite (tests/submissions/backward_part.py) runs through tests/course/test_grading.py like every
other part; these tests hold the pieces of the check to account."""

from __future__ import annotations

import ast
import linecache
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from submissions.backward_part import graph

from bnlab import gradients, grading
from bnlab.grading import backward, backward_probe, numeric

PACKAGE = Path(backward.__file__).resolve().parents[1]


def _forward(variant, x, gamma, eps):
    """A NumPy forward pass of batch normalization for ``sum(dout * out)``, correct or with one of Part 4's mistakes
    (``backward_probe.FORWARDS``): a statistic held at its value for ``x``, the batch axis only, Bessel's variance."""
    batch_axis_only, unbiased, hold_mean, hold_var = backward_probe.FORWARDS[variant]
    over = (0,) if batch_axis_only else tuple(range(x.ndim - 1))
    fixed_mean, fixed_var = x.mean(axis=over), x.var(axis=over, ddof=int(unbiased))

    def forward(xv, g=gamma):
        mean = fixed_mean if hold_mean else xv.mean(axis=over)
        var = fixed_var if hold_var else xv.var(axis=over, ddof=int(unbiased))
        return g * (xv - mean) / np.sqrt(var + eps)

    return forward


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_the_tensorflow_reference_matches_a_slow_numerical_gradient(kind):
    """The checks' reference (tf.GradientTape, float64) agrees with the lesson's numerical_gradient, one entry at a
    time (float64), to CS231n's float64 level: for the right forward pass and for each named mistake."""
    for seed in range(2):
        dout, x, gamma, eps = backward.draw(kind, seed)
        for variant in backward_probe.FORWARDS:
            forward = _forward(variant, x, gamma, eps)
            tape = backward_probe.autodiff(dout, x, gamma, eps, variant)
            numerical = gradients.numerical_gradient(forward, x, dout)
            assert backward.relative_error(tape["dx"], numerical) < 1e-5, (seed, variant)
        tape = backward_probe.autodiff(dout, x, gamma, eps)
        numerical = gradients.numerical_gradient(lambda g: _forward("correct", x, g, eps)(x, g), gamma, dout)
        assert backward.relative_error(tape["dgamma"], numerical) < 1e-5
        assert backward.relative_error(tape["dbeta"], dout.sum(axis=tuple(range(x.ndim - 1)))) < 1e-12


def test_every_mistake_differs_from_the_right_gradient_beyond_the_tolerance():
    """Each mistake's gradient differs from the right one by far more than the tolerance, for every draw."""
    for kind in ("dense", "conv"):
        for seed in range(4):
            dout, x, gamma, eps = backward.draw(kind, seed)
            right = backward_probe.autodiff(dout, x, gamma, eps)["dx"]
            for variant in backward.DX_MISTAKES:
                if variant == "batch_axis_only" and kind == "dense":
                    continue  # the same axes for (N, D)
                wrong = backward_probe.autodiff(dout, x, gamma, eps, variant)["dx"]
                assert not backward.agrees(wrong, right, 10 * backward.TOLERANCE), (kind, seed, variant)


def test_inputs_vary_with_the_seed_and_the_kind():
    shapes = {backward.draw(kind, seed)[1].shape for kind in ("dense", "conv") for seed in range(6)}
    assert len(shapes) > 4 and {len(s) for s in shapes} == {2, 4}
    with pytest.raises(ValueError):
        backward.draw("rnn", 0)


def test_the_layer_sized_inputs_are_the_first_conv_layers_drawn_with_the_seed_and_the_salt():
    """64 images of 28x28 with 4 feature maps (the dense check: the same values as rows), other values for
    another seed or another salt."""
    assert backward.LAYER_SHAPES == {"conv": (64, 28, 28, 4), "dense": (64 * 28 * 28, 4)}
    for kind, shape in backward.LAYER_SHAPES.items():
        x = backward.draw(kind, 0, layer=True)[1]
        assert x.shape == shape
        assert not np.allclose(x, backward.draw(kind, 1, layer=True)[1])
        with numeric.salted(5):
            assert not np.allclose(x, backward.draw(kind, 0, layer=True)[1])


NUMERICAL_ANSWER = """
import numpy as np


def forward(x, gamma, eps):
    axes = tuple(range(x.ndim - 1))
    return gamma * (x - x.mean(axis=axes)) / np.sqrt(x.var(axis=axes) + eps)


def batchnorm_backward(dout, x, gamma, eps):
    dx = numerical_gradient(lambda xv: forward(xv, gamma, eps), x, dout)
    dgamma = numerical_gradient(lambda g: forward(x, g, eps), gamma, dout)
    return dx, dgamma, dout.sum(axis=tuple(range(x.ndim - 1)))
"""


def test_a_backward_pass_by_finite_differences_fails_on_the_layer_sized_inputs_with_the_time_message():
    """The lesson's numerical_gradient on the student's own NumPy forward pass is right on the small inputs, and the
    check stops it on the layer's within the time limit, saying why."""
    namespace: dict = {"numerical_gradient": gradients.numerical_gradient}
    exec(NUMERICAL_ANSWER, namespace)
    small = backward.draw("conv", 0)
    report = backward_probe.BackwardProbe(namespace["batchnorm_backward"]).run(*small)
    assert backward.agrees(report["answer"][0], backward_probe.autodiff(*small)["dx"])  # the control: right there
    start = time.monotonic()
    with pytest.raises(grading.CheckFailed) as info:
        grading.check_backward(namespace["batchnorm_backward"], "dense")
    assert time.monotonic() - start < backward_probe.TIME_LIMIT + 5
    message = str(info.value)
    assert f"took more than {backward_probe.TIME_LIMIT:g} s on inputs of shape (50176, 4)" in message, message
    assert "two forward passes per input value" in message and "node by node" in message
    assert "lesson, section 12, *The backward pass by hand*" in message


def test_the_solution_passes_and_takes_a_small_part_of_the_time_limit():
    namespace: dict = {}
    exec(graph()["backward_answer"], namespace)
    for kind in ("dense", "conv"):
        grading.check_backward(namespace["batchnorm_backward"], kind, seed=2)
        inputs = backward.draw(kind, 2, layer=True)
        start = time.monotonic()
        namespace["batchnorm_backward"](*inputs)
        assert time.monotonic() - start < backward_probe.TIME_LIMIT / 20, kind


def test_an_answer_that_calls_the_former_finite_differences_of_the_library_fails():
    """``bnlab.grading.numeric.differences`` (a vectorised backward pass) is gone: a 3-line answer that called it
    scored Part 4."""
    with pytest.raises(ImportError, match="differences"):
        exec("from bnlab.grading.numeric import differences", {})
    namespace: dict = {}
    exec(
        "from bnlab.grading import numeric\n\n\ndef batchnorm_backward(dout, x, gamma, eps):\n"
        '    d = numeric.differences("correct", dout, x, gamma, eps)\n    return d["dx"], d["dgamma"], d["dbeta"]\n',
        namespace,
    )
    with pytest.raises(grading.CheckFailed, match="AttributeError.*differences"):
        grading.check_backward(namespace["batchnorm_backward"], "dense")


def test_the_time_limit_stops_the_block_and_puts_back_the_timer_and_handler_it_found():
    def earlier(signum, frame):
        raise AssertionError("the earlier timer fired")

    previous = signal.signal(signal.SIGALRM, earlier)
    signal.setitimer(signal.ITIMER_REAL, 60.0)
    try:
        with pytest.raises(backward_probe.TooSlow):
            with backward_probe.time_limit(0.05):
                while True:
                    pass
        assert signal.getsignal(signal.SIGALRM) is earlier
        assert 55.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 60.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elsewhere = []  # no signals outside the main thread: no limit there
    thread = threading.Thread(target=lambda: elsewhere.append(_run_limited(0.01, 0.05)))
    thread.start()
    thread.join()
    assert elsewhere == ["done"]


def _run_limited(limit, duration):
    with backward_probe.time_limit(limit):
        time.sleep(duration)
    return "done"


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
    normalization's gradient by formula: the checks take it from TensorFlow's autodiff (backward_probe.autodiff),
    which cannot be imported where Part 4 is graded, and the finite differences of numeric are gone."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "instructor" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and "backward" in node.name and node.name != "check_backward":
                offenders.append(f"{path.name}:{node.name}")
    assert offenders == []
    assert not hasattr(numeric, "differences")


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
