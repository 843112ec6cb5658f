"""What every part of the suite shares: the Variant record and the graded test cells' grade ids."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    cells: dict          # {answer cell grade_id: source}
    fails: frozenset     # grade ids of the test cells that must fail; all others must pass
    description: str = ""


KERAS_LAYER_TESTS = frozenset(f"test_keras_{part}_{what}" for part in ("fc", "conv")
                              for what in ("structure", "population", "outputs"))


def nn_tests(parts=("fc", "conv"), whats=("variables", "population", "training_output", "inference_output")):
    return frozenset(f"test_nn_{part}_{what}" for part in parts for what in whats)


NN_TESTS = nn_tests()
QUESTION_TESTS = frozenset({"test_q_single_images", "test_q_statistics"})
ALL_TESTS = KERAS_LAYER_TESTS | {"test_keras_train_step", "test_diagnose_fix"} | QUESTION_TESTS | NN_TESTS
