"""The graded exercise, defined once: its names, its training schedule and its demonstration cells.

Kernels and tooling both read these; the module imports nothing, so either stays light. Where the
notebooks live and how their cells are read is instructor tooling: :mod:`bnlab.instructor.notebooks`.
"""

from __future__ import annotations

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
