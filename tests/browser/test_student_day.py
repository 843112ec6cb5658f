"""The student's day in a real browser: `make lab`, the exercise notebook, its checks, the live
training panel, nbgrader's Validate button, and the lesson's comparison controls.

The notebooks are read for their nbgrader metadata (grade ids, which cells are graded checks),
never for their prose, so the tests follow the course as its text changes.
"""

from __future__ import annotations

import re
import time

import pytest
from labdriver import CELLS, STDERR, STDOUT, Notebook, Steps, appears, errors, news_prompts, text, validate

from bnlab import exercise
from bnlab.instructor import notebooks

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

LESSON = "batch_norm_lesson/Batch_Normalization_Lesson.ipynb"

# A Part 1 answer that builds the layers without batch normalization: the checks must say so.
WRONG_KERAS_LAYERS = """\
from tensorflow import keras


def fully_connected(prev_layer, num_units):
    return keras.layers.Dense(num_units, activation="relu")(prev_layer)


def conv_layer(prev_layer, layer_depth):
    strides = 2 if layer_depth % 3 == 0 else 1
    return keras.layers.Conv2D(layer_depth * 4, 3, strides=strides, padding="same", activation="relu")(prev_layer)
"""

# The live panel of the cell with index `i`: its one output node (tagged on first sight, so a
# replaced node shows up as a new tag), its text (progress, status, log) and its image.
PANEL_JS = """
([cells, i]) => {
  const cell = document.querySelectorAll(cells)[i];
  const outputs = cell.querySelectorAll('.jp-OutputArea-child > .jp-OutputArea-output');
  const widget = cell.querySelector('.jp-OutputArea-output .jupyter-widgets');
  if (widget && !widget.dataset.seen) widget.dataset.seen = String(performance.now());
  const img = widget ? widget.querySelector('img') : null;
  const bar = widget ? widget.querySelector('.progress-bar') : null;
  return {outputs: outputs.length, widget: !!widget, tag: widget ? widget.dataset.seen : null,
          text: widget ? widget.innerText : '', img: img ? img.src : null,
          bar: bar ? bar.style.width : null};
}
"""


def student_code(source: str) -> str:
    """The instructor's answer as a student would type it: without nbgrader's solution markers."""
    return (
        "\n".join(line for line in source.splitlines() if not re.fullmatch(r"\s*### (BEGIN|END) SOLUTION\s*", line))
        + "\n"
    )


def is_check(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("grade"))


