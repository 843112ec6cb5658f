"""bnlab.exercise: the exercise defined once, and the source notebook as the one master."""

from __future__ import annotations

import shutil

import nbformat
import pytest

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
