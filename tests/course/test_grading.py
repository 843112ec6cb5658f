"""The grading checks on the solution, on the mutation suite's bugs and on its accepted alternatives,
run in-process on the answer cells of the source notebook (the kernel's view; tests/test_integrity.py
runs the trusted re-verification, the slow pipeline tests run nbgrader)."""

from __future__ import annotations

import ast
import re

import numpy as np
import pytest
from submissions import ALL_TESTS, ALTERNATIVES, BUGS, NN_TESTS, TAMPERING, Variant

import bnlab
from bnlab import grading
from bnlab.grading import numeric
from bnlab.instructor.notebooks import code_cells
from bnlab.instructor.preprocessors.verify import SKIPPED


def _names(source: str) -> tuple[set, set]:
    """(names a cell defines at top level, names it reads)."""
    tree = ast.parse(source)
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    defined |= {
        t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    }
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return defined, read


def _affected_tests(replacements: dict) -> set:
    """The test cells that read a name whose latest definition before them is a replaced cell."""
    latest, affected = {}, set()
    for grade_id, meta, source in code_cells():
        defined, read = _names(source)
        defined |= _names(replacements.get(grade_id, source))[0]
        if meta.get("grade"):
            if any(latest.get(name) in replacements for name in read):
                affected.add(grade_id)
        else:
            latest.update({name: grade_id for name in defined})
    return affected


_SOLUTION: dict = {}
DISAGREEMENTS: list = []  # (grade_id, [visible verdict, hidden verdict]) where only one of them failed


def grade_in_process(replacements: dict) -> dict:
    """Execute the notebook's code (training runs skipped) with some answer cells replaced, as the
    kernel would. Returns ``{test grade_id: None if passed else the failure message}``. Test cells that
    read nothing the replaced cells define keep the solution's verdict (they run the very same code)."""
    if replacements and not _SOLUTION:
        _SOLUTION.update(grade_in_process({}))
    affected = _affected_tests(replacements) if replacements else None
    namespace: dict = {}
    results = {}
    for grade_id, meta, source in code_cells():
        if grade_id in SKIPPED:
            continue
        source = replacements.get(grade_id, source)
        if meta.get("grade"):
            if affected is not None and grade_id not in affected:
                results[grade_id] = _SOLUTION[grade_id]
                continue
            visible, _, hidden = source.partition("### BEGIN HIDDEN TESTS")
            verdicts = []
            for part in (visible, hidden):  # both run, so that their verdicts can be compared
                try:
                    exec(part, namespace)
                    verdicts.append(None)
                except AssertionError as exc:
                    verdicts.append(str(exc))
            results[grade_id] = verdicts[0] or verdicts[1]
            # (a question's visible check only asks for one of the options; its hidden check grades it)
            if hidden and not grade_id.startswith("test_q_") and (verdicts[0] is None) != (verdicts[1] is None):
                DISAGREEMENTS.append((grade_id, verdicts))
        else:
            exec(source, namespace)
    return results


def test_only_unaffected_tests_are_skipped():
    assert _affected_tests({"nn_layers": ""}) == {t for t in ALL_TESTS if t.startswith("test_nn_")}
    assert _affected_tests({"keras_training": ""}) == {"test_keras_train_step"}
    assert _affected_tests({"keras_layers": ""}) >= {"test_keras_fc_structure", "test_keras_conv_outputs"}


@pytest.fixture(scope="module")
def solution_results():
    if not _SOLUTION:
        _SOLUTION.update(grade_in_process({}))
    return dict(_SOLUTION)


def test_solution_passes_every_check(solution_results):
    assert set(solution_results) == ALL_TESTS
    assert {k: v for k, v in solution_results.items() if v} == {}


def test_suite_is_large_enough():
    assert len(BUGS) >= 25 and len(ALTERNATIVES) >= 12
    assert len({v.name for v in BUGS + ALTERNATIVES}) == len(BUGS) + len(ALTERNATIVES)
    assert all(v.fails and v.fails <= ALL_TESTS for v in BUGS)


