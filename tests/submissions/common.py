"""What every part of the suite shares: the Variant record and the graded test cells' grade ids."""

from __future__ import annotations

import dataclasses
import re

from bnlab.instructor import notebooks


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    cells: dict  # {answer cell grade_id: source}
    fails: frozenset  # grade ids of the test cells that must fail; all others must pass
    description: str = ""


KERAS_LAYER_TESTS = frozenset(
    f"test_keras_{part}_{what}" for part in ("fc", "conv") for what in ("structure", "population", "outputs")
)


def nn_tests(parts=("fc", "conv"), whats=("variables", "population", "training_output", "inference_output")):
    return frozenset(f"test_nn_{part}_{what}" for part in parts for what in whats)


NN_TESTS = nn_tests()
# the multiple-choice and numeric questions' test cells and every answer cell, read from source/ (a new graded cell
# there needs no edit here)
QUESTION_TESTS = frozenset(
    gid
    for gid, meta, code in notebooks.code_cells()
    if meta.get("grade") and re.search(r"grading\.check_(choice|number)\(", code)
)
ANSWER_CELLS = tuple(notebooks.solution_answers())
ALL_TESTS = frozenset(gid for gid, meta, _ in notebooks.code_cells() if meta.get("grade"))  # every graded code cell
assert KERAS_LAYER_TESTS | NN_TESTS | QUESTION_TESTS | {"test_keras_train_step", "test_diagnose_fix"} <= ALL_TESTS
