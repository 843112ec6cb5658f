"""bnlab.exercise: the exercise defined once, and the source notebook as the one master."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from fakes import learnable_mnist

from bnlab import exercise
from bnlab.instructor import notebooks, release


def test_due_marks_every_interval_and_the_last_batch():
    assert [b for b in range(1, 61) if exercise.due(b, 60, 25)] == [25, 50, 60]
    assert [b for b in range(1, 201) if exercise.due(b, 200, 100)] == [100, 200]
    assert [b for b in range(1, 4) if exercise.due(b, 3, 25)] == [3]


def test_cell_readers_find_the_answers_and_skip_the_demonstrations():
    ids = [cell_id for cell_id, _, _ in notebooks.code_cells()]
    assert not set(ids) & (exercise.TRAINING_RUNS | exercise.DEMO_CELLS)
    assert {"keras_layers", "keras_training", "nn_layers"} <= set(notebooks.solution_answers())
    every = [cell_id for cell_id, _, _ in notebooks.code_cells(skip_training_runs=False)]
    assert exercise.TRAINING_RUNS <= set(every)


@pytest.mark.slow
def test_an_edit_of_the_source_notebook_reaches_release_and_solutions(tmp_path):
    """Edit the master as JupyterLab would (read, change a cell, write), then `make release`'s generation."""
    shutil.copytree(notebooks.ROOT / "source", tmp_path / "source")
    shutil.copy(notebooks.ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    master = tmp_path / "source" / notebooks.RELATIVE
    nb = nbformat.read(master, as_version=4)
    intro = next(c for c in nb.cells if notebooks.grade_id(c) == "intro")
    intro.source += "\n\nA sentence an instructor added in JupyterLab."
    answer = next(c for c in nb.cells if notebooks.grade_id(c) == "keras_layers")
    answer.source = answer.source.replace("### END SOLUTION", "# instructor's note in the solution\n### END SOLUTION")
    nbformat.write(nb, master)

    release.generate(tmp_path, verbose=False)
    released = (tmp_path / "release" / notebooks.RELATIVE).read_text()
    solved = (tmp_path / "solutions" / notebooks.RELATIVE).read_text()
    assert "A sentence an instructor added in JupyterLab." in released
    assert "A sentence an instructor added in JupyterLab." in solved
    assert "instructor's note in the solution" in solved and "instructor's note in the solution" not in released
    assert "BEGIN HIDDEN TESTS" not in released and "BEGIN SOLUTION" not in released
    # the master itself is left as the instructor wrote it
    assert "A sentence an instructor added in JupyterLab." in master.read_text()


def test_source_notebooks_are_stored_canonically_without_outputs():
    """Masters are saved as JupyterLab saves them (nbformat's canonical JSON), with no outputs: reviewable diffs."""
    for path in sorted((notebooks.ROOT / "source").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        nb = nbformat.read(path, as_version=4)
        assert path.read_text() == nbformat.writes(nb) + "\n", f"{path} is not in nbformat's canonical form"
        assert not any(c.get("outputs") or c.get("execution_count") for c in nb.cells if c.cell_type == "code"), (
            f"{path} stores outputs"
        )


def _points(path):
    """(total points, automatic points, graded cells) as the nbgrader metadata of a notebook sums them."""
    cells = [
        c for c in nbformat.read(path, as_version=4).cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")
    ]
    total = sum(c.metadata.nbgrader.get("points", 0) for c in cells)
    automatic = sum(c.metadata.nbgrader.get("points", 0) for c in cells if c.cell_type == "code")
    return total, automatic, len(cells)


@pytest.mark.parametrize("which", ["SOURCE", "RELEASE", "SOLUTIONS"])
def test_the_introduction_states_the_points_the_cells_sum_to(which):
    """The points are stated where students read them, and must be what the cells' metadata sums to (the
    metadata is the one place; the text follows it: a changed graded cell fails here until the text does)."""
    import re

    path = getattr(notebooks, which)
    total, automatic, _ = _points(path)
    intro = next(c for c in nbformat.read(path, as_version=4).cells if notebooks.grade_id(c) == "intro").source
    stated = re.search(r"How you are graded \((\d+) points\)\.\*\* (\d+) points are checked automatically", intro)
    assert stated, "the introduction should say: **How you are graded (N points).** M points are checked automatically"
    assert (int(stated.group(1)), int(stated.group(2))) == (total, automatic)


def test_each_check_states_its_own_points_and_the_instructors_guide_the_totals():
    import re

    for cell in nbformat.read(notebooks.SOURCE, as_version=4).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and cell.cell_type == "code":
            said = re.match(r"# Check \((\d+) points?\b", cell.source)
            assert said and int(said.group(1)) == meta["points"], (notebooks.grade_id(cell), cell.source[:80])
    total, automatic, cells = _points(notebooks.SOURCE)
    guide = (notebooks.ROOT / "docs" / "instructors.md").read_text()
    assert f"{cells} graded cells, {total} points: {automatic} checked automatically" in guide


# -- what Validate says ---------------------------------------------------------------------


def test_the_answers_graded_after_submission_are_every_choice_and_the_written_answer():
    later = exercise.graded_after_submission(nbformat.read(notebooks.RELEASE, as_version=4))
    choices = {
        name
        for cell in notebooks.read().cells
        if cell.metadata.get("nbgrader", {}).get("grade")
        for name in exercise.CHOICE_CHECK.findall(cell.source)
    }
    assert len(choices) >= 5
    assert {a["source"].split(" = ")[0] for a in later if a["source"].startswith("ANSWER_")} == choices
    assert sum("written answer" in a["message"] for a in later) == 1
    assert all("after you submit" in a["message"] and "points)" in a["message"] for a in later)
    assert any(a["source"] == "ANSWER_PLAIN_NETWORK = (not set)" for a in later)  # the release leaves them unset


def _tiny_notebook(path, answer: str, cell_check: str) -> None:
    """A graded notebook of one multiple-choice answer and its check, with nbgrader's checksums."""
    from nbgrader import utils

    def cell(source, grade_id, **meta):
        made = nbformat.v4.new_code_cell(source)
        made.metadata["nbgrader"] = {"grade_id": grade_id, "schema_version": 3, "locked": False, "task": False, **meta}
        made.metadata["nbgrader"]["checksum"] = utils.compute_checksum(made)
        return made

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        cell(
            "def check_choice(answer, options):\n    assert answer in options, answer",
            "given",
            grade=False,
            solution=False,
            locked=True,
        ),
        cell(f"ANSWER_X = {answer!r}", "answer", grade=False, solution=True),
        cell(cell_check, "test_answer", grade=True, solution=False, locked=True, points=2),
    ]
    nbformat.write(nb, path)


@pytest.fixture
def fresh_validator(monkeypatch):
    from nbgrader.validator import Validator

    for name in ("validate", "validate_and_print"):  # restored after the test
        monkeypatch.setattr(Validator, name, getattr(Validator, name))
    monkeypatch.setattr(Validator, "explains_later_grading", False, raising=False)
    return Validator


@pytest.mark.slow
def test_validate_names_the_answers_graded_later_instead_of_a_bare_success(fresh_validator, tmp_path):
    import io

    exercise.explain_validation()
    path = tmp_path / "tiny.ipynb"
    _tiny_notebook(path, "c", "check_choice(ANSWER_X, 'abcd')")
    validator = fresh_validator()
    assert validator.validate(str(path)) == {}  # what nbgrader's server sends JupyterLab's dialog: unchanged
    validator.stream = io.StringIO()
    validator.validate_and_print(str(path))  # what `nbgrader validate` prints
    out = validator.stream.getvalue()
    assert "Every check in the notebook passes. Graded only after you submit:" in out
    assert "\n- Not checked here: ANSWER_X = 'c'" in out
    assert "whether it is the right one is graded after you submit (2 points)" in out
    assert "Your notebook passes all the tests" not in out and "FAILED" not in out

    _tiny_notebook(path, "e", "check_choice(ANSWER_X, 'abcd')")  # a letter that is not an option: a real failure
    validator.stream = io.StringIO()
    validator.validate_and_print(str(path))
    out = validator.stream.getvalue()
    assert "VALIDATION FAILED ON 1 CELL(S)" in out and "Graded only after you submit" not in out


# -- the training run shows the student's own population statistics ----------------------------


def _small_mnist():
    return learnable_mnist(1024, 300)


def _run_with_momentum(data, momentum, refresh_batches):
    import bnlab
    from bnlab import training
    from bnlab.monitor import TrainingMonitor

    tf = bnlab.tf
    keras = tf.keras

    def build():
        images = keras.Input((28, 28, 1))
        x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=2, use_bias=False)(images))
        x = keras.layers.Dense(16, use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=momentum)(x))
        return keras.Model(images, keras.layers.Dense(10)(x))

    def step(model, optimizer, images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = training.loss_fn(logits, labels)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss, logits

    return training.train(
        build,
        step,
        lambda m, x: m(x, training=False),
        data=data,
        num_batches=30,
        seed=1,
        monitor=TrainingMonitor(mode="silent"),
        validation_size=300,
        refresh_batches=refresh_batches,
    )


def test_the_run_reports_the_figures_of_the_layers_own_moving_averages_next_to_the_refreshed_ones(capsys):
    """Keras' momentum changes only the moving averages (training normalizes with the batch), so two runs that
    differ in it train the same weights: the refresh gives both the same final figures, and only the figures
    with the layers' own moving averages tell a momentum of 0.1 from one of 0.99."""
    data = _small_mnist()
    right, wrong = _run_with_momentum(data, 0.99, 4), _run_with_momentum(data, 0.1, 4)
    assert right.test_accuracy == wrong.test_accuracy  # what the refresh alone would show
    assert right.own_test_accuracy != wrong.own_test_accuracy
    out = capsys.readouterr().out
    assert out.count("With the population statistics your layers' own moving averages kept") == 2
    assert f"test accuracy: {wrong.own_test_accuracy:>3.5f}" in out
    assert "keep 0.99 of their old value" in right.report() and "follow the last few batches" not in right.report()
    assert "keep 0.1 of their old value" in wrong.report() and "follow the last few batches" in wrong.report()
    graded = _run_with_momentum(data, 0.1, 0)  # no refresh (as while grading): one set of figures, the layers' own
    assert graded.own_test_accuracy != graded.own_test_accuracy and "own moving averages" not in graded.report()
