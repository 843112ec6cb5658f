"""The trusted re-verification (bnlab.instructor.preprocessors.verify): tampering earns nothing, the re-run agrees
with the kernel on honest code, and a disagreement is flagged and scored zero."""

from __future__ import annotations

import itertools
import logging
import re
import time

import nbformat
import pytest
from submissions import ALL_TESTS, ALTERNATIVES, BUGS, TAMPERING, Variant
from submissions.tampering import CHECKS_DEPTHS, KERAS_CHECKS_DEPTHS

from bnlab.grading import numeric, wire
from bnlab.instructor.notebooks import code_cells
from bnlab.instructor.preprocessors import verify


def trusted_verdicts(replacements: dict) -> dict:
    """The notebook's cells with some answer cells replaced, verified as the preprocessor does:
    test cells from the source notebook, the student's cells in a worker. ``{grade_id: message or None}``."""
    cells = [(grade_id, replacements.get(grade_id, source)) for grade_id, _, source in code_cells()]
    tests = {grade_id: source for grade_id, meta, source in code_cells() if meta.get("grade")}
    return verify.verify_cells(cells, tests, timeout=300)


def failed(verdicts: dict) -> set:
    return {name for name, message in verdicts.items() if message}


def combine(*variants: Variant) -> tuple[dict, set]:
    cells, fails = {}, set()
    for variant in variants:
        assert not set(variant.cells) & set(cells), "combined variants must touch different cells"
        cells.update(variant.cells)
        fails |= variant.fails
    return cells, fails


def test_solution_is_confirmed(monkeypatch):
    salts = []  # the salt each draw of the checks' inputs was mixed with, in this (nbgrader's) process
    draw = numeric.batches
    monkeypatch.setattr(numeric, "batches", lambda *args, **kw: salts.append(numeric._SALT.get()) or draw(*args, **kw))
    verdicts = trusted_verdicts({})
    assert set(verdicts) == ALL_TESTS
    assert failed(verdicts) == set(), verdicts
    # a fresh secret salt per test cell: never unsalted, and not one salt for the whole notebook
    assert salts and None not in salts and len(set(salts)) > 5


@pytest.mark.parametrize("variant", TAMPERING, ids=lambda v: v.name)
def test_tampering_earns_only_what_its_answers_earn(variant: Variant):
    verdicts = trusted_verdicts(variant.cells)
    assert failed(verdicts) == set(variant.fails), verdicts


def _salt_drawing(depth: int) -> int:
    """A salt under which the re-run probes conv depth ``depth`` (:func:`bnlab.grading.numeric.salted_depth`)."""
    step = 2 if depth % 3 == 0 else 1
    return next(salt for salt in itertools.count(1) if numeric.salted_depth(salt, step) == depth)


def test_the_rerun_never_probes_a_conv_layer_where_the_kernel_checks_do():
    """Every conv depth a check asks for, named or not, is replaced in the re-run by one drawn with the salt among the
    depths of the same stride that no kernel check probes: the test cells' own depths are never judged there."""
    named = {  # the depths the test cells name (the hidden cells' 3), read from the source notebook
        int(depth)
        for _, meta, source in code_cells()
        if meta.get("grade")
        for depth in re.findall(r'"conv",[^)]*\barg=(\d+)', source)
    }
    assert named and named | set(numeric.CONV_DEPTHS) <= set(numeric.KERNEL_DEPTHS)
    assert numeric.drawn_depths(1) == (1, 2, 4, 5, 7, 8, 10, 13, 14) and numeric.drawn_depths(2) == (6, 9)
    for salt in range(200):
        with numeric.salted(salt):
            for asked in (None, *numeric.KERNEL_DEPTHS, 1, 6, 14):
                depth = numeric.layer_arg("conv", asked)
                assert depth in numeric.drawn_depths() and numeric.output_shape("conv", depth)[0] > 1
                assert numeric.stride("conv", asked) == (2 if (asked or numeric.CONV_DEPTHS[0]) % 3 == 0 else 1)
                assert numeric.layer_arg("conv", depth) == depth  # resolving a drawn depth again gives it back
            assert numeric.layer_arg("dense", 3) == 3 and numeric.layer_arg("dense", None) == numeric.DENSE_UNITS
    assert numeric.layer_arg("conv", 3) == 3 and numeric.layer_arg("conv", None) == numeric.CONV_DEPTHS[0]  # kernel
    assert {numeric.salted_depth(salt, step) for salt in range(200) for step in (1, 2)} == set(numeric.drawn_depths())


