"""release/ and solutions/ are generated from source/ by `make release`, and stay up to date."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from bnlab import exercise, release

ROOT = Path(__file__).resolve().parents[1]
EXERCISE = exercise.RELATIVE

pytestmark = pytest.mark.slow


def test_committed_release_and_solutions_are_up_to_date():
    problems = release.stale_files(ROOT)
    assert problems == [], "run `make release` and commit:\n" + "\n".join(problems)


def test_a_change_in_source_is_reported_as_stale(tmp_path):
    for name in ("source", "release", "solutions"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    nb_path = tmp_path / "source" / EXERCISE
    nb = json.loads(nb_path.read_text())
    nb["cells"][0]["source"] = ["# A changed title\n"]
    nb_path.write_text(json.dumps(nb))
    problems = release.stale_files(tmp_path)
    assert f"release/{EXERCISE}: differs from what source/ generates" in problems
    assert f"solutions/{EXERCISE}: differs from what source/ generates" in problems
    (tmp_path / "release" / "stray.txt").write_text("x")
    assert "release/stray.txt: not generated from source/ (remove it)" in release.stale_files(tmp_path)


def test_student_notebook_has_stubs_and_no_solutions_or_hidden_tests():
    text = (ROOT / "release" / EXERCISE).read_text()
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    nb = nbformat.read(ROOT / "release" / EXERCISE, as_version=4)
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(answers) == 3
    assert not any("training=True" in c.source or "BatchNormalization()(" in c.source or "tf.nn.moments(" in c.source
                   for c in answers)  # the answers are not given away
    assert all("raise NotImplementedError" in c.source for c in answers)
    # signatures the checks rely on survive the stub
    joined = "\n".join(c.source for c in answers)
    for signature in ("def fully_connected(prev_layer, num_units):", "def conv_layer(prev_layer, layer_depth):",
                      "def train_step(model, optimizer, images, labels):", "def predict(model, images):",
                      "def fully_connected(prev_layer, num_units, is_training):",
                      "def conv_layer(prev_layer, layer_depth, is_training):"):
        assert signature in joined


def test_solutions_keep_answers_and_have_no_outputs():
    nb = nbformat.read(ROOT / "solutions" / EXERCISE, as_version=4)
    assert any("training=True" in c.source for c in nb.cells)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
