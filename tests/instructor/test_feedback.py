"""Feedback students receive: no hidden-test line or argument anywhere, and a failure's message first.

The unit tests run :class:`bnlab.instructor.preprocessors.feedback.HideHiddenTests` on hand-made cells. The slow
test grades failing submissions (the untouched release notebook; a notebook whose visible checks pass but whose
hidden checks fail) with the real nbgrader pipeline and reads the feedback HTML it produces.
"""

from __future__ import annotations

import html
import json
import re
import textwrap

import nbformat
import pytest
import shared_grading
from nbformat.v4 import new_code_cell, new_notebook, new_output

from bnlab import exercise, questions, variants
from bnlab.instructor import notebooks, scratch
from bnlab.instructor.preprocessors import feedback, sanitize

HIDDEN_CALL = 'grading.check_choice(ANSWER, "abcd", expected="same", question="single_images");'
VISIBLE_CALL = 'grading.check_choice(ANSWER, "abcd")'


def _test_cell(outputs):
    cell = new_code_cell(
        "\n".join(
            [
                "# Check (2 points)",
                VISIBLE_CALL,
                'print("recorded")',
                "### BEGIN HIDDEN TESTS",
                HIDDEN_CALL,
                "### END HIDDEN TESTS",
            ]
        ),
        metadata={
            "nbgrader": {
                "grade": True,
                "grade_id": "test_q",
                "points": 2,
                "locked": True,
                "solution": False,
                "schema_version": 3,
                "task": False,
            }
        },
        outputs=outputs,
    )
    return cell


def _ipython_traceback(message):
    """An error output shaped like IPython's: a frame that quotes the cell, hidden line included."""
    return new_output(
        "error",
        ename="CheckFailed",
        evalue=message,
        traceback=[
            "\x1b[0;31m-----------------------------------------------------------------\x1b[0m",
            'Cell \x1b[0;32mIn[12], line 5\x1b[0m\n      3 print("recorded")\n      4 ### BEGIN HIDDEN TESTS\n'
            f"----> 5 {HIDDEN_CALL}\n      6 ### END HIDDEN TESTS",
            f"\x1b[0;31mCheckFailed\x1b[0m: {message}",
        ],
    )


def _preprocess(cell):
    nb = new_notebook(cells=[cell])
    nb, _ = feedback.HideHiddenTests().preprocess(nb, {})
    return nb.cells[0]


def test_hidden_region_is_replaced_by_the_note():
    cell = _preprocess(_test_cell([]))
    assert "BEGIN HIDDEN TESTS" not in cell.source and HIDDEN_CALL not in cell.source
    assert VISIBLE_CALL in cell.source and cell.source.endswith(feedback.NOTE)


def test_failing_traceback_is_reduced_to_its_message():
    message = "'b' is not the expected answer. Think about the variance of a single value."
    stream = new_output("stream", name="stdout", text="recorded\n")
    cell = _preprocess(_test_cell([stream, _ipython_traceback(message)]))
    error = cell.outputs[1]
    assert error.traceback == [f"CheckFailed: {message}"]
    text = str(cell.outputs)
    assert "expected=" not in text and "HIDDEN TESTS" not in text and "In[12]" not in text


def test_printed_hidden_lines_are_redacted_and_visible_output_kept():
    stream = new_output("stream", name="stdout", text=f"recorded\nrunning {HIDDEN_CALL.rstrip(';')}\n")
    cell = _preprocess(_test_cell([stream]))
    assert cell.outputs[0].text.split("\n")[:2] == ["recorded", feedback.REDACTED]


def test_answer_cells_keep_their_tracebacks():
    """A student's own cell (no hidden tests, not a test cell) keeps its full traceback."""
    cell = new_code_cell(
        "1 / 0",
        metadata={
            "nbgrader": {
                "grade": False,
                "solution": True,
                "grade_id": "a",
                "locked": False,
                "schema_version": 3,
                "task": False,
            }
        },
        outputs=[
            new_output(
                "error",
                ename="ZeroDivisionError",
                evalue="division by zero",
                traceback=["frame 1", "frame 2", "ZeroDivisionError: division by zero"],
            )
        ],
    )
    assert len(_preprocess(cell).outputs[0].traceback) == 3


