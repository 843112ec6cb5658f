"""Answer cells that try to talk the grader out of its verdict. Each must earn only what its real
answers earn: the tamper code goes into the first answer cell, the other answer cells keep the
release stubs (no answer) unless the variant says otherwise."""

from __future__ import annotations

from submissions.common import ALL_TESTS, ANSWER_CELLS, KERAS_LAYER_TESTS, QUESTION_TESTS, Variant

NO_ANSWER = 'raise NotImplementedError("Write this part of the exercise (see the instructions above)")\n'


REASSIGN_CHECKS = """
import bnlab.grading
for _name in dir(bnlab.grading):
    if _name.startswith("check_"):
        setattr(bnlab.grading, _name, lambda *args, **kwargs: None)
"""

PATCH_CODE = """
from bnlab.grading import checks as _checks, step_checks as _step_checks
for _module in (_checks, _step_checks):
    for _name in dir(_module):
        if _name.startswith("check_"):
            getattr(_module, _name).__code__ = (lambda *args, **kwargs: None).__code__
"""

SWALLOW_ERRORS = """
_shell = get_ipython()
_shell.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: [])
_shell._showtraceback = lambda *args, **kwargs: None  # no error message reaches nbgrader
"""

PATCH_NUMPY_AND_FAIL = """
import numpy
import bnlab.grading.checks, bnlab.grading.errors
numpy.allclose = lambda *args, **kwargs: True
numpy.isfinite = lambda x: numpy.ones(numpy.shape(x), bool)
bnlab.grading.errors.fail = bnlab.grading.checks.fail = lambda message: None
"""

FAKE_MODULE = """
import sys, types
_fake = types.ModuleType("bnlab.grading")
_fake.__getattr__ = lambda name: (lambda *args, **kwargs: None)
sys.modules["bnlab.grading"] = _fake
import bnlab
bnlab.grading = grading = _fake
"""

PATCH_BUILTINS = """
import builtins
class _Quiet(Exception):
    pass
builtins.AssertionError = _Quiet  # a check's failure is no AssertionError any more...
import bnlab.grading.errors
bnlab.grading.errors.CheckFailed.__bases__ = (Exception,)  # ... nor is CheckFailed
"""

FAKE_PROBES = """
import numpy as np
from bnlab.grading import probes
probes.layer_probe = lambda *args, **kwargs: None  # the worker's probes, too, could be replaced
"""


def tamper(name, code, description, answers=None, fails=ALL_TESTS):
    cells = {cell: NO_ANSWER for cell in ANSWER_CELLS}
    cells.update(answers or {})
    cells["keras_layers"] = code + "\n" + (answers or {}).get("keras_layers", "")
    return Variant(name, cells, frozenset(fails), description)


TAMPERING = [
    tamper("tamper_reassign_checks", REASSIGN_CHECKS, "replaces every check_* function with one that returns"),
    tamper("tamper_patch_code_objects", PATCH_CODE, "swaps the checks' __code__ for an empty function's"),
    tamper("tamper_swallow_errors", SWALLOW_ERRORS, "IPython's set_custom_exc swallows every error"),
    tamper("tamper_patch_numpy_and_fail", PATCH_NUMPY_AND_FAIL, "np.allclose always True, fail() does nothing"),
    tamper("tamper_fake_grading_module", FAKE_MODULE, "a fake bnlab.grading in sys.modules"),
    tamper("tamper_builtins", PATCH_BUILTINS, "AssertionError and CheckFailed's base class replaced"),
    tamper("tamper_fake_probes", FAKE_PROBES + REASSIGN_CHECKS, "the probes replaced as well as the checks"),
]


def _with_part_one_answered():
    from bnlab.instructor.notebooks import solution_answers

    solution = solution_answers()
    cells = {cell: NO_ANSWER for cell in ANSWER_CELLS}
    cells["keras_layers"] = solution["keras_layers"]
    cells["keras_training"] = solution["keras_training"] + "\n" + REASSIGN_CHECKS + PATCH_NUMPY_AND_FAIL
    return Variant(
        "tamper_with_part_one_answered",
        cells,
        ALL_TESTS - KERAS_LAYER_TESTS - {"test_keras_train_step"},
        "Part 1 answered, then the checks replaced: earns Part 1's points and nothing else",
    )


TAMPERING.append(_with_part_one_answered())
assert QUESTION_TESTS <= ALL_TESTS
