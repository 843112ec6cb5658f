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
    together = found["one batch of all 12, normalized with its own statistics"]
    assert together["digits"] > 1  # a batch of 12 different images keeps them apart
    for old, variable in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(old, variable.numpy())
    assert "scored one at a time" in capsys.readouterr().out


def _layer(momentum):
    def layer(prev_layer, num_units):
        x = keras.layers.Dense(num_units, activation="relu")(prev_layer)
        return keras.layers.BatchNormalization(momentum=momentum)(x)

    layer.__name__ = f"layer_momentum_{momentum}"
    return layer


def test_symptom_separates_the_buggy_momentum_from_a_fixed_one(capsys):
    buggy = questions.show_symptom(_layer(0.1), warmup=60, steps=4)
    fixed = questions.show_symptom(_layer(0.99), warmup=60, steps=4)
    reference = questions.REFERENCE
    assert buggy["layer_momentum_0.1"] > 10 * buggy[reference]
    assert fixed["layer_momentum_0.99"] < 3 * fixed[reference] + 1e-3
    out = capsys.readouterr().out
    assert "mean absolute change" in out
    assert "momentum=" not in out and "BatchNormalization(" not in out  # behaviour only, never the settings


def test_a_frozen_layer_is_reported_as_not_normalizing_rather_than_fixed(capsys):
    def frozen(prev_layer, num_units):
        x = keras.layers.Dense(num_units, activation="relu")(prev_layer)
        return keras.layers.BatchNormalization(momentum=0.1, trainable=False)(x)

    shown = questions.show_symptom(frozen, warmup=20, steps=2)
    assert shown["frozen"] == 0.0  # its statistics never move: the still output alone would look fixed
    out = capsys.readouterr().out
    assert "Note: frozen gives the same output in training mode as in inference mode" in out
    assert f"Note: {questions.REFERENCE}" not in out  # a layer that works gets no such note
    questions.trace_statistics(frozen, warmup=5, verdict=True)
    assert "do not move in training mode" in capsys.readouterr().out


@pytest.mark.parametrize("momentum", [0.5, 0.8, 0.9, 0.99, 0.999])
def test_the_trace_measures_the_share_of_each_batch_and_accepts_every_decay_the_checks_accept(momentum, capsys):
    table = questions.trace_statistics(_layer(momentum), warmup=30, verdict=True)
    assert len(table) == 4
    assert questions.share_of_new_batch(table) == pytest.approx(1 - momentum, abs=1e-3)
    out = capsys.readouterr().out
    assert "Fixed:" in out and "Not fixed" not in out


@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_the_trace_says_a_momentum_below_the_accepted_range_is_not_fixed(momentum, capsys):
    table = questions.trace_statistics(_layer(momentum), warmup=30, verdict=True)
    assert questions.share_of_new_batch(table) == pytest.approx(1 - momentum, abs=1e-3)
    assert "Not fixed" in capsys.readouterr().out


def test_the_classmates_trace_gives_the_rows_but_not_the_share(capsys):
    table = questions.trace_statistics(questions.buggy_fully_connected, warmup=30, verdict=True)
    out = capsys.readouterr().out
    assert "Work out the classmate's share" in out and "%" not in out
    assert questions.share_of_new_batch(table) == pytest.approx(0.9, abs=1e-3)  # the question's answer: (d)
    assert _expected_answers()["diagnose_memory"] == "d"
    with pytest.raises(RuntimeError, match="classmate's layer"):  # wrapped, it does not build: no verdict
        questions.trace_statistics(lambda p, n: questions.buggy_fully_connected(p, n), verdict=True)


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


def test_the_symptom_demo_is_skipped_under_nbgrader_only_when_asked(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert questions.show_symptom(questions.buggy_fully_connected, skip_when_grading=True) == {}
    assert "skipped under nbgrader (autograde)" in capsys.readouterr().out
    shown = questions.show_symptom(questions.buggy_fully_connected, warmup=20, steps=2)  # a student's own call
    assert set(shown) == {"buggy_fully_connected", questions.REFERENCE}
    monkeypatch.delenv("NBGRADER_EXECUTION")
    shown = questions.show_symptom(questions.buggy_fully_connected, warmup=20, steps=2, skip_when_grading=True)
    assert set(shown) == {"buggy_fully_connected", questions.REFERENCE}


def test_the_classmates_layer_shows_the_symptom_and_fails_the_check_that_names_its_bug():
    found = questions.show_symptom(questions.buggy_fully_connected, warmup=60, steps=4)
    assert found["buggy_fully_connected"] > 10 * found[questions.REFERENCE]
    with questions._classmate_demo(), pytest.raises(AssertionError, match=r"wrong way round|0\.100"):
        grading.check_population_statistics(questions.buggy_fully_connected, "dense", api="keras")


def test_the_classmates_layer_builds_only_inside_the_symptom_demo():
    """Its correct parts would pass Part 1's structure and output checks: outside show_symptom it raises."""
    with pytest.raises(AssertionError):
        grading.check_structure(questions.buggy_fully_connected, "dense", api="keras")
    with pytest.raises(RuntimeError, match="classmate's layer"):
        questions.buggy_fully_connected(keras.Input(shape=(3,)), 4)
