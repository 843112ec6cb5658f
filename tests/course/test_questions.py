"""bnlab.questions: teaching messages that never give the answer, and the "what really happens" cells."""

from __future__ import annotations

import ast
import re
import types

import numpy as np
import pytest

import bnlab
from bnlab import exercise, grading, questions, variants
from bnlab.instructor import notebooks

tf = bnlab.tf
keras = tf.keras


HIDDEN_CHOICE = re.compile(r'check_choice\(\w+, "abcd", expected="(\w+)", question="(\w+)"\)')
HIDDEN_NUMBER = re.compile(r'check_number\(\w+, "(\w+)", expected=("\w+"|\[[^\]]*\])')
IDS = ("ann", "bob", "12345", "67890", "doejane")


@pytest.fixture
def student(monkeypatch):
    """Grade and show the variants of student ``ann`` (as the grader's kernel does)."""
    monkeypatch.setenv(variants.STUDENT_VARIABLE, "ann")
    return "ann"


def _expected_answers() -> dict:
    """``{question: what the hidden test expects}`` from the source notebook: an option's key, a candidate's key, or
    the list of each variant's right value."""
    found = {}
    for cell in notebooks.read().cells:
        for key, question in HIDDEN_CHOICE.findall(cell.source):
            found[question] = key
        for question, expected in HIDDEN_NUMBER.findall(cell.source):
            found[question] = ast.literal_eval(expected)
    return found


def test_every_question_of_the_notebook_has_a_message_for_each_wrong_answer():
    expected = _expected_answers()
    assert set(expected) == set(questions.TEACH) == {*questions.OPTIONS, "statistics", "diagnose_memory"}
    for question, right in questions.OPTIONS.items():
        assert set(questions.TEACH[question]) == set(right) - {expected[question]}, question
    assert set(questions.TEACH["statistics"]) == set(questions.candidates("statistics", "ann")) - {
        expected["statistics"]
    }
    assert set(questions.TEACH["diagnose_memory"]) == {"old_share", "other"}


def test_messages_are_true_under_every_order_and_case_and_never_name_the_right_option():
    """No message names a letter or a number of a variant: each is true whatever was drawn for the student."""
    for question, messages in questions.TEACH.items():
        for message in messages.values():
            assert not re.search(r"\([a-d]\)|'[a-d]'|\b[a-d]\)", message), message
            if question in ("statistics", "diagnose_memory"):  # their numbers differ per student
                assert not re.search(r"\d", message.split("(lesson")[0]), message
    expected = _expected_answers()
    for student in IDS:
        for question in questions.OPTIONS:
            for letter, key in questions.choices(question, student).items():
                if key == expected[question]:
                    continue
                with variants.graded_as(student):
                    message = questions.teach(question, f" {letter.upper()} ")
                assert message.startswith(f"{letter!r} is not the expected answer.")
                assert message.endswith(questions.TEACH[question][key])
                assert "answer is" not in message and "lesson" in message.lower()


def test_unknown_question_or_letter_gets_a_generic_line(student):
    assert "not the expected answer" in questions.teach("no_such_question", "a")
    assert "not the expected answer" in questions.teach("plain_network", "e")


def test_without_the_grader_side_messages_every_letter_gets_the_same_line(monkeypatch, student):
    """The student bundle's copy has no TEACH block: teach must then say the same for every letter."""
    monkeypatch.setattr(questions, "TEACH", {})
    for question in questions.OPTIONS:
        lines = {questions.teach(question, letter).replace(repr(letter), "X") for letter in "abcd"}
        assert len(lines) == 1, lines


def test_check_choice_maps_the_right_key_to_the_students_letter_and_teaches_a_wrong_one(student):
    right = _expected_answers()["single_images"]
    letters = {key: letter for letter, key in questions.choices("single_images").items()}
    grading.check_choice(letters[right].upper(), "abcd", expected=right, question="single_images")
    wrong = next(key for key in letters if key != right)
    with pytest.raises(AssertionError, match=re.escape(questions.TEACH["single_images"][wrong][:40])):
        grading.check_choice(letters[wrong], "abcd", expected=right, question="single_images")
    with pytest.raises(AssertionError, match="not an option"):
        grading.check_choice("a", "abcd", expected="no_such_key", question="single_images")


def test_one_students_letters_are_wrong_for_most_other_students():
    """The same letter for the right option fits about a quarter of the class, not all of it."""
    for question in questions.OPTIONS:
        right = _expected_answers()[question]
        letters = [
            next(letter for letter, key in questions.choices(question, f"s{i}").items() if key == right)
            for i in range(400)
        ]
        shares = {letter: letters.count(letter) / len(letters) for letter in "abcd"}
        print(question, "letter of the right option over 400 ids:", shares)
        assert all(0.17 < share < 0.33 for share in shares.values()), shares