@pytest.mark.parametrize("variant", BUGS, ids=lambda v: v.name)
def test_bug_loses_points_on_the_test_that_names_it(variant: Variant):
    DISAGREEMENTS.clear()
    results = grade_in_process(variant.cells)
    assert DISAGREEMENTS == [], "the visible and the hidden checks of a cell disagree"
    failed = {k for k, v in results.items() if v}
    assert failed == set(variant.fails), {k: results[k] for k in failed ^ set(variant.fails)}
    for test_id in failed:
        assert_teaches(test_id, results[test_id])


JUDGED = {
    "test_keras_fc": "fully_connected",
    "test_keras_conv": "conv_layer",
    "test_keras_train_step": "train_step",
    "test_nn_fc": "fully_connected",
    "test_nn_conv": "conv_layer",
    "test_diagnose_fix": "fixed_fully_connected",
    "test_backward": "batchnorm_backward",
}
LESSON_SECTION = re.compile(r"lesson, section \d+, \*[^*]+\*")
INTERNAL = ("cannot reshape", "int() argument", "grading", "probe", "Traceback", "check_", "seed", "arg=")


def assert_teaches(test_id: str, message: str) -> None:
    """A failure message: at most 5 lines, the lesson section by its heading, the judged function by its own
    name, and no text from inside the grader."""
    assert len(message.splitlines()) <= 5 and len(message) < 800, message
    assert not any(word in message for word in INTERNAL), message
    if test_id.startswith("test_q_"):
        return  # a question's answer, not a function (its teaching messages come from bnlab.questions)
    assert LESSON_SECTION.search(message), message
    name = next(v for k, v in JUDGED.items() if test_id.startswith(k))
    assert re.search(rf"(?<![\w.]){name}(?!\w)", message), (name, message)


@pytest.mark.parametrize("variant", ALTERNATIVES, ids=lambda v: v.name)
def test_alternative_gets_full_marks(variant: Variant):
    DISAGREEMENTS.clear()
    results = grade_in_process(variant.cells)
    assert DISAGREEMENTS == []
    assert {k: v for k, v in results.items() if v} == {}