def _layers(cell: str, api: str):
    """The conv_layer an answer cell defines, run as the notebook's setup cell would."""
    import bnlab
    from bnlab import nn

    namespace = {"tf": bnlab.tf, "keras": bnlab.tf.keras, "nn": nn}
    exec(cell, namespace)
    return namespace["conv_layer"]


@pytest.mark.parametrize("depth", numeric.drawn_depths())
def test_the_lie_at_the_checks_depths_loses_and_the_honest_layer_passes_at_every_drawn_depth(depth):
    """At every depth a salt can draw, whether the check names a depth of that stride or none, the layers that
    normalize only at the checks' depths fail (tf.nn and Keras) and the solution's pass (28x28 maps included)."""
    from bnlab import grading
    from bnlab.instructor.notebooks import solution_answers

    solution = solution_answers()
    asked = 3 if depth % 3 == 0 else None  # what the test cells ask for: the hidden cells' 3, or the default
    with numeric.salted(_salt_drawing(depth)):
        assert numeric.layer_arg("conv", asked) == depth
        for api, lie, honest in (
            ("nn", CHECKS_DEPTHS, solution["nn_layers"]),
            ("keras", KERAS_CHECKS_DEPTHS, solution["keras_layers"]),
        ):
            grading.check_training_output(_layers(honest, api), "conv", api, arg=asked)
            with pytest.raises(AssertionError, match="conv_layer"):
                grading.check_training_output(_layers(lie, api), "conv", api, arg=asked)


def test_the_layer_that_normalizes_only_at_the_checks_depths_fools_them_there():
    """The control of the tests above: in the kernel (no salt) the lies pass the conv checks at their default depth
    and the hidden cells' 3, and fail at another depth of the network."""
    from bnlab import grading

    for api, cell in (("nn", CHECKS_DEPTHS), ("keras", KERAS_CHECKS_DEPTHS)):
        conv = _layers(cell, api)
        for depth in (None, 3):
            grading.check_training_output(conv, "conv", api, arg=depth)
        with pytest.raises(AssertionError, match="conv_layer"):
            grading.check_training_output(conv, "conv", api, arg=2)


def _by_name(names, pool):
    return [next(v for v in pool if v.name == name) for name in names]


def test_trusted_rerun_agrees_with_the_kernel_on_bugs():
    # bugs in different cells, so one submission carries them all; each must fail the same tests here
    cells, fails = combine(
        *_by_name(
            [
                "keras_no_relu",
                "keras_loss_from_inference_pass",
                "q_statistics_wrong_option",
                "nn_stop_gradient_on_batch_statistics",
                "diagnose_left_unfixed",
            ],
            BUGS,
        )
    )
    verdicts = trusted_verdicts(cells)
    assert failed(verdicts) == fails, verdicts
    assert "never applies its nonlinearity" in verdicts["test_keras_fc_outputs"]
    assert "stop_gradient" in verdicts["test_nn_fc_training_output"]


def test_trusted_rerun_accepts_alternatives():
    cells, _ = combine(
        *_by_name(
            [
                "alt_keras_custom_layer",
                "alt_keras_train_step_decorated",
                "alt_answers_spelled_loosely",
                "alt_nn_bessel_corrected_population_variance",
                "alt_diagnose_bn_before_relu",
            ],
            ALTERNATIVES,
        )
    )
    assert failed(trusted_verdicts(cells)) == set()


