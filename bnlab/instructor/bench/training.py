"""Benchmark of the exercise: full 800-batch runs of the three networks over five seeds, with where the time goes.

``python -m bnlab.instructor.bench training`` (``make bench``) takes the networks from the source notebook itself
(the code the students see and the instructor's solution), trains each for 800 batches per seed
with the monitor silent, and prints a line per run as it goes (accuracy, wall time, and its parts),
then for each network a table of medians and worst cases and a breakdown of the wall time:

- compiled training steps, the first step (tracing and compilation) excluded;
- evaluations: validation every 100 batches, the test set, the 100 single images;
- tracing and compilation of the step and the evaluations;
- the population refresh after training (:mod:`bnlab.training.population`), the monitor, and the rest;
- the floor: a bare compiled step timed alone on a fixed batch, times the number of batches.

The overhead ratio is a run's wall time over its training steps plus its required evaluations.
It then times ``nbgrader autograde`` of the solution (:mod:`bnlab.instructor.bench.grading`: wall time and
peak memory), and a class of 8 solutions graded with ``JOBS=1`` and ``JOBS=2``
(:func:`bnlab.instructor.bench.grading.time_class`; ``--class-size``). The last line
printed is one JSON object: per network ``<net>_test_accuracy`` (median), ``<net>_test_accuracy_worst``,
``<net>_single_sample_accuracy`` and ``_worst``, ``<net>_train_seconds`` (median wall time),
``<net>_time_ratio`` (to no-BN), ``<net>_overhead_ratio`` (median) and ``_worst``,
``<net>_steps_seconds``, ``<net>_floor_seconds``, for ``<net>`` in ``no_bn``, ``keras_bn``,
``nn_bn``; plus ``autograde_seconds`` (the median of ``autograde_runs``, ``--autograde-repeats``, default 5),
``autograde_peak_gib``, ``class_size``, ``class_jobs_1_seconds``, ``class_jobs_2_seconds``, ``class_speedup``,
``seeds``, ``batches``, ``device``, ``deterministic`` and
``monitor_draw_share`` (the share of a run's wall time spent drawing the live monitor).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import bnlab
from bnlab.data import load_mnist, one_hot
from bnlab.exercise import BATCH_SIZE, LEARNING_RATE, NUM_BATCHES
from bnlab.instructor.bench.grading import grading_table, repeat_autograde, time_class
from bnlab.instructor.notebooks import notebook_namespace

# network name -> (last cell to execute, how to build and train it from that namespace)
NETWORKS = {
    "no_bn": ("keras_baseline_training", lambda ns: (ns["build_network"], ns["train_step"], ns["predict"])),
    "keras_bn": ("keras_training", lambda ns: (ns["build_network"], ns["train_step"], ns["predict"])),
    "nn_bn": (
        "nn_layers",
        lambda ns: (lambda: ns["nn"].Network(ns["build_network_nn"]), ns["train_step_nn"], ns["predict_nn"]),
    ),
}
LABELS = {
    "no_bn": "Keras, no batch norm",
    "keras_bn": "Part 1: Keras + BatchNormalization",
    "nn_bn": "Part 2: tf.nn batch norm",
}
BN_NETWORKS = ("keras_bn", "nn_bn")
EVALUATIONS = ("validation", "test", "single")
PARTS = ("steps", "validation", "test", "single", "tracing", "refresh", "monitor", "data", "other")


def run_one(network: str, seed: int, batches: int, data, monitor_mode: str = "silent"):
    """Train one network (built after seeding); returns its :class:`bnlab.training.Results` and the monitor.

    Args:
        network: a key of :data:`NETWORKS`.
        seed: the training seed.
        batches: the number of training batches.
        data: the MNIST splits (:func:`bnlab.data.load_mnist`).
        monitor_mode: the monitor's mode (``"widget"`` renders as in a notebook, without displaying).
    """
    from bnlab import training
    from bnlab.monitor import TrainingMonitor

    until, make = NETWORKS[network]
    bnlab.tf.keras.backend.clear_session()
    build, step, predict = make(notebook_namespace(until))
    # "widget" outside Jupyter renders every figure as in the notebook, without displaying it
    monitor = TrainingMonitor(title=network, total_batches=batches, mode=monitor_mode)
    results = training.train(
        build,
        step,
        predict,
        name=f"{network} seed {seed}",
        data=data,
        num_batches=batches,
        seed=seed,
        monitor=monitor,
        validation_size=len(data.validation),
    )
    monitor.close()
    return results, monitor


def overhead_ratio(timings: dict) -> float:
    """Wall time over the time a run cannot avoid: its training steps and required evaluations."""
    required = timings["steps"] + sum(timings[part] for part in EVALUATIONS)
    return timings["wall"] / required if required else float("nan")


def floor_seconds(network: str, data, steps: int = 100, batch_size: int = BATCH_SIZE) -> float:
    """Seconds per step of the bare compiled ``train_step`` on one fixed batch (after warm-up), with
    the optimizer the training loop uses."""
    from bnlab import training
    from bnlab.training.adam import FusedAdam

    tf = bnlab.tf
    until, make = NETWORKS[network]
    tf.keras.backend.clear_session()
    training.set_seed(0)
    build, step, _ = make(notebook_namespace(until))
    model, optimizer, fn = build(), FusedAdam(LEARNING_RATE), tf.function(step)
    x = tf.constant(data.train.images[:batch_size])
    y = tf.constant(one_hot(data.train.labels[:batch_size]))
    for _ in range(3):
        fn(model, optimizer, x, y)
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = fn(model, optimizer, x, y)
    float(loss)
    return (time.perf_counter() - start) / steps


def summarize(results: list, floor_per_step: float, batches: int) -> dict:
    """Medians and worst cases over the seeds of one network."""
    med = statistics.median
    row = {
        "test_accuracy": med(r.test_accuracy for r in results),
        "test_accuracy_worst": min(r.test_accuracy for r in results),
        "single_sample_accuracy": med(r.single_sample_accuracy for r in results),
        "single_sample_accuracy_worst": min(r.single_sample_accuracy for r in results),
        "train_seconds": med(r.timings["wall"] for r in results),
        "overhead_ratio": med(overhead_ratio(r.timings) for r in results),
        "overhead_ratio_worst": max(overhead_ratio(r.timings) for r in results),
        "floor_seconds": floor_per_step * batches,
    }
    for part in PARTS:
        row[f"{part}_seconds"] = med(r.timings[part] for r in results)
    return row


def breakdown_table(rows: dict) -> str:
    """Markdown table: where a run's wall time goes, per network (medians over seeds)."""
    head = "| network | wall s | " + " | ".join(PARTS) + " | bare-step floor | overhead ratio (worst) |"
    lines = [head, "|" + "---|" * (len(PARTS) + 4)]
    for net, row in rows.items():
        parts = " | ".join(f"{row[f'{p}_seconds']:.1f}" for p in PARTS)
        lines.append(
            f"| {LABELS[net]} | {row['train_seconds']:.1f} | {parts} | {row['floor_seconds']:.1f} | "
            f"{row['overhead_ratio']:.2f} ({row['overhead_ratio_worst']:.2f}) |"
        )
    return "\n".join(lines)


