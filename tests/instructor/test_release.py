"""release/ and solutions/ are generated from source/ by `make release`, and stay up to date."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from bnlab.instructor import notebooks, release

ROOT = Path(__file__).resolve().parents[2]
EXERCISE = notebooks.RELATIVE

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


# Text that would hand over an answer: Part 1's layers and training flag, Part 2's statistics, update and
# normalization calls, and the letters of the multiple-choice answers. None of it may appear in the
# released notebook outside the collapsed hints; the hints hold enough of it to finish.
GIVEAWAY = [
    r"\btraining=True",
    r"BatchNormalization\(",
    r"use_bias=False",
    r"tf\.nn\.moments\(",
    r"\[0, 1, 2\]",
    r"axes=\[0\]",
    r"\.assign\(",
    r"decay\s*=\s*0\.99",
    r"tf\.nn\.batch_normalization\(",
    r"expected=",
    r"ANSWER_[A-Z_]+\s*=\s*[\"']",
]
IN_HINTS = ["training=True", "use_bias=False", "tf.nn.moments(", "[0, 1, 2]", ".assign(", "momentum"]
DETAILS = re.compile(r"<details>(.*?)</details>", re.S)


def _release():
    return nbformat.read(ROOT / "release" / EXERCISE, as_version=4)


def test_student_notebook_has_stubs_and_no_solutions_or_hidden_tests():
    text = (ROOT / "release" / EXERCISE).read_text()
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    nb = _release()
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    code = [c for c in answers if c.cell_type == "code"]
    in_source = [c for c in notebooks.read().cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(code) == sum(c.cell_type == "code" for c in in_source) >= 6 and len(answers) == len(in_source)
    assert all("raise NotImplementedError" in c.source for c in code)
    assert [c.source for c in answers if c.cell_type == "markdown"] == ["YOUR ANSWER HERE"]
    # signatures the checks rely on survive the stub
    joined = "\n".join(c.source for c in code)
    for signature in (
        "def fully_connected(prev_layer, num_units):",
        "def conv_layer(prev_layer, layer_depth):",
        "def train_step(model, optimizer, images, labels):",
        "def fully_connected(prev_layer, num_units, is_training):",
        "def conv_layer(prev_layer, layer_depth, is_training):",
    ):
        assert signature in joined
    assert "def predict(model, images):" in "\n".join(c.source for c in nb.cells)  # given, not an answer


def test_released_text_outside_the_hints_gives_no_answer_away():
    nb = _release()
    outside = "\n".join(DETAILS.sub("", c.source) for c in nb.cells)
    found = [pattern for pattern in GIVEAWAY if re.search(pattern, outside)]
    assert found == [], f"the released notebook gives answers away outside the hints: {found}"
    hints = "\n".join(h for c in nb.cells if c.cell_type == "markdown" for h in DETAILS.findall(c.source))
    assert [t for t in IN_HINTS if t not in hints] == [], "the hints must still let a stuck student finish"


def test_hints_are_collapsed_and_progressive():
    nb = _release()
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        opening = re.findall(r"<details[^>]*>", cell.source)
        assert all(tag == "<details>" for tag in opening), f"hints must start collapsed: {opening}"
        assert len(opening) == cell.source.count("</details>")
        numbers = [int(n) for n in re.findall(r"<summary>Hint (\d+)", cell.source)]
        assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert sum(c.source.count("<details>") for c in nb.cells) >= 8


def test_solutions_keep_answers_and_have_no_outputs():
    nb = nbformat.read(ROOT / "solutions" / EXERCISE, as_version=4)
    assert any("training=True" in c.source for c in nb.cells)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


CITATION = re.compile(r"section (\d+)(?:, (?:\"([^\"]+)\"|'([^']+)'))?")


def _lesson_sections() -> dict[int, set[str]]:
    """``{section number: its title and the titles of its subsections}`` from the lesson's headings."""
    lesson = nbformat.read(ROOT / "source" / "batch_norm_lesson" / "Batch_Normalization_Lesson.ipynb", as_version=4)
    sections: dict[int, set[str]] = {}
    current = None
    for cell in lesson.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            top = re.match(r"## (\d+)\.\s+(.*)", line)
            if top:
                current = int(top.group(1))
                sections[current] = {top.group(2).strip()}
            elif line.startswith("### ") and current is not None:
                sections[current].add(re.sub(r"^[\d.]+\s+", "", line[4:]).strip())
    return sections


def test_every_lesson_section_the_exercise_cites_exists():
    sections = _lesson_sections()
    texts = [c.source for c in notebooks.read().cells if c.cell_type == "markdown"]
    texts.append((ROOT / "bnlab" / "questions.py").read_text())
    cited = {
        (int(n), " ".join((double or single).split())) for text in texts for n, double, single in CITATION.findall(text)
    }
    assert cited, "the exercise points students to the lesson"
    wrong = sorted((n, t) for n, t in cited if n not in sections or (t and t not in sections[n]))
    assert wrong == [], f"cited lesson sections that do not exist (lesson sections: {sections})"


def test_test_cells_leave_no_value_for_nbgrader_to_read_as_partial_credit():
    """nbgrader reads a test cell's last expression value as a partial score: each cell ends in print() or `;`."""
    for cell in notebooks.read().cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        statements = [line for line in cell.source.split("\n") if line.strip() and not line.lstrip().startswith("#")]
        last = statements[-1].strip()
        assert last.startswith("print(") or last.endswith(";"), (meta["grade_id"], last)


def test_the_tf1_appendix_is_an_after_deadline_handout_in_solutions_only():
    """The appendix solves the exercise in TF1 code: release/ (and so the bundle and the exchange) lacks it."""
    later = release.after_deadline(ROOT)
    assert Path("batch_norm_lesson/Appendix_TF1_Code.ipynb") in later
    for rel in later:
        assert not (ROOT / "release" / rel).exists() and (ROOT / "solutions" / rel).exists()
    released = {
        p.relative_to(ROOT / "release")
        for p in (ROOT / "release").rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    }
    assert released == set(release.released_notebooks(ROOT)) and EXERCISE in released