# --------------------------------------------------------------------------------------------
# the real pipeline


def _hidden_fragments(source_nb, release_nb) -> set[str]:
    """Every hidden test line of the source notebook, and each of its keyword arguments that the
    released notebook does not show anyway."""
    fragments = set()
    for cell in source_nb.cells:
        inside = False
        for line in cell.source.split("\n"):
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and line.strip():
                fragments.add(line.strip().rstrip(";"))
                fragments.update(re.findall(r"\b\w+=[^,)]+", line))
    visible = "\n".join(c.source for c in release_nb.cells)
    return {f for f in fragments if f not in visible}  # e.g. api="keras" is also in the visible checks


def _submit_wrong_choices(course, _scratch):
    # visible checks pass, hidden ones fail: valid but wrong multiple-choice answers
    solution = notebooks.solution_answers()
    wrong = {
        **solution,
        "q_single_images_answer": 'ANSWER_SINGLE_IMAGES = questions.find_option("single_images", "15% or lower")',
        "q_statistics_answer": "ANSWER_STATISTICS = 1",
    }
    scratch.submit(course, "wrong_choices", notebooks.fill_in(scratch.release_notebook(course), wrong))


# graded, with the untouched release notebook (a control of the shared run), in the grader's shared run
shared_grading.register("grader", __name__, ["wrong_choices"], _submit_wrong_choices)
FAILING = {shared_grading.UNTOUCHED, "wrong_choices"}


@pytest.fixture(scope="module")
def graded_failures(grader_grading):
    assert FAILING <= set(grader_grading.graded), {s: grader_grading.failed.get(s) for s in FAILING}
    files, _ = grader_grading.feedback()
    pages = {f.parent.parent.name: f.read_text() for f in files if f.parent.parent.name in FAILING}
    return grader_grading.course, pages


@pytest.mark.slow
def test_feedback_of_failing_submissions_shows_no_hidden_test(graded_failures):
    course, pages = graded_failures
    assert set(pages) == FAILING
    fragments = _hidden_fragments(notebooks.read(), scratch.release_notebook(course))
    assert any("expected=" in f for f in fragments)  # the fragments include the hidden answers
    for student, page in pages.items():
        text = html.unescape(re.sub(r"<[^>]+>", "", page))
        assert "HIDDEN TESTS" not in text, student
        leaked = sorted(f for f in fragments if f in text)
        assert leaked == [], (student, leaked)
        # a graded test cell shows its source and then the failure's message: no traceback frames
        for segment in text.split("Grade cell: ")[1:]:
            if segment.startswith("test_"):
                cell = re.split(r"\nIn[\s\xa0]\[", segment)[0]  # up to the next cell's prompt
                assert "Traceback (most recent call last)" not in cell and "Cell In[" not in cell, (student, cell)


@pytest.mark.slow
def test_failure_message_comes_first_in_each_failing_test_cell(graded_failures):
    course, pages = graded_failures
    for student in pages:
        nb = nbformat.read(course / "autograded" / student / scratch.EXERCISE / exercise.FILENAME, as_version=4)
        nb, _ = feedback.HideHiddenTests().preprocess(nb, {})
        failing = 0
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            if cell.cell_type != "code" or not meta.get("grade") or not errors:
                continue
            failing += 1
            error = errors[0]
            assert len(error.traceback) == 1 and error.traceback[0].startswith(f"{error.ename}: "), error.traceback
            # only the visible checks' own "OK" lines may come before the message
            before = "".join(o.get("text", "") for o in cell.outputs[: cell.outputs.index(error)])
            assert len(before.splitlines()) <= 3, (meta["grade_id"], before)
        assert failing > 0, student
    # a wrong choice or number gets a teaching message that does not name the right one (the letter is the one
    # the wrong option has in this student's order)
    with variants.graded_as("wrong_choices"):
        letter = questions.find_option("single_images", "15% or lower")
    page = html.unescape(pages["wrong_choices"])
    assert f"'{letter}' is not the expected answer" in page and "1 is not the expected answer" in page


# --- A submission is data (issue 27): the graded notebook is inert and bounded, and so is its feedback.

SCRIPT = "fetch('/api/contents/x', {method: 'PUT'})"