# --- the machinery, without TensorFlow --------------------------------------------------------


def test_wire_format_round_trips_and_rejects_unknown_objects():
    import numpy as np

    data = {"a": np.arange(6.0).reshape(2, 3), "b": [None, True, 1.5, "x"], "c": (np.float32(2.0),)}
    back = wire.decode(wire.encode(data))
    assert np.array_equal(back["a"], data["a"]) and back["b"] == data["b"] and back["c"][0] == 2.0
    with pytest.raises(TypeError):
        wire.encode(object())
    with pytest.raises(ValueError):
        wire.decode({"$name": "fully_connected"})  # the parent never resolves names
    # arrays travel as their bytes (float32 kept float32 on the wire) and come back as exact float64 arrays
    batch = np.random.default_rng(0).standard_normal((64, 28, 28, 8)).astype(np.float32)
    encoded = wire.encode(batch)
    assert encoded["dtype"] == "f4" and len(encoded["$array"]) == 4 * -(-batch.nbytes // 3)  # base64 of 4 bytes each
    back = wire.decode(encoded)
    assert back.dtype == np.float64 and back.shape == batch.shape and np.array_equal(back, batch)
    assert np.array_equal(wire.decode(wire.encode(np.array([np.nan, np.inf, 1 / 3]))), [np.nan, np.inf, 1 / 3], True)
    for malformed in (
        {**encoded, "shape": [64, 28, 28, 9]},  # bytes that do not fill the shape
        {**encoded, "dtype": "O"},  # only float32 and float64 bytes are read
        {**encoded, "shape": [-1]},
        {**encoded, "$array": "not base64!"},
    ):
        with pytest.raises(ValueError, match="malformed"):
            wire.decode(malformed)


def test_a_worker_that_dies_is_replaced_without_the_cell_that_ended_it():
    cells = [("setup", "import os\nos._exit(3)"), ("test_a", "")]
    tests = {"test_a": "grading.check_choice(ANSWER, 'ab')"}
    verdicts = verify.verify_cells(cells, tests, timeout=60)
    assert "ANSWER" in verdicts["test_a"] and "not defined" in verdicts["test_a"]
    stopped = verify.verify_cells(cells, tests, timeout=60, max_deaths=0)  # no replacement: every later check fails
    assert "could not be checked" in stopped["test_a"]


def test_a_worker_that_hangs_is_stopped_in_time():
    cells = [("setup", "import time\ntime.sleep(60)"), ("test_a", "")]
    verdicts = verify.verify_cells(cells, {"test_a": "grading.check_choice(ANSWER, 'ab')"}, timeout=3)
    assert "took too long" in verdicts["test_a"]


def test_test_cells_use_the_trusted_checks_whatever_the_student_defines():
    cells = [
        ("answer", "ANSWER = 'c'\nimport bnlab.grading as g\ng.check_choice = lambda *a, **k: None\ngrading = g"),
        ("test_a", ""),
    ]
    verdicts = verify.verify_cells(cells, {"test_a": "grading.check_choice(ANSWER, 'ab')"}, timeout=60)
    assert "one of" in verdicts["test_a"]


def _notebook(kernel_error: bool):
    cell = nbformat.v4.new_code_cell("grading.check_choice(ANSWER, 'ab')")
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "test_a", "points": 1, "solution": False, "locked": True}
    if kernel_error:
        cell.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue="x", traceback=["x"])]
    return nbformat.v4.new_notebook(cells=[cell])