MESSAGES = {
    "keras_training_flag_never_set": ("test_keras_train_step", "ran in inference mode"),
    "keras_hard_coded_training_flag": ("test_keras_conv_outputs", "training flag fixed inside"),
    "keras_hard_coded_training_flag_custom_layer": ("test_keras_fc_outputs", "training flag fixed inside"),
    "diagnose_hard_coded_training_flag": ("test_diagnose_fix", "training flag fixed inside"),
    "keras_frozen_batch_norm": ("test_keras_fc_population", "trainable=False"),
    "keras_frozen_block": ("test_keras_conv_outputs", "trainable=False"),
    "diagnose_frozen": ("test_diagnose_fix", "trainable=False"),
    "keras_conv_axis_list": ("test_keras_conv_structure", "names the one axis that keeps its own statistics"),
    "keras_dense_axis_0": ("test_keras_fc_outputs", "axis"),
    "keras_bn_before_the_linear_layer": ("test_keras_fc_structure", "one per feature of the layer's input"),
    "diagnose_normalizes_the_input": ("test_diagnose_fix", "normalizes what goes into the layer"),
    "diagnose_momentum_one": ("test_diagnose_fix", "never changed"),
    "keras_train_step_own_optimizer": ("test_keras_train_step", "optimizer it is given"),
    "keras_loss_from_inference_pass": ("test_keras_train_step", "training-mode loss"),
    "keras_train_step_eager_only": ("test_keras_train_step", "tf.function"),
    "keras_no_relu": ("test_keras_fc_outputs", "never applies its nonlinearity"),
    "keras_momentum_wrong_way_round": ("test_keras_fc_population", "the weight of the old average"),
    "keras_conv_statistics_wrong_axis": ("test_keras_conv_structure", "Keras' axis names the axis that keeps"),
    "keras_conv_axis_height": ("test_keras_conv_population", "Keras' axis names the axis that keeps"),
    "keras_no_batch_norm": ("test_keras_fc_structure", "no keras.layers.BatchNormalization"),
    "nn_no_population_update": ("test_nn_fc_population", "never changed"),
    "nn_decay_wrong_way_round": ("test_nn_conv_population", "wrong way round"),
    "nn_batch_statistics_at_inference": ("test_nn_conv_inference_output", "batch of one"),
    "nn_variance_instead_of_standard_deviation": ("test_nn_fc_training_output", "sqrt(variance + epsilon)"),
    "nn_population_statistics_trainable": ("test_nn_fc_variables", "are trainable, so the optimizer"),
    "nn_updates_during_inference": ("test_nn_fc_inference_output", "changed in inference mode"),
    "nn_conv_moments_over_batch_axis_only": ("test_nn_conv_population", "shape"),
    "nn_stop_gradient_on_batch_statistics": ("test_nn_fc_training_output", "stop_gradient"),
    "nn_no_relu": ("test_nn_conv_training_output", "never applies its nonlinearity"),
    "nn_accumulates_statistics_of_another_tensor": ("test_nn_fc_population", "accumulates the population statistics"),
    "nn_numpy_on_tensors": ("test_nn_fc_variables", "inside tf.function"),
    "nn_wrong_initial_variance": ("test_nn_fc_variables", "variance ones"),
    "diagnose_left_unfixed": ("test_diagnose_fix", "the weight of the old average"),
    "q_single_images_not_an_option": ("test_q_single_images", "one of"),
    "keras_gamma_starts_at_zero": ("test_keras_fc_outputs", "gamma starts at zero"),
    "keras_no_beta": ("test_keras_conv_structure", "no beta (center=False)"),
    "keras_layers_cached_across_calls": ("test_keras_fc_population", "a second call returned layers the first"),
    "keras_leaky_relu": ("test_keras_conv_outputs", "the nonlinearity after it is not a ReLU"),
    "keras_momentum_barely_moves": ("test_keras_fc_population", "barely move"),
    "diagnose_momentum_barely_moves": ("test_diagnose_fix", "barely move"),
    "nn_variables_shape_1_by_c": ("test_nn_fc_variables", "exist but have the wrong shape"),
    "nn_conv_variables_per_position": ("test_nn_conv_variables", "not one value per position"),
    "nn_leaky_relu": ("test_nn_fc_training_output", "the nonlinearity after it is not a ReLU"),
    "nn_conv_moments_over_all_four_axes": ("test_nn_conv_population", "one variance shared by every feature map"),
    "nn_gamma_starts_at_zero": ("test_nn_conv_training_output", "gamma starts at zero"),
    "nn_decay_barely_moves": ("test_nn_conv_population", "barely move"),
}
# what these classes were told before, untrue for them: no failing test of theirs may say it (issue 29)
UNTRUE = {
    "nn_variables_shape_1_by_c": "could not find the variable",
    "nn_conv_variables_per_position": "could not find the variable",
    "keras_leaky_relu": "its output is not batch normalization",
    "nn_leaky_relu": "its output is not batch normalization",
    "nn_conv_moments_over_all_four_axes": "standard deviation",
    "diagnose_momentum_barely_moves": "accumulates the population statistics",
    "keras_momentum_barely_moves": "accumulates the population statistics",
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_messages_name_the_bug(name):
    test_id, phrase = MESSAGES[name]
    variant = next(v for v in BUGS if v.name == name)
    results = grade_in_process(variant.cells)
    assert results[test_id] and phrase in results[test_id], (name, results[test_id])
    untrue = {t: results[t] for t in variant.fails if name in UNTRUE and UNTRUE[name] in (results[t] or "")}
    assert untrue == {}, untrue


def test_nested_block_is_found():
    keras = bnlab.tf.keras

    def fully_connected(prev_layer, num_units):
        block = keras.Sequential([keras.layers.Dense(num_units), keras.layers.BatchNormalization()])
        return keras.layers.ReLU()(block(prev_layer))

    grading.check_structure(fully_connected, "dense", api="keras")
    grading.check_population_statistics(fully_connected, "dense", api="keras")


def test_failure_shows_only_its_message():
    def fully_connected(prev_layer):  # forgot num_units
        return prev_layer

    with pytest.raises(grading.CheckFailed, match="signature") as info:
        grading.check_structure(fully_connected, "dense", api="keras")
    assert isinstance(info.value, AssertionError)
    rendered = info.value._render_traceback_()
    assert len(rendered) <= 6 and "Traceback" not in "".join(rendered) and "grading" not in "".join(rendered)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_checks_return_none(solution_results):
    keras = bnlab.tf.keras

    def fully_connected(prev_layer, num_units):
        return keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Dense(num_units)(prev_layer)))

    assert grading.check_population_statistics(fully_connected, "dense", api="keras") is None
    assert grading.check_choice("b", "abcd") is None


