"""The live monitor's drawing cost on a simulated training loop: ``python -m bnlab.instructor.bench monitor``.

A fixed NumPy workload stands in for the training step, and the course's one loop
(:func:`bnlab.training.loop.run_schedule`) logs on the exercise's schedule
(:data:`bnlab.exercise.TRAIN_LOG_EVERY`, :data:`bnlab.exercise.VALIDATE_EVERY`), once with a
silent monitor and once with one that renders its panel exactly as in a notebook but displays
nothing. No TensorFlow model trains, so the figures isolate the monitor's cost; ``make bench``
(:mod:`bnlab.instructor.bench.training`) measures it on a real network. Importing this module loads
no TensorFlow (the training loop is imported when a simulation runs).
"""

from __future__ import annotations

import argparse
import io
import math
import time
from typing import Callable

from bnlab.exercise import TRAIN_LOG_EVERY, VALIDATE_EVERY
from bnlab.monitor import TrainingMonitor

__all__ = ["bench", "simulate", "workload", "schedule", "add_arguments", "run"]


def schedule() -> tuple[int, int]:
    """``(log_every, validate_every)``: the exercise's logging schedule, from :mod:`bnlab.exercise`."""
    return TRAIN_LOG_EVERY, VALIDATE_EVERY


def workload(seconds_per_batch: float) -> Callable[[], None]:
    """A function doing a fixed numpy workload (matmuls) that took ~``seconds_per_batch`` here.

    48x48 matrices stay below OpenBLAS's threading threshold: single-threaded, so the timing
    does not collapse when other processes share the CPU cores.
    """
    import numpy as np

    a = np.random.default_rng(0).standard_normal((48, 48)).astype(np.float32)
    a @ a
    started = time.perf_counter()
    reps = 0
    while time.perf_counter() - started < 0.5:
        a @ a
        reps += 1
    per_batch = max(1, int(round(reps * seconds_per_batch / (time.perf_counter() - started))))

    def one_batch():
        for _ in range(per_batch):
            a @ a

    return one_batch


def simulate(
    monitor: TrainingMonitor,
    batches: int,
    one_batch: Callable[[], None],
    name: str,
    every: tuple[int, int] | None = None,
) -> float:
    """A fake training loop (:func:`bnlab.training.loop.run_schedule`) logging into a run of ``monitor``;
    closes ``monitor`` and returns the wall time in seconds.

    Args:
        monitor: the monitor to log into.
        batches: the number of batches.
        one_batch: the step's workload, called once a batch.
        name: the run's name.
        every: ``(log, validate)`` intervals in batches; by default the exercise's schedule.
    """
    from bnlab.training.loop import run_schedule

    log_every, validate_every = every or schedule()

    def step(batch: int) -> tuple[float, float]:
        one_batch()
        return 2.3 * (1 - batch / batches) + 0.05, 0.1 + 0.88 * batch / batches

    def validate(batch: int) -> tuple[float, float]:
        return 2.3 * (1 - batch / batches) + 0.08, 0.1 + 0.86 * batch / batches

    run = monitor.run(name, total_batches=batches)
    started = time.perf_counter()
    run_schedule(batches, step, validate, run, log_every=log_every, validate_every=validate_every)
    run.finish(validation_accuracy=0.96)
    monitor.close()
    return time.perf_counter() - started


def bench(batches: int = 800, seconds_per_batch: float = 0.04, repeat: int = 1) -> dict:
    """Time a simulated training loop with a rendering monitor vs a silent one; print a table.

    The monitor renders PNGs exactly as in a notebook (``mode="widget", render_only=True``) but
    displays nothing. Silent and rendering runs alternate ``repeat`` times and the fastest of
    each is kept. "overhead %" compares wall times (noisy on a busy machine); "draw %" is the
    share of the monitored run's wall time spent rendering, measured directly.
    """
    if batches < 1 or seconds_per_batch < 0:
        raise ValueError(
            f"batches must be at least 1 and seconds_per_batch at least 0, not {batches} and {seconds_per_batch}"
        )
    one_batch = workload(seconds_per_batch)
    every = schedule()
    base = with_monitor = math.inf
    live = None
    for _ in range(max(repeat, 1)):
        silent = TrainingMonitor("bench", batches, mode="silent")
        base = min(base, simulate(silent, batches, one_batch, "silent", every))
        monitor = TrainingMonitor("bench", batches, mode="widget", render_only=True, stream=io.StringIO())
        seconds = simulate(monitor, batches, one_batch, "widget", every)
        if seconds < with_monitor:
            with_monitor, live = seconds, monitor
    overhead = 100.0 * (with_monitor - base) / base
    result = {
        "batches": batches,
        "seconds_without": base,
        "seconds_with": with_monitor,
        "redraws": live.redraw_count,
        "draw_seconds": live.draw_seconds,
        "overhead_pct": overhead,
        "draw_pct": 100.0 * live.draw_seconds / with_monitor,
        "mode": live.mode,
    }
    print(
        f"{'batches':>8} {'s without':>10} {'s with':>8} {'redraws':>8} {'draw s':>7} {'overhead %':>10} {'draw %':>7}"
    )
    print(
        f"{batches:>8} {base:>10.2f} {with_monitor:>8.2f} {live.redraw_count:>8} "
        f"{live.draw_seconds:>7.2f} {overhead:>10.1f} {result['draw_pct']:>7.1f}"
    )
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m bnlab.instructor.bench monitor``."""
    parser.add_argument("--batches", type=int, default=800)
    parser.add_argument("--seconds-per-batch", type=float, default=0.04)
    parser.add_argument("--repeat", type=int, default=1, help="alternate runs, keep the fastest of each")


def run(args: argparse.Namespace) -> int:
    """Time the simulated loop silent and drawing; print the table (``args.error`` reports bad options)."""
    try:
        bench(args.batches, args.seconds_per_batch, args.repeat)
    except ValueError as exc:
        args.error(str(exc))
    return 0