@pytest.mark.parametrize(
    "kernel_error,trusted,status",
    [
        (False, "Answer with one of 'a', 'b'", "tampered"),
        (True, "Answer with one of", "failed"),
        (False, None, "confirmed"),
        (True, None, "failed in the kernel only"),
    ],
)
def test_preprocessor_flags_cells_the_kernel_passed_but_the_rerun_fails(
    monkeypatch, caplog, kernel_error, trusted, status
):
    preprocessor = verify.VerifyChecks()
    monkeypatch.setattr(preprocessor, "_trusted_sources", lambda resources: {"test_a": "..."})
    monkeypatch.setattr(preprocessor, "_verify", lambda nb, tests, resources: {"test_a": trusted})
    monkeypatch.setattr(verify, "package_digest", lambda: verify.DIGEST_AT_IMPORT)  # files edited meanwhile
    nb = _notebook(kernel_error)
    with caplog.at_level(logging.WARNING):
        nb, _ = preprocessor.preprocess(nb, {"nbgrader": {"student": "mallory"}})
    cell = nb.cells[0]
    assert cell.metadata["bnlab"]["verification"] == status
    assert nb.metadata["bnlab"]["tampered"] == (status == "tampered")
    errors = [o for o in cell.outputs if o["output_type"] == "error"]
    assert bool(errors) == (kernel_error or status == "tampered")  # nbgrader scores an error output zero
    assert ("TAMPERING: student mallory" in caplog.text) == (status == "tampered")


def test_grader_files_changed_on_disk_are_reported(monkeypatch, caplog):
    preprocessor = verify.VerifyChecks()
    monkeypatch.setattr(preprocessor, "_trusted_sources", lambda resources: {"test_a": "..."})
    monkeypatch.setattr(preprocessor, "_verify", lambda nb, tests, resources: {"test_a": None})
    monkeypatch.setattr(verify, "package_digest", lambda: "changed")
    with caplog.at_level(logging.WARNING):
        nb, _ = preprocessor.preprocess(_notebook(False), {"nbgrader": {"student": "mallory"}})
    assert nb.metadata["bnlab"]["grader_files_changed"] and "changed on disk" in caplog.text
    assert nb.cells[0].metadata["bnlab"]["verification"] == "confirmed"  # verdicts come from the loaded copy


@pytest.mark.parametrize(
    "edited",
    [
        "grading/checks.py",
        "instructor/preprocessors/verify.py",
        "instructor/preprocessors/remote.py",
        "exercise.py",
        "reference.py",
    ],
)
def test_the_grader_digest_covers_every_file_a_verdict_depends_on(monkeypatch, tmp_path, edited):
    """The checks, these preprocessors and the bounds they judge by (Part 3's decay lives in exercise.py)."""
    import shutil

    copy = tmp_path / "bnlab"
    shutil.copytree(verify.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(verify, "PACKAGE", copy)
    before = verify.package_digest()
    (copy / edited).write_text((copy / edited).read_text() + "\n# edited\n")
    assert verify.package_digest() != before


def test_the_rerun_started_before_the_kernel_is_collected_after_it(monkeypatch):
    """StartVerification hands the re-run of the cells as submitted to VerifyChecks; the kernel's outputs
    (added in between) neither reach the re-run nor get lost."""
    seen = {}

    def rerun(nb, tests, resources):
        seen["outputs"] = [len(cell.get("outputs", [])) for cell in nb.cells]
        return {"test_a": None}

    start, collect = verify.StartVerification(), verify.VerifyChecks()
    for preprocessor in (start, collect):
        monkeypatch.setattr(preprocessor, "_trusted_sources", lambda resources: {"test_a": "..."})
        monkeypatch.setattr(preprocessor, "_verify", rerun)
    resources = {"nbgrader": {"student": "ann", "notebook": "nb", "assignment": "a"}}
    nb = _notebook(False)
    nb, resources = start.preprocess(nb, resources)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="kernel ran")]  # what Execute does
    nb, _ = collect.preprocess(nb, resources)
    assert seen["outputs"] == [0]
    assert nb.metadata["bnlab"]["started"] == "with the kernel"
    assert nb.cells[0].metadata["bnlab"]["verification"] == "confirmed"
    assert nb.cells[0].outputs[0]["text"] == "kernel ran"
    # without the early start (another student), VerifyChecks runs the re-run itself
    nb, _ = collect.preprocess(_notebook(False), {"nbgrader": {"student": "bob", "notebook": "nb", "assignment": "a"}})
    assert nb.metadata["bnlab"]["started"] == "after the kernel"


