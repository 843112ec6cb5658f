"""The reporting schedule of every training loop in the course, written once.

:func:`run_schedule` runs ``num_batches`` training steps and reports to a monitor run on the
exercise's schedule (:func:`bnlab.exercise.due`): the training loss and accuracy every
``log_every`` batches and after the last one, the validation loss and accuracy every
``validate_every`` batches and after the last one. The exercise's loop (:func:`bnlab.training.train`),
the lesson's demos (:func:`bnlab.lesson.train_demo`), the per-layer recording
(:func:`bnlab.diagnostics.train_and_record`) and the monitor's simulated workload (the course's
benchmark) all run it; what differs between them (the step, the
validation, what happens after the last batch or after every batch) comes in as functions.

This module imports no TensorFlow: a step may return tensors, and they are read on the host once
per logging interval, all of that interval's batches together, so the device is not made to wait
after every batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Callable, ContextManager

import numpy as np

from bnlab.exercise import TRAIN_LOG_EVERY, VALIDATE_EVERY, due


def finite_or_nan(value: float) -> float:
    """``value``, or ``nan`` when it is infinite (an overflowing loss is reported as ``nan``)."""
    return value if math.isfinite(value) else float("nan")


def _untimed(part: str) -> ContextManager:
    return contextlib.nullcontext()


class SilentRun:
    """A monitor run that keeps nothing: for a loop that reports to no monitor."""

    def log(self, batch: int, loss: float, accuracy: float, split: str = "train") -> None:
        pass

    def finish(self, **final) -> None:
        pass


@dataclasses.dataclass
class Logs:
    """What :func:`run_schedule` recorded: ``batch_log`` has ``(loss, accuracy)`` of every batch,
    ``train_log`` and ``validation_log`` the ``(batch, loss, accuracy)`` reported to the run."""

    batch_log: list = dataclasses.field(default_factory=list)
    train_log: list = dataclasses.field(default_factory=list)
    validation_log: list = dataclasses.field(default_factory=list)


def run_schedule(
    num_batches: int,
    step: Callable,
    validate: Callable,
    run,
    *,
    log_every: int = TRAIN_LOG_EVERY,
    validate_every: int = VALIDATE_EVERY,
    average: bool = False,
    at_last_batch: Callable[[], None] | None = None,
    after_step: Callable[[int], None] | None = None,
    watch: Callable[[str], ContextManager] = _untimed,
) -> Logs:
    """Run ``step(batch)`` for batches 1 to ``num_batches`` and report on the schedule to ``run``.

    ``step(batch)`` trains on the 1-based ``batch`` and returns its ``(loss, accuracy)`` (floats
    or scalar tensors). When the training figures are due (:func:`bnlab.exercise.due` with
    ``log_every``) the pending figures are read and ``run.log(batch, loss, accuracy,
    split="train")`` receives those of the last batch, or with ``average`` their mean over the
    interval. Then, after the last batch only, ``at_last_batch()`` runs (the exercise refreshes its
    population statistics there, before the final validation). When validation is due (``due``
    with ``validate_every``) ``validate(batch)`` returns ``(loss, accuracy)`` and
    ``run.log(..., split="validation")`` receives them. Last, ``after_step(batch)`` runs after every
    batch (the per-layer recording keeps its snapshots there). A loss that overflowed is logged to the
    run as ``nan`` (:func:`finite_or_nan`); the returned :class:`Logs` keep it as it was.

    ``watch(part)`` returns a context manager that times a part of the loop (a
    :class:`bnlab.training.Stopwatch`): the first step is timed as ``"tracing"`` (a compiled step
    traces itself on its first call), the other steps and the reading of their figures as
    ``"steps"``, ``validate`` as ``"validation"`` and the reports to the run as ``"monitor"``.
    ``at_last_batch`` and ``after_step`` time themselves. ``run.finish`` is left to the caller.
    """
    logs = Logs()
    pending: list = []
    for batch in range(1, num_batches + 1):
        with watch("tracing" if batch == 1 else "steps"):
            pending.append(step(batch))
        if due(batch, num_batches, log_every):
            with watch("steps"):  # the one host sync per logging interval
                figures = [(float(loss), float(accuracy)) for loss, accuracy in pending]
                pending = []
            logs.batch_log.extend(figures)
            if average:
                loss, accuracy = (float(np.mean(column)) for column in zip(*figures))
            else:
                loss, accuracy = figures[-1]
            logs.train_log.append((batch, loss, accuracy))
            with watch("monitor"):
                run.log(batch, finite_or_nan(loss), accuracy, split="train")
        if batch == num_batches and at_last_batch is not None:
            at_last_batch()
        if due(batch, num_batches, validate_every):
            with watch("validation"):
                loss, accuracy = (float(value) for value in validate(batch))
            logs.validation_log.append((batch, loss, accuracy))
            with watch("monitor"):
                run.log(batch, finite_or_nan(loss), accuracy, split="validation")
        if after_step is not None:
            after_step(batch)
    return logs
