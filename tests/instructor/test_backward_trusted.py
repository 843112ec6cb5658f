"""Part 4 through the trusted re-verification: a process of its own runs only Part 4's answer cell, where
TensorFlow cannot be imported, on the inputs the check draws (salted); the parent judges, with the same verdicts and
messages as the kernel."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from submissions import ALTERNATIVES, BUGS
from submissions.tampering import BACKWARD_BY_AUTODIFF, BACKWARD_LIES, BACKWARD_STUB, REPLACE_PROBE
from test_integrity import _by_name, combine, failed, trusted_verdicts

from bnlab.grading import backward, backward_probe
from bnlab.grading.errors import CheckFailed
from bnlab.instructor import isolation, reference
from bnlab.instructor.notebooks import solution_answers
from bnlab.instructor.preprocessors import verify

PART_4 = {"test_backward_dense", "test_backward_conv", "test_q_upstream_shift"}  # what these answer cells decide
TESTS = {
    "test_backward_dense": 'grading.check_backward(batchnorm_backward, "dense")\n'
    'grading.check_backward(batchnorm_backward, "dense", seed=7)',
    "test_backward_conv": 'grading.check_backward(batchnorm_backward, "conv", seed=12)',
}


def part_4_verdicts(answer: str, before: str = "") -> dict:
    """Part 4's checks re-run on a notebook of two cells: ``before``, then Part 4's answer cell ``answer``."""
    cells = [("setup", before), (verify.BACKWARD_ANSWER, answer), *((name, "") for name in TESTS)]
    return verify.verify_cells(cells, TESTS, timeout=120)


def test_trusted_rerun_names_the_missing_term_of_a_wrong_backward_pass():
    cells, fails = combine(*_by_name(["bw_no_variance_path", "q_upstream_shift_wrong_option"], BUGS))
    verdicts = trusted_verdicts(cells)
    assert failed(verdicts) & PART_4 == fails, verdicts
    for test in ("test_backward_dense", "test_backward_conv"):
        assert "path through the batch variance" in verdicts[test], verdicts[test]
        assert "lesson, section 12" in verdicts[test]


def test_trusted_rerun_accepts_a_float32_backward_pass():
    cells, _ = combine(*_by_name(["alt_bw_compact_float32", "q_upstream_shift_upper_case"], ALTERNATIVES))
    assert failed(trusted_verdicts(cells)) & PART_4 == set()


def test_the_honest_backward_pass_passes_in_the_kernel_and_in_its_own_process():
    answer = solution_answers()[verify.BACKWARD_ANSWER]
    namespace: dict = {}
    exec(answer, namespace)
    for kind in ("dense", "conv"):  # the kernel's route: autodiff beside it
        backward.check_backward(namespace["batchnorm_backward"], kind)
    assert part_4_verdicts(answer) == {name: None for name in TESTS}


# finite differences of the answer's own NumPy forward pass, one value at a time (the lesson's numerical_gradient,
# written out: bnlab.gradients imports TensorFlow, which Part 4's process refuses)
NUMERICAL_ANSWER = """
import numpy as np


def forward(x, gamma, eps):
    axes = tuple(range(x.ndim - 1))
    return gamma * (x - x.mean(axis=axes)) / np.sqrt(x.var(axis=axes) + eps)


def numerical_gradient(f, x, dout, step=1e-5):
    x, grad = np.array(x, dtype=np.float64), np.empty(np.shape(x))
    for index in np.ndindex(*x.shape):
        saved = x[index]
        x[index] = saved + step
        plus = np.sum(dout * f(x))
        x[index] = saved - step
        grad[index] = (plus - np.sum(dout * f(x))) / (2 * step)
        x[index] = saved
    return grad


def batchnorm_backward(dout, x, gamma, eps):
    dx = numerical_gradient(lambda xv: forward(xv, gamma, eps), x, dout)
    dgamma = numerical_gradient(lambda g: forward(x, g, eps), gamma, dout)
    return dx, dgamma, dout.sum(axis=tuple(range(x.ndim - 1)))
