"""The graded exercise, defined once: its names, its training schedule and its demonstration cells.

The notebook's kernel and the course's tools both read these; the module imports only `re`, so either stays
light.
"""

from __future__ import annotations

import re

ASSIGNMENT = "batch_norm_exercises"
NOTEBOOK = "Batch_Normalization_Exercises"
FILENAME = f"{NOTEBOOK}.ipynb"
# The exercise's training schedule (as in the original exercise): bnlab.training runs it, the monitor's
# benchmark simulates it. Kept here, free of TensorFlow, so that tooling can read it cheaply.
LEARNING_RATE = 0.002
BATCH_SIZE = 64
NUM_BATCHES = 800
TRAIN_LOG_EVERY = 25  # training loss/accuracy logged every this many batches
VALIDATE_EVERY = 100  # validation loss/accuracy every this many batches
SINGLE_SAMPLES = 100  # the first test images scored one at a time at the end
# Part 3's fix: the population statistics must keep at least this decay (each new batch weighs at most 1 - it).
# A decay inferred from float32 statistics is not exact: the bound allows MOMENTUM_TOLERANCE, so that a layer
# set to exactly 0.5 is accepted.
MIN_MOMENTUM = 0.5
MOMENTUM_TOLERANCE = 1e-4
# ... and at most this one: after the exercise's run the initial statistics weigh at most a half (0.999: 0.45)
MAX_MOMENTUM = 0.5 ** (1 / NUM_BATCHES)


def conv_output_shape(layer_depth: int, batch: int) -> tuple[int, int, int, int]:
    """The shape of the linear output of the exercise's ``conv_layer`` at ``layer_depth`` for ``batch`` images
    (3x3 kernels, ``layer_depth * 4`` feature maps, stride 2 on every third layer, "same" padding, 28x28 input)."""
    size = 28
    for depth in range(1, layer_depth + 1):
        if depth % 3 == 0:
            size = -(-size // 2)
    return batch, size, size, layer_depth * 4


def due(batch: int, num_batches: int, every: int) -> bool:
    """Whether 1-based ``batch`` is a reporting point of the schedule: every ``every`` batches, and the last.

    The exercise's loop (:mod:`bnlab.training`), the lesson's demos and the monitor's simulated
    workload all log training figures on ``due(b, n, TRAIN_LOG_EVERY)`` and validate on
    ``due(b, n, VALIDATE_EVERY)``.
    """
    return batch % every == 0 or batch == num_batches


# The cells that run the long training runs, and other cells that only demonstrate (the classmate's
# symptom and statistics, the measurement after a question, the verdict on the fix): tools that only
# need the functions (in-process grading, the benchmark, the trusted re-run of the checks) skip both;
# nothing later depends on their output.
TRAINING_RUNS = frozenset({"keras_baseline_run", "keras_bn_run", "nn_bn_run"})
DEMO_CELLS = frozenset(
    {"diagnose_symptom", "diagnose_trace", "statistics_demo", "diagnose_fix_check", "upstream_shift_demo"}
)


# --------------------------------------------------------------------------------------------
# What Validate can and cannot tell a student

# A multiple-choice answer's check in the notebook says only whether the letter is one of the options, a numeric
# answer's only whether it is a number; a written answer has no check at all. All are graded after the notebook is
# handed in, each student's against their own variant (bnlab.variants).
CHOICE_CHECK = re.compile(r"\bcheck_(?:choice|number)\(\s*(ANSWER_\w+)")
LATER = (
    "Not checked here: {name} = {value} has the form of an answer, but whether it is the right one is graded after "
    "you submit ({points:g} points)."
)
WRITTEN = "Not checked here: your written answer ({points:g} points) is graded by your instructor after you submit."


def graded_after_submission(nb) -> list[dict]:
    """The answers of notebook ``nb`` (an nbformat notebook) that no check can judge before it is handed in:
    ``{"source", "message"}`` for each multiple-choice or numeric answer and each written answer, in notebook
    order."""
    answers = {}
    for cell in nb.cells:
        for name, value in re.findall(r"^(ANSWER_\w+)\s*=\s*(.+?)\s*$", cell.source, re.M):
            answers[name] = value
    found = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        points = float(meta.get("points", 0))
        if cell.cell_type == "markdown":
            found.append({"source": cell.source.strip()[:200], "message": WRITTEN.format(points=points)})
            continue
        for name in CHOICE_CHECK.findall(cell.source):
            value = answers.get(name, "(not set)")
            found.append(
                {"source": f"{name} = {value}", "message": LATER.format(name=name, value=value, points=points)}
            )
    return found


def explain_validation() -> None:
    """Make ``nbgrader validate`` list the answers graded only after submission where it would print a bare
    "Success!".

    nbgrader 0.9.6 has no setting for that line, so an nbgrader configuration file calls this. A validation
    that finds nothing wrong then ends with each such answer and what is and is not checked; failures,
    changed cells and changed cell types are printed as before. JupyterLab's *Validate* dialog says the same
    through the course's JupyterLab extension (jupyter/validate-extension), which reads the open notebook by
    this module's rule; the results nbgrader's server sends that dialog are left as they are.
    """
    import nbformat
    from nbgrader.validator import Validator

    if getattr(Validator, "explains_later_grading", False):
        return
    validate_and_print = Validator.validate_and_print

    def print_explained(self, filename):
        results = self.validate(filename)
        later = [] if results or self.invert else graded_after_submission(nbformat.read(filename, as_version=4))
        if later:
            self.stream.write("Success! Every check in the notebook passes. Graded only after you submit:\n")
            for answer in later:
                self.stream.write(f"- {answer['message']}\n")
            return
        self.validate = lambda _filename: results  # nbgrader prints what was found, without running it again
        try:
            validate_and_print(self, filename)
        finally:
            del self.validate

    Validator.validate_and_print = print_explained
    Validator.explains_later_grading = True