def is_answer(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def test_exercise_day(student_lab, page):
    base, root = student_lab
    steps = Steps(page, "student-exercise")
    nb = Notebook(page, base, root, str(notebooks.RELATIVE))
    answers = {k: student_code(v) for k, v in notebooks.solution_answers().items()}
    layers, train_fns, nn_layers = (nb.index(g) for g in ("keras_layers", "keras_training", "nn_layers"))
    run_cell = min(
        i
        for i in range(train_fns, len(nb.nb.cells))
        if nb.nb.cells[i].metadata.get("nbgrader", {}).get("grade_id") in exercise.TRAINING_RUNS
    )
    next_answer = min([i for i in range(train_fns + 1, run_cell) if is_answer(nb.nb.cells[i])], default=run_cell)
    checks = [i for i in nb.code_indices(train_fns + 1, next_answer) if is_check(nb.nb.cells[i])]
    assert checks, "no graded check cells between the Part 1 answers and its training run"

    with steps("open the exercise notebook"):
        nb.open()
        assert news_prompts(page) == 0, "JupyterLab asks about Jupyter news (the course settings should stop it)"

    with steps("run the cells above the Part 1 answers, answering what they ask"):
        earlier_answers = []
        for i in nb.code_indices(0, layers):
            if nb.nb.cells[i].metadata.get("nbgrader", {}).get("grade_id") in exercise.TRAINING_RUNS:
                continue  # the baseline run is the student's choice; the panel is checked below
            if is_answer(nb.nb.cells[i]):  # a question about the baseline run
                nb.type_into(i, answers[nb.nb.cells[i].metadata["nbgrader"]["grade_id"]])
                earlier_answers.append(i)
            outputs = nb.run(i, timeout=240)
            assert not errors(outputs), f"cell {i} failed: {errors(outputs)}"

    with steps("a wrong Part 1 answer fails its check"):
        nb.type_into(layers, WRONG_KERAS_LAYERS)
        assert not errors(nb.run(layers)), "the wrong (but runnable) answer should define the functions"
        nb.type_into(train_fns, answers["keras_training"])
        assert not errors(nb.run(train_fns))
        failure = "\n".join(errors(nb.run(checks[0])))
        assert failure, "the first check passed a layer without batch normalization"
        assert "BatchNormalization" in failure, f"the failure does not say what is missing: {failure[-600:]}"
        nb.cell(checks[0]).locator(".jp-OutputArea").scroll_into_view_if_needed()

    with steps("the right Part 1 answer passes every Part 1 check"):
        nb.type_into(layers, answers["keras_layers"])
        assert not errors(nb.run(layers))
        for i in checks:
            outputs = nb.run(i)
            assert not errors(outputs), f"check cell {i} failed on the solution: {errors(outputs)[-1][-600:]}"
            assert text(outputs).strip(), f"check cell {i} printed no pass message"
        nb.cell(checks[-1]).locator(".jp-OutputArea").scroll_into_view_if_needed()

    with steps("a shortened training run shows the live panel, updated in place"):
        nb.start(run_cell)
        samples, started, shot = [], time.monotonic(), None
        while not nb.finished(run_cell) and time.monotonic() - started < 300:
            sample = page.evaluate(PANEL_JS, [CELLS, run_cell])
            samples.append(sample)
            if sample["img"] and sample["bar"] not in (None, "", "0%") and not shot:
                nb.cell(run_cell).scroll_into_view_if_needed()
                shot = steps.shot("live panel while training")
            time.sleep(0.25)
        live = [s for s in samples if s["widget"]]
        assert len(live) >= 3, f"the live panel was seen in {len(live)} of {len(samples)} samples"
        assert max(s["outputs"] for s in live) == 1, "the cell piled up outputs while the panel was live"
        assert len({s["tag"] for s in live}) == 1, "the panel was replaced instead of updated in place"
        assert len({(s["text"], s["bar"]) for s in live}) >= 2, "the panel's progress and status never changed"
        assert any(s["img"] for s in live), "the panel shows no chart"

    with steps("the run ends as one figure and a summary line"):
        final = nb.wait(run_cell, timeout=120)
        nb.cell(run_cell).scroll_into_view_if_needed()
        assert not errors(final), f"the training run wrote errors: {errors(final)}"
        assert final and final[0]["mime"] == "image/png", f"the panel did not become a figure: {final}"
        assert not any(o["widget"] for o in final), "a widget is left after the run"
        summaries = [line for line in text(final).splitlines() if line.startswith("Summary:")]
        assert len(summaries) == 1, f"expected one summary line, got {text(final)!r}"

    with steps("Validate passes the finished notebook and names what is graded after submission"):
        rest = [i for i in range(train_fns + 1, len(nb.nb.cells)) if is_answer(nb.nb.cells[i])]
        assert nn_layers in rest
        for i in rest:  # every other answer (Part 2 and the rest), as the solution has it
            nb.type_into(i, answers[nb.nb.cells[i].metadata["nbgrader"]["grade_id"]])
        saved = nb.save()
        for i in [*earlier_answers, layers, train_fns, *rest]:
            grade_id = saved.cells[i].metadata["nbgrader"]["grade_id"]
            assert saved.cells[i].source.strip() == answers[grade_id].strip(), (
                f"the editor holds another text in {grade_id}"
            )
        validate(page, saved, 420)  # no check fails, and the message names what is graded after submission

    with steps("no news pop-up and nothing fetched from the internet all day"):
        page.locator(".jp-Dialog .jp-mod-accept").click()
        assert news_prompts(page) == 0
        assert not page.external_requests, f"the page reached beyond the machine: {page.external_requests[:5]}"


def test_lesson_comparison_controls(student_lab, page):
    base, root = student_lab
    steps = Steps(page, "student-lesson")
    nb = Notebook(page, base, root, LESSON)
    controls = [i for i in nb.code_indices() if "ComparisonControls(" in nb.nb.cells[i].source]
    assert controls, "the lesson has no cell that shows lesson.ComparisonControls"
    # The cells the controls need: from the top down to the one that loads MNIST.
    needed = nb.code_indices(0, controls[0])
    needed = needed[: 1 + next((k for k, i in enumerate(needed) if "load_mnist(" in nb.nb.cells[i].source), 0)]

    with steps("open the lesson and show the comparison controls"):
        nb.open()
        for i in [*needed, controls[0]]:
            outputs = nb.run(i, timeout=240)
            assert not errors(outputs), f"cell {i} failed: {errors(outputs)}"
        cell = nb.cell(controls[0])
        cell.scroll_into_view_if_needed()
        selects = cell.locator(".widget-dropdown select")
        assert selects.count() >= 3, f"{selects.count()} dropdowns, expected learning rate, activation, weights"
        button = cell.locator("button", has_text="Train with and without BN")
        assert button.count() == 1, "the Train button is missing"

    with steps("choose another setting and train with and without BN"):
        activation = cell.locator(".widget-dropdown", has_text="activation").locator("select")
        current = activation.input_value()
        choice = next(o for o in activation.locator("option").all_inner_texts() if o != current)
        activation.select_option(label=choice)
        button.click()
        output = cell.locator(".widget-output")
        appears(output.locator("img").first, 120, "the comparison's training panel (after clicking Train)")
        cell.scroll_into_view_if_needed()
        steps.shot("comparison panel while training")
        printed = output.locator(f'[data-mime-type="{STDOUT}"]')  # the results table, or why it failed
        appears(printed.first, 300, "the comparison's results table")
        time.sleep(0.5)
        table = "\n".join(printed.all_inner_texts())
        assert "val acc" in table and "failed" not in table, f"the comparison failed: {table[-600:]}"
        assert not output.locator(f'[data-mime-type="{STDERR}"]').count(), "the comparison wrote errors"
        rows = [line for line in table[table.index("val acc") :].splitlines()[1:] if line.strip()]
        assert len(rows) == 2, f"expected two runs (with and without BN) in the table: {rows}"
        assert all(choice in row for row in rows), f"the runs do not use the chosen activation {choice!r}: {rows}"
        assert not button.is_disabled(), "the Train button stays disabled after training"
        cell.scroll_into_view_if_needed()