"""


def test_a_backward_pass_by_finite_differences_fails_on_both_routes_with_the_time_message():
    """Right on the small inputs, too slow on the layer's: the kernel's check fails it (so the re-run's failure is
    no tampering, only a wrong answer), and Part 4's process stops it at the time limit and answers, with the
    message that says why."""
    namespace: dict = {}
    exec(NUMERICAL_ANSWER, namespace)
    small = backward.draw("dense", 3)
    assert backward.agrees(namespace["batchnorm_backward"](*small)[0], backward_probe.autodiff(*small)["dx"])
    expected = f"took more than {backward_probe.TIME_LIMIT:g} s on inputs of shape (50176, 4)"
    with pytest.raises(CheckFailed, match=re.escape(expected)):
        backward.check_backward(namespace["batchnorm_backward"], "dense")
    cells = [(verify.BACKWARD_ANSWER, NUMERICAL_ANSWER), ("test_backward_dense", "")]
    verdict = verify.verify_cells(cells, {"test_backward_dense": TESTS["test_backward_dense"]}, timeout=120)
    message = verdict["test_backward_dense"]
    assert expected in message and "two forward passes per input value" in message, message
    assert "lesson, section 12" in message


def test_a_cell_that_replaces_the_probe_earns_nothing_in_part_4s_process(monkeypatch):
    """Only Part 4's answer cell runs where its checks get their answers: another cell that replaces the probe (and
    fools the kernel) changes nothing there, and the unanswered stub fails."""
    from bnlab.grading import backward_probe

    # put back afterwards what the lie replaces
    monkeypatch.setattr(backward_probe.BackwardProbe, "run", backward_probe.BackwardProbe.run)
    monkeypatch.setattr(backward, "_check_alone", backward._check_alone)
    lie = next(v for v in BACKWARD_LIES if v.name == "lie_backward_probe_replaced_in_another_cell")
    assert REPLACE_PROBE in lie.cells["nn_layers"] and lie.cells[verify.BACKWARD_ANSWER] == BACKWARD_STUB
    namespace: dict = {}
    exec(REPLACE_PROBE + BACKWARD_STUB, namespace)
    backward.check_backward(namespace["batchnorm_backward"], "dense")  # the control: the kernel is fooled
    verdicts = part_4_verdicts(BACKWARD_STUB, before=REPLACE_PROBE)
    assert all("NotImplementedError" in verdicts[name] for name in TESTS), verdicts


@pytest.mark.parametrize("where", ["cell", "function"])
def test_a_backward_pass_taken_from_tensorflow_fails_with_a_message_that_says_why(where):
    """TensorFlow cannot be imported where Part 4 runs: whether the cell or the function imports it, the check says
    so and points to the lesson's section on the backward pass by hand."""
    answer = BACKWARD_BY_AUTODIFF
    if where == "function":
        answer = answer.replace("import tensorflow as tf\n", "").replace(
            "    x_t, gamma_t = ", "    import tensorflow as tf\n\n    x_t, gamma_t = "
        )
    verdicts = part_4_verdicts(answer)
    for name in TESTS:
        assert "TensorFlow cannot be imported in Part 4" in verdicts[name], verdicts[name]
        assert "lesson, section 12" in verdicts[name]


def test_tensorflow_and_keras_folders_are_hidden_in_part_4s_sandbox():
    """The import is refused before the cell runs, and where the sandbox runs their folders are empty too: a cell
    that removes the refusal finds nothing to import."""
    if not isolation.available()[0]:
        pytest.skip(isolation.available()[1])
    answer = """
import sys
sys.meta_path = [f for f in sys.meta_path if type(f).__name__ != "_RefuseAutodiff"]
import tensorflow
FOUND = sorted(name for name in dir(tensorflow) if not name.startswith("__"))


def batchnorm_backward(dout, x, gamma, eps):
    raise RuntimeError(f"tensorflow holds {FOUND}, {tensorflow.__path__}")
"""
    verdicts = part_4_verdicts(answer)
    assert "tensorflow holds []" in verdicts["test_backward_dense"], verdicts


@pytest.mark.parametrize("variant", list(backward_probe.FORWARDS))
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_the_graders_numpy_reference_agrees_with_autodiff(kind, variant):
    """nbgrader's process judges with the grader's NumPy reference (bnlab.instructor.reference), the kernel with
    TensorFlow's autodiff: the same gradients, correct and for every named mistake, at both sizes."""
    for inputs in (backward.draw(kind, 5), backward.draw(kind, 5, layer=True)):
        numpy_side, tf_side = reference.differences(*inputs, variant), backward_probe.autodiff(*inputs, variant)
        for key in ("dx", "dgamma", "dbeta"):
            assert backward.agrees(numpy_side[key], tf_side[key], 1e-6), (kind, variant, key)


def test_the_rerun_judges_part_4_without_loading_tensorflow_in_nbgraders_process():
    """TensorFlow in nbgrader's process would add about 1 GiB to every submission under `make autograde`'s memory
    limit (it stopped the graded class in CI): the re-run's checks there use the NumPy reference."""
    script = (
        "import json, sys\n"
        "from bnlab.instructor.preprocessors import verify\n"
        "from bnlab.instructor.notebooks import solution_answers\n"
        f"tests = {TESTS!r}\n"
        "cells = [(verify.BACKWARD_ANSWER, solution_answers()[verify.BACKWARD_ANSWER]), *((n, '') for n in tests)]\n"
        "verdicts = verify.verify_cells(cells, tests, timeout=120)\n"
        "print(json.dumps([verdicts, 'tensorflow' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    verdicts, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert verdicts == {name: None for name in TESTS}, verdicts
    assert not loaded, "nbgrader's process imported TensorFlow to judge Part 4"
