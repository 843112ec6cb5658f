"""bnlab.questions: teaching messages that never give the answer, and the "what really happens" cells."""

from __future__ import annotations

import re
import types

import numpy as np
import pytest

import bnlab
from bnlab import grading, questions
from bnlab.instructor import notebooks

tf = bnlab.tf
keras = tf.keras


def _expected_answers() -> dict:
    """``{question: right letter}`` from the hidden tests of the source notebook."""
    found = {}
    for cell in notebooks.read().cells:
        for letter, question in re.findall(r'expected="(\w)", question="(\w+)"', cell.source):
            found[question] = letter
    return found


def test_every_question_of_the_notebook_has_a_message_for_each_wrong_option():
    expected = _expected_answers()
    assert set(expected) == set(questions.TEACH) and len(expected) >= 4
    for question, right in expected.items():
        assert set(questions.TEACH[question]) == set("abcd") - {right}, question


def test_messages_teach_without_naming_the_right_option():
    for question, right in _expected_answers().items():
        for wrong in set("abcd") - {right}:
            message = questions.teach(question, f" {wrong.upper()} ")
            assert message.startswith(f"{wrong!r} is not the expected answer.")
            assert f"({right})" not in message and f"'{right}'" not in message and "answer is" not in message
            assert "lesson" in message.lower() or "feature" in message


def test_unknown_question_or_letter_gets_a_generic_line():
    assert "not the expected answer" in questions.teach("no_such_question", "a")


def test_without_the_grader_side_messages_every_letter_gets_the_same_line(monkeypatch):
    """The student bundle's copy has no TEACH block: teach must then say the same for every letter."""
    monkeypatch.setattr(questions, "TEACH", {})
    for question in _expected_answers():
        lines = {questions.teach(question, letter).replace(repr(letter), "X") for letter in "abcd"}
        assert len(lines) == 1, lines


def test_check_choice_uses_the_teaching_message_and_accepts_the_right_letter():
    right = _expected_answers()["single_images"]
    grading.check_choice(right.upper(), "abcd", expected=right, question="single_images")
    wrong = next(letter for letter in "abcd" if letter != right)
    with pytest.raises(AssertionError, match=re.escape(questions.TEACH["single_images"][wrong][:40])):
        grading.check_choice(wrong, "abcd", expected=right, question="single_images")