def test_turning_verification_off_turns_off_its_early_start_too():
    from traitlets.config import Config

    config = Config({"VerifyChecks": {"enabled": False}})
    assert not verify.StartVerification(config=config).enabled
    nb, _ = verify.StartVerification(config=config).preprocess(_notebook(False), {"nbgrader": {"student": "x"}})
    assert verify._STARTED == {}


def test_a_rerun_left_behind_by_a_dead_kernel_is_stopped_when_the_next_notebook_starts(monkeypatch, caplog):
    """nbgrader skips VerifyChecks when a notebook's kernel dies; that notebook's re-run must not keep a
    worker busy beside the next student's kernel until its own timeout."""
    start, collect = verify.StartVerification(), verify.VerifyChecks()
    monkeypatch.setattr(
        start,
        "_trusted_sources",  # ann's test needs her worker; bob's does not
        lambda resources: {
            "test_a": "grading.check_choice(ANSWER, 'ab')" if resources["nbgrader"]["student"] == "ann" else "..."
        },
    )
    busy = nbformat.v4.new_code_cell("import time\ntime.sleep(120)")
    abandoned = nbformat.v4.new_notebook(cells=[busy, *_notebook(False).cells])
    first = {"nbgrader": {"student": "ann", "notebook": "nb", "assignment": "a"}}
    start.preprocess(abandoned, first)
    _, future = verify._STARTED[verify._key(first)]
    deadline = time.monotonic() + 60
    while verify._key(first) not in verify._WORKERS and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = verify._WORKERS[verify._key(first)].process
    # ann's kernel died here: nbgrader went on to bob without running VerifyChecks for ann
    second = {"nbgrader": {"student": "bob", "notebook": "nb", "assignment": "a"}}
    with caplog.at_level(logging.WARNING):
        nb, second = start.preprocess(_notebook(False), second)
    assert "student ann: grading of nb stopped before its checks were re-verified" in caplog.text
    verdicts, _ = future.result(timeout=20)  # the re-run ended: its worker was stopped, not left to time out
    assert worker.poll() is not None
    assert "could not be checked" in verdicts["test_a"]
    assert verify._key(first) not in verify._STARTED and verify._key(first) not in verify._WORKERS
    nb, _ = collect.preprocess(nb, second)  # bob's own re-run is unaffected
    assert nb.metadata["bnlab"]["started"] == "with the kernel"
    assert nb.cells[0].metadata["bnlab"]["verification"] == "confirmed"


def test_a_cell_of_grading_calls_is_a_check_cell_and_a_plain_assert_is_not():
    assert verify.is_check_cell(
        '# Check (1 point)\ngrading.check_choice(A, "abcd")\nprint("ok")\n'
        '### BEGIN HIDDEN TESTS\ngrading.check_choice(A, "abcd", expected="b");'
    )
    assert not verify.is_check_cell('assert ANSWER_EPSILON == "b"')
    assert not verify.is_check_cell("import os\ngrading.check_choice(A, 'ab')")
    assert not verify.is_check_cell("grading.check_choice(A, 'ab') or os.system('x')")