def _sanitized(cells, **options):
    nb = new_notebook(cells=cells)
    nb.metadata["signature"] = "sha256:forged"
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb, _ = sanitize.SanitizeSubmission(**options)(nb, {})  # as nbconvert calls it (enabled by default)
    return nb


def test_markdown_answers_keep_their_formatting_and_lose_their_script():
    from nbformat.v4 import new_markdown_cell, new_raw_cell

    answer = "**Momentum** is the weight of the *old* average, so `a < b` and x<y stay as written."
    nb = _sanitized(
        [
            new_markdown_cell(answer),
            new_markdown_cell(f'ok <img src=x onerror="{SCRIPT}"> <b>bold</b> <script>{SCRIPT}</script>'),
            new_markdown_cell(
                "[a](javascript:alert(1)) [b](https://example.org) [c](jav&#x61;script:x) ![i](attachment:p.png)"
            ),
            new_markdown_cell(
                "<a href='javascript:1'>l</a> <iframe srcdoc='<script>1</script>'></iframe> <svg onload=x>"
            ),
            new_raw_cell(f"<script>{SCRIPT}</script>", metadata={"format": "text/html"}),
            new_markdown_cell(r"$\href{javascript:alert(1)}{x}$ and $\frac{a}{b}$"),
        ]
    )
    assert nb.cells[5].source == r"$\href{#removed-link}{x}$ and $\frac{a}{b}$"
    assert nb.cells[0].source == answer
    assert nb.cells[1].source == 'ok <img src="x"> <b>bold</b> '
    assert "javascript" not in nb.cells[2].source.lower() and "https://example.org" in nb.cells[2].source
    assert "attachment:p.png" in nb.cells[2].source
    assert nb.cells[3].source.strip() == "<a>l</a>"
    assert "<script" not in nb.cells[4].source and "format" not in nb.cells[4].metadata
    assert "signature" not in nb.metadata and "widgets" not in nb.metadata


def test_outputs_become_data_and_keep_what_decides_a_score():
    outputs = [
        new_output("display_data", data={"text/html": f"<table><tr><td>1</td></tr></table><script>{SCRIPT}</script>"}),
        new_output("display_data", data={"application/javascript": SCRIPT, "text/plain": "<JS>"}),
        new_output("display_data", data={"image/svg+xml": f'<svg onload="{SCRIPT}"/>'}),
        new_output("display_data", data={"text/markdown": f'<img src=x onerror="{SCRIPT}">'}),
        new_output("stream", name="stderr", text="a warning\n"),
        new_output("error", ename="CheckFailed", evalue="wrong", traceback=["CheckFailed: wrong"]),
    ]
    nb = _sanitized([new_code_cell("x", outputs=outputs)])
    out = nb.cells[0].outputs
    assert [o.output_type for o in out] == [o.output_type for o in outputs]  # nbgrader's score reads these
    assert out[0].data["text/html"].startswith("<table><tbody><tr><td>1</td></tr></tbody></table>")
    assert "<script" not in out[0].data["text/html"]
    assert out[1].data == {"text/plain": "<JS>"}
    assert "image/svg+xml" not in out[2].data and "grader" in out[2].data["text/plain"]
    assert "onerror" not in out[3].data["text/markdown"]
    assert out[4].name == "stderr" and out[4].text == "a warning\n"
    assert out[5].ename == "CheckFailed" and out[5].traceback == ["CheckFailed: wrong"]


def test_outputs_are_capped_with_a_note():
    line = new_output("stream", name="stdout", text="x" * 8_000_000 + "\n")
    many = [new_output("stream", name="stdout", text="y" * 1_000_000) for _ in range(20)]
    image = new_output("display_data", data={"image/png": "A" * 3_000_000, "text/plain": "<Figure>"})
    error = new_output("error", ename="E", evalue="v" * 500_000, traceback=["t" * 500_000] * 10)
    nb = _sanitized([new_code_cell("x", outputs=[line, *many, image, error])], max_notebook_bytes=1_000_000)
    out = nb.cells[0].outputs
    assert len(nbformat.writes(nb)) < 1_600_000
    assert "cut by the course's grader" in out[0].text and len(out[0].text) < 101_000
    assert all(o.output_type == "stream" and o.name == "stdout" for o in out[1:21])
    assert "cut by the course's grader" in out[20].text
    assert "image/png" not in out[21].data
    assert out[22].output_type == "error" and out[22].ename == "E" and "cut" in out[22].evalue