def test_numpy_convolution_matches_tensorflow():
    tf = bnlab.tf
    rng = np.random.default_rng(1)
    x, kernel = rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((3, 3, 3, 4))
    for stride in (1, 2):
        expected = tf.nn.conv2d(x.astype(np.float32), kernel.astype(np.float32), stride, "SAME").numpy()
        assert np.allclose(numeric.linear(x, kernel, step=stride), expected, atol=1e-4)


def test_infer_momentum_solves_the_update():
    before, batch = np.array([0.0, 1.0]), np.array([2.0, 3.0])
    after = 0.9 * before + 0.1 * batch
    assert numeric.infer_momentum(before, after, batch) == pytest.approx(0.9)
    assert numeric.infer_momentum(before, after, before) is None


def test_messages_name_the_function_they_judge():
    """A check of `fixed_fully_connected` must not call it `fully_connected` (the message must be true)."""
    from bnlab.instructor import notebooks

    namespace = notebooks.notebook_namespace("keras_layers")

    def fixed_fully_connected(prev_layer, num_units):
        return namespace["keras"].layers.Dense(num_units, activation="relu")(prev_layer)  # no batch normalization

    with pytest.raises(grading.CheckFailed) as failure:
        grading.check_structure(fixed_fully_connected, "dense", api="keras")
    assert str(failure.value).startswith("fixed_fully_connected") and " fully_connected " not in str(failure.value)
    with pytest.raises(grading.CheckFailed) as failure:
        grading.check_structure(lambda prev_layer, n: prev_layer, "dense", api="keras")
    assert "fully_connected" in str(failure.value)


