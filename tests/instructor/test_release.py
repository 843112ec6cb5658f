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
# released notebook outside the collapsed hints; the hints name the API (in another example, never the answer).
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
    assert [t for t in IN_HINTS if t not in hints] == [], "the hints must still name the API a stuck student needs"


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


# -- hints teach without giving the line ------------------------------------------------------

STUB = re.compile(r"^( *)# YOUR CODE HERE.*\n *raise NotImplementedError\(.*\)$", re.M)
HINT_CODE = re.compile(r"```(?:python)?\n(.*?)```|`([^`\n]+)`", re.S)


def _hint_snippets(hint: str) -> list[str]:
    """The code of a hint: its code blocks, and its inline code that is a Python statement."""
    import ast

    found = []
    for block, inline in HINT_CODE.findall(hint):
        try:
            ast.parse(block or inline)
        except SyntaxError:
            continue
        found.append(block or inline)
    return found


def _as_body(snippets: list[str], indent: str) -> str:
    """The snippets as the body a student would paste: a ``return`` as it is, every other statement kept only where
    it runs (a name the hint leaves for the student to fill in does not stop the lines after it)."""
    lines = []
    for snippet in snippets:
        for line in snippet.splitlines():
            if line.lstrip().startswith("return"):
                lines.append(f"{indent}{line.strip()}")
            else:
                lines += [
                    f"{indent}try:",
                    f"{indent}    {line.strip()}",
                    f"{indent}except Exception:",
                    f"{indent}    pass",
                ]
    return "\n".join(lines)


def _pasted_answers(release_path: Path) -> list[tuple[str, str, str]]:
    """``(hint label, answer cell id, cell source)``: every hint's code (each hint alone, and all hints of a task
    together) pasted in place of every stub of every answer cell of the released notebook at ``release_path``."""
    import ast

    solutions = {
        notebooks.grade_id(c): c.source for c in nbformat.read(ROOT / "solutions" / EXERCISE, as_version=4).cells
    }
    nb = nbformat.read(release_path, as_version=4)
    tasks = [(notebooks.grade_id(c), DETAILS.findall(c.source)) for c in nb.cells if c.cell_type == "markdown"]
    answers = [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
    pasted = []
    for task, hints in tasks:
        codes = [(f"{task}, hint {i}", _hint_snippets(h)) for i, h in enumerate(hints, 1)]
        codes.append((f"{task}, all hints", [s for _, snippets in codes for s in snippets]))
        for label, snippets in codes:
            if not snippets:
                continue
            for cell in answers:
                cell_id = notebooks.grade_id(cell)
                if "    # YOUR CODE HERE" in cell.source:
                    source = STUB.sub(lambda m: _as_body(snippets, m.group(1)), cell.source)
                else:  # a stub outside any function: the functions the solution defines there, with the hint as body
                    defs = [n for n in ast.parse(solutions[cell_id]).body if isinstance(n, ast.FunctionDef)]
                    if not defs:
                        continue
                    source = "\n\n".join(
                        f"def {d.name}({', '.join(a.arg for a in d.args.args)}):\n{_as_body(snippets, '    ')}"
                        for d in defs
                    )
                pasted.append((label, cell_id, source))
    return pasted


def _hints_that_pass(release_path: Path) -> list[str]:
    import ast

    from bnlab.instructor import bundle

    nb = nbformat.read(release_path, as_version=4)
    namespace: dict = {}
    for cell in nb.cells:  # the notebook's imports and aliases (tf, keras, grading, nn, training)
        if cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute)
            ):
                exec(compile(ast.Module(body=[node], type_ignores=[]), "setup", "exec"), namespace)
    parts = bundle.graded_parts()
    passing = []
    for label, cell_id, source in _pasted_answers(release_path):
        scope = dict(namespace)
        try:
            exec(source, scope)
        except Exception:  # noqa: BLE001 - code that does not even define the function answers nothing
            continue
        for part in parts:
            fn = scope.get(part["name"])
            if callable(fn) and bundle.passing_parts(fn, [part]):
                passing.append(f"{label} pasted into {cell_id} passes {part['grade_id']}")
    return passing


def test_no_hint_passes_a_graded_check_when_pasted_as_the_answer():
    assert _pasted_answers(ROOT / "release" / EXERCISE), "the hints' code should be tried"
    assert _hints_that_pass(ROOT / "release" / EXERCISE) == []


def test_a_hint_that_gives_the_line_is_caught(tmp_path):
    nb = _release()
    task = next(c for c in nb.cells if notebooks.grade_id(c) == "part1_task_training")
    task.source += "\n\n<details><summary>Hint 9</summary>\n\n`logits = model(images, training=True)`\n</details>\n"
    nbformat.write(nb, tmp_path / "release.ipynb")
    found = _hints_that_pass(tmp_path / "release.ipynb")
    assert found and all(line.startswith("part1_task_training, ") for line in found), found
    assert any("keras_training passes test_keras_train_step" in line for line in found), found