def _tiny_bn_model(seed=0):
    keras.utils.set_random_seed(seed)
    images = keras.Input(shape=(28, 28, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(images)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, use_bias=False)(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    return keras.Model(images, keras.layers.Dense(10)(x))


def test_single_images_with_batch_statistics_all_get_one_answer_and_the_model_is_unchanged(capsys):
    rng = np.random.default_rng(0)
    test = types.SimpleNamespace(
        images=rng.random((12, 28, 28, 1), dtype=np.float32), labels=rng.integers(0, 10, size=12)
    )
    model = _tiny_bn_model()
    for _ in range(3):  # move the moving averages away from their initial values
        model(rng.random((16, 28, 28, 1), dtype=np.float32), training=True)
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    found = questions.show_single_images(model, types.SimpleNamespace(test=test), count=12)
    own, population = found["each image's own batch statistics"], found["population statistics (inference mode)"]
    assert own["digits"] == 1  # the dense layer's BN turns every single image into its beta
    assert population["digits"] >= 1 and 0.0 <= population["accuracy"] <= 1.0
    together = found["batches of 4, each normalized with its own statistics"]
    assert together["digits"] > 1  # batches of 4 different images keep them apart
    for old, variable in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(old, variable.numpy())
    out = capsys.readouterr().out
    assert "scored one at a time" in out and "scored in batches of 4" in out and "batch of 12" not in out


def _layer(momentum):
    def layer(prev_layer, num_units):
        x = keras.layers.Dense(num_units, activation="relu")(prev_layer)
        return keras.layers.BatchNormalization(momentum=momentum)(x)

    layer.__name__ = f"layer_momentum_{momentum}"
    return layer


def _working_layer(prev_layer, num_units):
    x = keras.layers.Dense(num_units, use_bias=False)(prev_layer)
    return keras.layers.ReLU()(keras.layers.BatchNormalization()(x))


def _share(table):
    return float(np.median([(r["after"] - r["before"]) / (r["batch"] - r["before"]) for r in table]))


def test_the_classmates_recording_is_what_a_layer_built_as_part_3_describes_records():
    """The shipped numbers come from a real layer (Dense with ReLU, BatchNormalization with Keras momentum 0.1),
    recorded again here; the layer itself ships nowhere."""
    recorded = questions.CLASSMATE
    moves = recorded["symptom"]
    np.testing.assert_allclose(moves["the classmate's layer"], questions.output_moves(_layer(0.1)), rtol=2e-3)
    np.testing.assert_allclose(moves["a layer that works"], questions.output_moves(_working_layer), rtol=0.05)
    unit, table = questions.population_trace(_layer(0.1))
    assert unit == recorded["unit"]
    for mine, theirs in zip(table, recorded["trace"], strict=True):
        assert mine == pytest.approx(theirs, rel=1e-4)


def test_the_recording_shows_the_symptom_and_the_share_the_question_asks_for(capsys):
    moves = questions.CLASSMATE["symptom"]
    assert min(moves["the classmate's layer"]) > 10 * max(moves["a layer that works"])
    rows = questions.show_classmate_trace()
    out = capsys.readouterr().out
    assert "population mean of unit" in out and "%" not in out and "momentum" not in out  # the rows, not the share
    # worked out from the printed 4-decimal rows, as the student does
    printed = [[float(v) for v in line.split()[1:]] for line in out.splitlines() if line.strip()[:3].isdigit()]
    assert len(printed) == len(rows) == 4
    assert _share([dict(zip(("before", "batch", "after"), r)) for r in printed]) == pytest.approx(0.9, abs=0.01)
    assert _expected_answers()["diagnose_memory"] == "d"  # (d) about 90%
    questions.show_classmate_symptom()
    out = capsys.readouterr().out
    assert "the classmate's layer" in out and "momentum=" not in out and "BatchNormalization(" not in out


def test_nothing_shipped_builds_the_classmates_layer_or_a_working_one():
    """Part 3's answer is worked out from the records: the module holds no layer function to print or pass on."""
    import inspect

    source = inspect.getsource(questions)
    assert "momentum=0.1" not in source and "buggy_fully_connected" not in source
    assert not re.search(r"keras\.layers\.(Dense|ReLU|Activation)\(", source)  # no layer a network could use
    assert not hasattr(questions, "share_of_new_batch")


def test_a_frozen_layer_is_reported_as_not_normalizing_rather_than_fixed(capsys):
    def frozen(prev_layer, num_units):
        x = keras.layers.Dense(num_units, activation="relu")(prev_layer)
        return keras.layers.BatchNormalization(momentum=0.1, trainable=False)(x)

    assert questions.output_moves(frozen, warmup=20, steps=2) == [0.0, 0.0]
    questions.trace_statistics(frozen, warmup=5, verdict=True)
    assert "do not move in training mode" in capsys.readouterr().out


@pytest.mark.parametrize("momentum", [0.5, 0.8, 0.9, 0.99, 0.999])
def test_the_trace_measures_the_share_of_each_batch_and_accepts_every_decay_the_checks_accept(momentum, capsys):
    table = questions.trace_statistics(_layer(momentum), warmup=30, verdict=True)
    assert len(table) == 4
    assert _share(table) == pytest.approx(1 - momentum, abs=1e-3)
    out = capsys.readouterr().out
    assert "Fixed:" in out and "Not fixed" not in out


@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_the_trace_says_a_momentum_below_the_accepted_range_is_not_fixed(momentum, capsys):
    table = questions.trace_statistics(_layer(momentum), warmup=30, verdict=True)
    assert _share(table) == pytest.approx(1 - momentum, abs=1e-3)
    out = capsys.readouterr().out
    assert "Not fixed" in out and f"{1 - momentum:.0%}" not in out  # the verdict names the bound, not the share


@pytest.mark.parametrize("momentum", [0.9999, 0.99999])
def test_the_trace_says_a_momentum_above_the_accepted_range_barely_moves(momentum, capsys):
    """The checks fail a decay above MAX_MOMENTUM (its statistics barely move in the run); the trace agrees."""
    assert momentum > grading.checks.MAX_MOMENTUM
    questions.trace_statistics(_layer(momentum), warmup=30, verdict=True)
    out = capsys.readouterr().out
    assert "Not fixed the other way" in out and "Fixed:" not in out


def test_the_classmates_kind_of_layer_fails_the_check_that_names_its_bug():
    with pytest.raises(AssertionError, match=r"wrong way round|0\.100"):
        grading.check_population_statistics(_layer(0.1), "dense", api="keras")


def test_the_trace_of_a_layer_without_batch_normalization_says_so(capsys):
    def plain(prev_layer, num_units):
        return keras.layers.Dense(num_units, activation="relu")(prev_layer)

    assert questions.trace_statistics(plain, warmup=2) == []
    assert "no Keras BatchNormalization layer" in capsys.readouterr().out


@pytest.mark.parametrize("shape", [(64, 14, 14, 20), (8, 5, 3, 4), (16, 7, 7, 2)])
def test_the_averaged_count_is_measured_not_assumed(shape, capsys):
    assert questions.show_averaged_count(shape) == shape[0] * shape[1] * shape[2]
    assert f"averages {shape[0] * shape[1] * shape[2]:,} numbers" in capsys.readouterr().out
    assert _expected_answers()["statistics"] == "c"  # (c) 12,544 = 64 * 14 * 14 in the question