def test_check_number_expects_the_students_own_value_and_teaches_what_a_wrong_one_claims(student):
    case = questions.statistics_case()
    batch, height, width, _ = case["shape"]
    grading.check_number(batch * height * width, "statistics", expected="batch_and_positions")
    with pytest.raises(AssertionError, match="only the positions of one image|positions of one image"):
        grading.check_number(height * width, "statistics", expected="batch_and_positions")
    with pytest.raises(AssertionError, match="Answer with a number"):
        grading.check_number("12", "statistics")
    expected = _expected_answers()["diagnose_memory"]
    right = expected[variants.draw("diagnose_memory", len(expected))]
    grading.check_number(right + 0.01, "diagnose_memory", expected=expected, within=0.02)
    with pytest.raises(AssertionError, match="share of its old value"):
        grading.check_number(
            round(1 - right, 2),
            "diagnose_memory",
            expected=expected,
            within=0.02,
            wrong={"old_share": [round(1 - v, 2) for v in expected]},
        )


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


# the classmates' momenta, in the order of questions.CLASSMATES (the course ships only their recordings)
MOMENTA = (0.1, 0.15, 0.2, 0.25)


def test_each_classmates_recording_is_what_a_layer_built_as_part_3_describes_records():
    """The shipped numbers come from real layers (Dense with ReLU, BatchNormalization with the classmate's Keras
    momentum), recorded again here; the layers themselves ship nowhere."""
    assert len(questions.CLASSMATES) == len(MOMENTA)
    working = questions.output_moves(_working_layer)
    for momentum, recorded in zip(MOMENTA, questions.CLASSMATES):
        moves = recorded["symptom"]
        np.testing.assert_allclose(moves["the classmate's layer"], questions.output_moves(_layer(momentum)), rtol=2e-3)
        np.testing.assert_allclose(moves["a layer that works"], working, rtol=0.05)
        unit, table = questions.population_trace(_layer(momentum))
        assert unit == recorded["unit"]
        for mine, theirs in zip(table, recorded["trace"], strict=True):
            assert mine == pytest.approx(theirs, rel=1e-4)


def test_every_classmate_has_the_same_bug_and_the_share_the_hidden_test_expects(capsys):
    """Comparable difficulty: each classmate forgets too fast (a share of three quarters or more, far above what the
    checks accept), shows the symptom as clearly, and the share worked out from the printed rows is the hidden
    test's value for that variant."""
    expected = _expected_answers()["diagnose_memory"]
    assert expected == pytest.approx([1 - m for m in MOMENTA])
    for right, recording in zip(expected, questions.CLASSMATES, strict=True):
        moves = recording["symptom"]
        assert min(moves["the classmate's layer"]) > 10 * max(moves["a layer that works"])
        assert right >= 1.5 * questions.MAX_SHARE
        rows = questions.show_classmate_trace(recording)
        out = capsys.readouterr().out
        assert "population mean of unit" in out and "%" not in out and "momentum" not in out  # the rows, not the share
        # worked out from the printed 4-decimal rows, as the student does
        printed = [[float(v) for v in line.split()[1:]] for line in out.splitlines() if line.strip()[:3].isdigit()]
        assert len(printed) == len(rows) == 4
        assert _share([dict(zip(("before", "batch", "after"), r)) for r in printed]) == pytest.approx(right, abs=0.01)
        questions.show_classmate_symptom(recording)
        out = capsys.readouterr().out
        assert "the classmate's layer" in out and "momentum=" not in out and "BatchNormalization(" not in out


def test_the_classmate_and_the_layer_asked_about_are_drawn_per_student_and_stable():
    draws = {}
    for i in range(400):
        student = f"s{i}"
        assert questions.classmate(student) is questions.classmate(student)
        assert questions.statistics_case(student) == questions.statistics_case(student)
        draws.setdefault("classmate", []).append(questions.CLASSMATES.index(questions.classmate(student)))
        draws.setdefault("count", []).append(questions.candidates("statistics", student)["batch_and_positions"])
    classmates = np.bincount(draws["classmate"], minlength=len(questions.CLASSMATES)) / 400
    counts = {count: draws["count"].count(count) for count in set(draws["count"])}
    print(
        "classmates over 400 ids:",
        classmates,
        "; distinct counts:",
        len(counts),
        "; most common:",
        max(counts.values()),
    )
    assert all(0.17 < share < 0.33 for share in classmates)
    assert len(counts) >= 25 and max(counts.values()) < 0.1 * 400


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


def test_each_students_layer_is_a_real_one_shown_with_its_shape_and_unlike_the_measured_demo(monkeypatch, capsys):
    """The case printed is a layer of the exercise's network (its output shape through Keras), its right count is
    what the measurement finds for that shape, and it never equals the demo's count (the demo would answer it)."""
    demo = 64 * 7 * 7
    for depth in questions.STATISTICS_DEPTHS:
        x = keras.Input(shape=(28, 28, 1), batch_size=2)
        for d in range(1, depth + 1):
            x = keras.layers.Conv2D(d * 4, 3, strides=2 if d % 3 == 0 else 1, padding="same")(x)
        assert tuple(x.shape) == exercise.conv_output_shape(depth, 2)
    for student in IDS:
        monkeypatch.setenv(variants.STUDENT_VARIABLE, student)
        case = questions.show_statistics_case()
        assert str(case["shape"]) in capsys.readouterr().out
        count = questions.candidates("statistics")["batch_and_positions"]
        assert count != demo and questions.show_averaged_count(case["shape"]) == count