def accuracy_table(rows: dict) -> str:
    lines = [
        "| network | test accuracy median (worst) | 100 single samples median (worst) | wall s | x no-BN time |",
        "|---|---|---|---|---|",
    ]
    for net, row in rows.items():
        lines.append(
            f"| {LABELS[net]} | {row['test_accuracy']:.4f} ({row['test_accuracy_worst']:.4f}) | "
            f"{row['single_sample_accuracy']:.2f} ({row['single_sample_accuracy_worst']:.2f}) | "
            f"{row['train_seconds']:.1f} | {row['time_ratio']:.2f} |"
        )
    return "\n".join(lines)


def progress(done: int, total: int, started: float) -> str:
    """``[#####.....] 3/15 runs, 2 min 10 s elapsed, about 8 min left``."""
    elapsed = time.perf_counter() - started
    left = elapsed / done * (total - done) if done else float("nan")
    bar = "#" * round(20 * done / total) + "." * (20 - round(20 * done / total))

    def fmt(s):
        return f"{int(s // 60)} min {int(s % 60)} s" if s == s else "?"

    return f"[{bar}] {done}/{total} runs, {fmt(elapsed)} elapsed, about {fmt(left)} left"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m bnlab.instructor.bench training``."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--batches", type=int, default=NUM_BATCHES)
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--no-autograde", action="store_true", help="skip timing nbgrader autograde")
    parser.add_argument("--autograde-repeats", type=int, default=5, help="gradings of one submission (median shown)")
    parser.add_argument("--no-monitor", action="store_true", help="skip measuring the live monitor's cost")
    parser.add_argument("--class-size", type=int, default=8, help="submissions graded with 1 and 2 jobs (0: skip)")