def test_submitted_files_a_browser_would_run_are_renamed(tmp_path):
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    folder = tmp_path / "autograded" / "ann" / "hw"
    (folder / "data").mkdir(parents=True)
    (tmp_path / "source" / "hw").mkdir(parents=True)
    (tmp_path / "source" / "hw" / "given.html").write_text("<p>the instructor's page</p>")
    for name in ("notes.html", "data/pic.SVG", "given.html", "helper.py", "plot.png"):
        (folder / name).write_text("<script>x</script>")
    preprocessor = sanitize.SanitizeSubmission(config=config)
    assert CourseDirectory(config=config).root == str(tmp_path)
    preprocessor(new_notebook(), {"nbgrader": {"student": "ann", "assignment": "hw", "notebook": "n"}})
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert names == ["data/pic.SVG.txt", "given.html", "helper.py", "notes.html.txt", "plot.png"]


def _submit_loud(course, _scratch):
    """A submission with the solution, script in its markdown answer and outputs, files beside it and outputs of
    28 MB, graded as `make autograde` grades (the other route is in tests/browser/test_hostile_submission.py)."""
    solution = notebooks.solution_answers()
    noise = textwrap.dedent(f"""
        from IPython.display import HTML as _H, display as _d
        _d(_H("<b>plot</b><script>{SCRIPT}</script>"))
        print("x" * 8_000_000)  # one 8 MB line
        for _ in range(20):
            _d(_H("<p>" + "y" * 1_000_000 + "</p>"))
    """)
    answers = {
        **solution,
        "q_upstream_shift_answer": solution["q_upstream_shift_answer"] + "\n" + noise,
        "diagnose_explain": solution["diagnose_explain"] + f'\n\n<img src=x onerror="{SCRIPT}">',
    }
    path = scratch.submit(course, "loud", notebooks.fill_in(scratch.release_notebook(course), answers))
    folder = path if path.is_dir() else path.parent
    (folder / "notes.html").write_text(f"<script>{SCRIPT}</script>")


shared_grading.register("grader", __name__, ["loud"], _submit_loud)


@pytest.fixture(scope="module")
def loud(grader_grading):
    grader_grading.feedback()
    return grader_grading.course, grader_grading.run


@pytest.mark.slow
def test_a_loud_submission_keeps_its_marks_and_its_pages_stay_small_and_inert(loud):
    from bnlab.instructor.autograde import coordinator, record

    course, run = loud
    assert "loud" in run.graded, coordinator.summary(run)
    scores = record.cell_scores(course, scratch.EXERCISE)["loud"]
    tests = {name for name in scores if name.startswith("test_")}
    assert tests and all(scores[n][0] == scores[n][1] for n in tests), scores
    graded = course / "autograded" / "loud" / scratch.EXERCISE
    page = course / "feedback" / "loud" / scratch.EXERCISE / f"{exercise.NOTEBOOK}.html"
    notebook = graded / f"{exercise.NOTEBOOK}.ipynb"
    nb = nbformat.read(notebook, as_version=4)  # what is rendered: outputs and markdown (code is shown as text)
    shown = json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])
    shown += "".join(c.source for c in nb.cells if c.cell_type != "code")
    for path, text in ((notebook, shown), (page, page.read_text())):  # in the HTML, code is escaped
        assert path.stat().st_size < 7_000_000, f"{path.name}: {path.stat().st_size} bytes"
        assert "cut by the course's grader" in text
        assert not re.search(r"<script>fetch|<img[^>]*onerror", text), path.name
    assert (graded / "notes.html.txt").is_file() and not (graded / "notes.html").exists()


def test_the_course_own_markdown_passes_unchanged():
    """Every markdown cell of the masters (hints in <details>, tables, math, links) is left exactly as written."""
    changed = [
        (path.name, i)
        for path in sorted(notebooks.ROOT.glob("source/*/*.ipynb"))
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells)
        if cell.cell_type == "markdown" and sanitize.clean_markup(cell.source) != cell.source
    ]
    assert changed == []