def test_every_failure_of_a_function_names_a_lesson_section():
    """Each fail() of the checks and probes passes a lesson section (only a question's answer format has none)."""
    from pathlib import Path

    from bnlab.grading import errors

    unlinked = []
    for module in ("checks", "probes"):
        path = Path(errors.__file__).with_name(f"{module}.py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "fail":
                if len(node.args) + len(node.keywords) < 2 and "Answer with one of" not in ast.unparse(node):
                    unlinked.append(f"{module}.py:{node.lineno}")
    assert unlinked == []
    assert errors.lesson_reference("inference") == "Read: lesson, section 2, *Training versus inference*."


def test_lesson_sections_named_by_messages_exist():
    """The headings the messages cite are the lesson notebook's own (section number and wording)."""
    import nbformat

    from bnlab.grading.errors import LESSON
    from bnlab.instructor.notebooks import SOURCE

    lesson = SOURCE.parents[1] / "batch_norm_lesson" / "Batch_Normalization_Lesson.ipynb"
    headings = {
        line.lstrip("#").strip()
        for cell in nbformat.read(lesson, as_version=4).cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("#")
    }
    for number, heading, sub in LESSON.values():
        assert f"{number}. {heading}" in headings, heading
        assert not sub or sub in headings, sub


SALTS = (1, 2**40 + 7, 987654321)  # the trusted re-run mixes a fresh secret salt into the checks' input seeds
SALTED = [Variant("solution", {}, frozenset(), "")] + BUGS + ALTERNATIVES


@pytest.mark.parametrize(
    ("variant", "salt"),
    # the solution under every salt; each other variant under one, in turn (every variant's in-process grading
    # costs seconds, and each salt draws its own inputs and conv depth)
    [(SALTED[0], salt) for salt in SALTS] + [(v, SALTS[i % len(SALTS)]) for i, v in enumerate(SALTED[1:])],
    ids=lambda x: x.name if isinstance(x, Variant) else f"salt{SALTS.index(x)}",
)
def test_verdicts_do_not_depend_on_the_inputs_salt(variant: Variant, salt: int):
    """Under a salt each bug fails the tests that name it and each alternative (and the solution) passes."""
    if not _SOLUTION:
        _SOLUTION.update(grade_in_process({}))
    with numeric.salted(salt):
        results = grade_in_process(variant.cells)
    failed = {k for k, v in results.items() if v}
    assert failed == set(variant.fails), (salt, {k: results[k] for k in failed ^ set(variant.fails)})


def test_salted_inputs_are_new_values_of_the_same_kind():
    with numeric.salted(5):  # the re-run draws another depth of the same stride as 12: 6 or 9
        depth = numeric.layer_arg("conv", 12)
        salted = numeric.batches("conv", 2, 0, 12)
        assert all(np.array_equal(a, b) for a, b in zip(salted, numeric.batches("conv", 2, 0, 12)))
    plain = numeric.batches("conv", 2, 0, depth)
    shape = (64, *numeric.input_shape("conv", depth))
    assert depth in (6, 9) and all(a.shape == b.shape == shape and a.dtype == np.float32 for a, b in zip(plain, salted))
    assert not any(np.allclose(a, b) for a, b in zip(plain, salted))
    assert all((a >= 0).all() and 0.05 < (a == 0).mean() < 0.8 for a in plain + salted)  # as after a ReLU
    with pytest.raises(ValueError, match="non-negative int"):
        with numeric.salted(-1):
            pass


def test_probes_have_the_shapes_of_the_networks_own_calls():
    assert numeric.input_shape("dense") == (76,) and numeric.units("dense", None) == 100
    assert [numeric.input_shape("conv", d) for d in (1, 2, 3, 4, 11, 12, 19)] == [
        (28, 28, 1),
        (28, 28, 4),
        (28, 28, 8),
        (14, 14, 12),
        (4, 4, 40),
        (4, 4, 44),
        (1, 1, 72),
    ]
    assert numeric.output_shape("conv", 12) == (2, 2, 48) and numeric.output_shape("conv", 19) == (1, 1, 76)
    assert [len(b) for b in numeric.batches("dense", 2, 0)] == [64, 64]
    with pytest.raises(ValueError, match="from 1 to 19"):
        numeric.input_shape("conv", 20)


def test_a_layer_that_normalizes_only_the_old_probe_shapes_fails(monkeypatch):
    """The lie of tests/submissions/tampering.py fooled the checks while they probed with small inputs of fixed
    shapes; with the network's own shapes it loses every test that looks at its normalization."""
    lie = next(v for v in TAMPERING if v.name == "lie_normalizes_only_the_old_probe_shapes")
    results = grade_in_process(lie.cells)
    assert {k for k, v in results.items() if v} == set(lie.fails) and lie.fails, results
    old = {"dense": (6,), "conv": (6, 6, 3)}  # the former probes: 16 (dense) or 8 (conv) examples of these
    monkeypatch.setattr(numeric, "input_shape", lambda kind, arg=None: old[kind])
    monkeypatch.setattr(numeric, "BATCH", 16)
    fooled = grade_in_process(lie.cells)  # (the step checks' reference model keeps the new sizes: not asked)
    assert {k for k, v in fooled.items() if v and k in lie.fails | NN_TESTS} == set()