def run(args: argparse.Namespace) -> int:
    """Train, time and print the tables, then the JSON line."""
    from bnlab import training

    data = load_mnist(verbose=True)
    device = bnlab.device.describe()
    print(device, flush=True)
    total = len(args.networks) * len(args.seeds) + (0 if args.no_monitor else 1)
    started, done, rows, first = time.perf_counter(), 0, {}, {}
    for network in args.networks:
        floor = floor_seconds(network, data)
        print(
            f"{network}: bare compiled step {1000 * floor:.1f} ms, floor {floor * args.batches:.1f} s "
            f"for {args.batches} batches",
            flush=True,
        )
        results = []
        for seed in args.seeds:
            print(progress(done, total, started) + f"; now {network} seed {seed}", flush=True)
            r, _ = run_one(network, seed, args.batches, data)
            done += 1
            t = r.timings
            print(
                f"  {network} seed {seed}: test {r.test_accuracy:.4f}, single {r.single_sample_accuracy:.2f}, "
                f"wall {t['wall']:.1f} s = steps {t['steps']:.1f} + evaluations "
                f"{sum(t[p] for p in EVALUATIONS):.1f} + tracing {t['tracing']:.1f} + refresh {t['refresh']:.1f}"
                f" + monitor {t['monitor']:.2f} + data {t['data']:.1f} + other {t['other']:.1f}; "
                f"overhead ratio {overhead_ratio(t):.2f}",
                flush=True,
            )
            results.append(r)
        first[network] = results[0]
        rows[network] = summarize(results, floor, args.batches)
    base = rows.get("no_bn", {}).get("train_seconds")
    for row in rows.values():
        row["time_ratio"] = row["train_seconds"] / base if base else float("nan")

    draw = None
    if not args.no_monitor and "keras_bn" in first:
        print(progress(done, total, started) + "; now keras_bn with the live monitor drawing", flush=True)
        drawn, monitor = run_one("keras_bn", args.seeds[0], args.batches, data, "widget")
        done += 1
        draw = {
            "silent": first["keras_bn"].timings["wall"],
            "drawn": drawn.timings["wall"],
            "redraws": monitor.redraw_count,
            "draw_seconds": monitor.draw_seconds,
            "share": monitor.draw_seconds / drawn.timings["wall"],
        }
    autograde, grading = {"seconds": float("nan"), "peak_gib": float("nan")}, {}
    if not args.no_autograde:
        print(f"timing nbgrader autograde of the solution, {args.autograde_repeats} times ...", flush=True)
        autograde = repeat_autograde(args.autograde_repeats)
    if args.class_size:
        print(f"timing a class of {args.class_size} solutions graded with JOBS=1, then JOBS=2 ...", flush=True)
        grading = time_class(n=args.class_size, jobs=(1, 2))

    print(
        f"\n{device}\n{args.batches} batches of {BATCH_SIZE}, seeds {args.seeds}; "
        f"op determinism {'on' if training.default_deterministic() else 'off'}; medians (worst) over seeds"
    )
    print(accuracy_table(rows))
    print("\nWhere a run's wall time goes (seconds, medians over seeds):")
    print(breakdown_table(rows))
    if draw:
        print(
            f"live monitor on keras_bn, seed {args.seeds[0]}: {draw['silent']:.1f} s silent, {draw['drawn']:.1f} s "
            f"drawing; {draw['redraws']} redraws took {draw['draw_seconds']:.2f} s = {100 * draw['share']:.1f}% "
            "of the run"
        )
    print("\nGrading (the solution; wall seconds on this machine):")
    print(grading_table(autograde["seconds"], grading, autograde["peak_gib"], autograde.get("runs")))
    summary = {
        f"{net}_{key}": round(value, 4)
        for net, row in rows.items()
        for key, value in row.items()
        if not key.endswith("_seconds") or key in ("train_seconds", "steps_seconds", "floor_seconds")
    }
    summary.update(
        autograde_seconds=round(autograde["seconds"], 1),
        autograde_runs=autograde.get("runs", []),
        autograde_peak_gib=round(autograde["peak_gib"], 2),
        seeds=args.seeds,
        batches=args.batches,
        device=device,
        deterministic=training.default_deterministic(),
    )
    summary.update({key if key.startswith("class") else f"class_{key}": value for key, value in grading.items()})
    if draw:
        summary["monitor_draw_share"] = round(draw["share"], 4)
    print(json.dumps(summary))
    return 0