def test_plain_assert_test_cells_are_judged_on_the_students_values():
    """An instructor's nbgrader-style test cell: data is judged out of the kernel's reach, a cell that calls
    student code is left to the kernel (and says so), a missing name fails."""
    cells = [
        ("setup", 'ANSWER = "b"\nVALUE = 0.5000001\nROWS = [1, 2, 3]\ndef square(x):\n    return x * x'),
        ("test_right", 'assert ANSWER == "b"'),
        ("test_wrong", 'assert ANSWER == "c", "ANSWER should be c"'),
        ("test_numpy", "assert np.isclose(VALUE, 0.5) and sum(ROWS) == 6 and len(ROWS) == 3"),
        ("test_calls_student_code", "assert square(3) == 9"),
        ("test_undefined", "assert NOT_DEFINED == 1"),
    ]
    tests = {name: source for name, source in cells if name.startswith("test_")}
    verdicts = verify.verify_cells(cells, tests, timeout=120)
    assert verdicts["test_right"] is None and verdicts["test_numpy"] is None
    assert verdicts["test_wrong"] == "ANSWER should be c"
    assert isinstance(verdicts["test_calls_student_code"], verify.Unverifiable)
    assert "square" in verdicts["test_calls_student_code"]
    assert "not defined" in verdicts["test_undefined"]


def test_a_bnlab_package_in_the_submission_folder_does_not_replace_the_course_library(tmp_path):
    """The worker starts with `python -I`: the submission's folder comes after the course's library, so its own
    helper modules still import but a `bnlab` there is never loaded (issue 26)."""
    from pathlib import Path

    import bnlab

    (tmp_path / "bnlab").mkdir()
    (tmp_path / "bnlab" / "__init__.py").write_text("raise SystemExit('the submission\\'s bnlab was imported')\n")
    (tmp_path / "helpers.py").write_text("ANSWER = 'b'\n")
    cells = [
        ("setup", "import bnlab\nfrom helpers import ANSWER\nWHERE = bnlab.__file__"),
        ("test_a", ""),
        ("test_b", ""),
    ]
    course = str(Path(bnlab.__file__).resolve())
    tests = {"test_a": "grading.check_choice(ANSWER, 'b')", "test_b": f"assert WHERE == {course!r}, WHERE"}
    assert verify.verify_cells(cells, tests, cwd=str(tmp_path), timeout=120) == {"test_a": None, "test_b": None}


def test_a_graph_with_a_python_callback_is_refused_by_the_judge_process():
    """The worker hands over each layer's graph; the judge process refuses one holding a Python callback, and the
    cells of that layer are marked unjudgeable (scored nothing, flagged), the others judged as usual."""
    callback = next(v for v in TAMPERING if v.name == "lie_py_function_in_nested_tf_function")
    verdicts = trusted_verdicts({"nn_layers": callback.cells["nn_layers"]})
    assert failed(verdicts) == set(callback.fails)
    message = verdicts["test_nn_fc_population"]
    assert isinstance(message, verify.Unjudgeable) and "Python callback" in message and "EagerPyFunc" in message
    assert not isinstance(verdicts["test_keras_fc_outputs"], verify.Unjudgeable)


@pytest.mark.parametrize("kernel_passed", [True, False])
def test_a_refused_graph_scores_nothing_and_is_flagged_for_review(monkeypatch, caplog, kernel_passed):
    from bnlab.instructor.preprocessors.review import review_reasons

    preprocessor = verify.VerifyChecks()
    verdict = verify.Unjudgeable("Your code could not be judged: its graph holds a Python callback")
    monkeypatch.setattr(preprocessor, "_trusted_sources", lambda resources: {"test_a": "..."})
    monkeypatch.setattr(preprocessor, "_verify", lambda nb, tests, resources: {"test_a": verdict})
    with caplog.at_level(logging.WARNING):
        nb, _ = preprocessor.preprocess(_notebook(not kernel_passed), {"nbgrader": {"student": "mallory"}})
    cell = nb.cells[0]
    assert cell.metadata["bnlab"] == {"verification": "unjudgeable", "message": verdict}
    assert nb.metadata["bnlab"]["unjudgeable"] == {"test_a": verdict}
    assert any(o["output_type"] == "error" for o in cell.outputs)  # nbgrader scores it zero
    assert "UNJUDGEABLE: student mallory: the judge refused to run the graphs of test_a" in caplog.text
    assert any("judge refused: test_a" in reason for reason in review_reasons(nb))
