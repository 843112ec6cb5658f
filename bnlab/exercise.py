"""The graded exercise and its notebook, defined once.

Where the exercise lives (assignment and notebook names, the source / release / solutions paths)
and how its cells are read: the benchmark, the nbgrader pipeline and the tests all take these from
here. This module imports no TensorFlow, and nbformat only when a reader runs (importing it takes
about 2 s, which every graded kernel would pay), so kernels, release and feedback tooling stay light.
"""
from __future__ import annotations

from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "batch_norm_exercises"
NOTEBOOK = "Batch_Normalization_Exercises"
FILENAME = f"{NOTEBOOK}.ipynb"
RELATIVE = Path(ASSIGNMENT) / FILENAME           # inside source/, release/, solutions/, submitted/STUDENT/
SOURCE = ROOT / "source" / RELATIVE
RELEASE = ROOT / "release" / RELATIVE
SOLUTIONS = ROOT / "solutions" / RELATIVE
# The exercise's training schedule (as in the original exercise): bnlab.training runs it, the monitor's
# benchmark simulates it. Kept here, free of TensorFlow, so that tooling can read it cheaply.
LEARNING_RATE = 0.002
BATCH_SIZE = 64
NUM_BATCHES = 800
TRAIN_LOG_EVERY = 25        # training loss/accuracy logged every this many batches
VALIDATE_EVERY = 100        # validation loss/accuracy every this many batches
SINGLE_SAMPLES = 100        # the first test images scored one at a time at the end


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
DEMO_CELLS = frozenset({"diagnose_symptom", "diagnose_trace", "statistics_demo", "diagnose_fix_check"})


def grade_id(cell) -> str | None:
    """The nbgrader ``grade_id`` of ``cell`` (``None`` for a cell nbgrader does not track)."""
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def read(path: Path = SOURCE) -> nbformat.NotebookNode:
    """The notebook at ``path`` (the source master by default)."""
    import nbformat

    return nbformat.read(path, as_version=4)


def code_cells(source: Path = SOURCE, skip_training_runs: bool = True) -> list[tuple[str | None, dict, str]]:
    """``(grade_id, nbgrader metadata, source)`` of the notebook's code cells, in order (by default
    without the training runs and demonstration cells)."""
    cells = []
    for cell in read(source).cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and not (skip_training_runs and meta.get("grade_id") in TRAINING_RUNS | DEMO_CELLS):
            cells.append((meta.get("grade_id"), meta, cell.source))
    return cells


def notebook_namespace(until: str, source: Path = SOURCE) -> dict:
    """Execute the notebook's code cells (training runs and test cells skipped) up to and including ``until``."""
    namespace: dict = {"__name__": "__exercise__"}
    for cell_id, meta, code in code_cells(source):
        if meta.get("grade"):
            continue
        exec(code, namespace)
        if cell_id == until:
            return namespace
    raise KeyError(f"no cell {until!r} in {source}")


def answer_cells(notebook: nbformat.NotebookNode) -> dict:
    """``{grade_id: source}`` of the cells a student writes (nbgrader ``solution`` cells)."""
    return {grade_id(c): c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")}


def solution_answers(source: Path = SOURCE) -> dict:
    """The instructor's answers, ``{grade_id: source}``, from the source notebook."""
    return answer_cells(read(source))


def fill_in(release_nb: nbformat.NotebookNode, answers: dict) -> nbformat.NotebookNode:
    """A copy of the student notebook with the answer cells ``{grade_id: source}`` written in."""
    import nbformat

    nb = nbformat.from_dict(release_nb)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb
