"""Benchmark of the exercise: full 800-batch runs of the three networks over several seeds.

``python -m bnlab.bench`` (``make bench``) takes the networks from the source notebook itself
(the code the students see and the instructor's solution), trains each for 800 batches per seed
with the monitor silent, and prints a table of medians: test accuracy, accuracy on the 100 single
samples, training seconds and the ratio to the network without batch normalization. It then times
``nbgrader autograde`` on the solution. The last line printed is one JSON object with the medians:

``{"<net>_test_accuracy", "<net>_single_sample_accuracy", "<net>_train_seconds", "<net>_time_ratio"}``
for ``<net>`` in ``no_bn``, ``keras_bn``, ``nn_bn``, plus ``"autograde_seconds"``, ``"seeds"``,
``"batches"``, ``"device"`` and ``"monitor_draw_share"`` (the share of a training run's wall time
spent drawing the live monitor's figures, measured on the Keras network).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import bnlab
from bnlab import training
from bnlab.exercise import fill_in, notebook_namespace, solution_answers
from bnlab.data import load_mnist

# network name -> (last cell to execute, how to build and train it from that namespace)
NETWORKS = {
    "no_bn": ("keras_baseline_training", lambda ns: (ns["build_network"](), ns["train_step"], ns["predict"])),
    "keras_bn": ("keras_training", lambda ns: (ns["build_network"](), ns["train_step"], ns["predict"])),
    "nn_bn": ("nn_layers", lambda ns: (ns["nn"].Network(ns["build_network_nn"]), ns["train_step_nn"], ns["predict_nn"])),
}
LABELS = {"no_bn": "Keras, no batch norm", "keras_bn": "Part 1: Keras + BatchNormalization",
          "nn_bn": "Part 2: tf.nn batch norm"}


def run_one(network: str, seed: int, batches: int, data, monitor_mode: str = "silent"):
    """Train one network; returns its :class:`bnlab.training.Results` and the monitor used."""
    from bnlab.monitor import TrainingMonitor

    until, make = NETWORKS[network]
    bnlab.tf.keras.backend.clear_session()
    bnlab.tf.keras.utils.set_random_seed(seed)
    model, step, predict = make(notebook_namespace(until))
    # "widget" outside Jupyter renders every figure as in the notebook, without displaying it
    monitor = TrainingMonitor(title=network, total_batches=batches, mode=monitor_mode)
    results = training.train(model, step, predict, name=f"{network} seed {seed}", data=data,
                             num_batches=batches, seed=seed, monitor=monitor, validation_size=len(data.validation))
    monitor.close()
    return results, monitor


def monitor_overhead(data, batches: int = 800, network: str = "keras_bn") -> dict:
    """Train the same network twice, monitor silent vs rendering its figures; the plotting cost."""
    silent, _ = run_one(network, 0, batches, data, "silent")
    drawn, monitor = run_one(network, 0, batches, data, "widget")
    return {"silent_seconds": silent.train_seconds, "monitor_seconds": drawn.train_seconds,
            "redraws": monitor.redraw_count, "draw_seconds": monitor.draw_seconds,
            "draw_share": monitor.draw_seconds / drawn.train_seconds}


def time_autograde() -> float:
    from bnlab import pipeline

    with tempfile.TemporaryDirectory() as tmp:
        course = pipeline.create_course(Path(tmp))
        pipeline.submit(course, "bench", fill_in(pipeline.release_notebook(course), solution_answers()))
        run = pipeline.autograde(course)
        if run.failed:
            raise RuntimeError(f"autograding the solution failed: {run.failed}")
        return run.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="800-batch benchmark of the exercise's networks")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=training.NUM_BATCHES)
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--no-autograde", action="store_true", help="skip timing nbgrader autograde")
    parser.add_argument("--no-monitor", action="store_true", help="skip measuring the live monitor's cost")
    args = parser.parse_args(argv)

    data = load_mnist(verbose=True)
    rows = {}
    for network in args.networks:
        results = []
        for seed in args.seeds:
            r, _ = run_one(network, seed, args.batches, data)
            print(f"  {network} seed {seed}: test {r.test_accuracy:.4f}, single {r.single_sample_accuracy:.2f}, "
                  f"{r.train_seconds:.1f} s", flush=True)
            results.append(r)
        rows[network] = {
            "test_accuracy": statistics.median(r.test_accuracy for r in results),
            "single_sample_accuracy": statistics.median(r.single_sample_accuracy for r in results),
            "train_seconds": statistics.median(r.train_seconds for r in results),
        }
    base = rows.get("no_bn", {}).get("train_seconds")
    for row in rows.values():
        row["time_ratio"] = row["train_seconds"] / base if base else float("nan")
    overhead = None if args.no_monitor else monitor_overhead(data, args.batches)
    autograde_seconds = float("nan") if args.no_autograde else time_autograde()

    device = bnlab.device.describe()
    print(f"\n{device}\n{args.batches} batches of {training.BATCH_SIZE}, seeds {args.seeds}; medians over seeds")
    print(f"| network | test accuracy | 100 single samples | training s | x no-BN time |")
    print(f"|---|---|---|---|---|")
    for network, row in rows.items():
        print(f"| {LABELS[network]} | {row['test_accuracy']:.4f} | {row['single_sample_accuracy']:.2f} | "
              f"{row['train_seconds']:.1f} | {row['time_ratio']:.2f} |")
    if overhead:
        print(f"live monitor on keras_bn, seed 0: {overhead['silent_seconds']:.1f} s silent, "
              f"{overhead['monitor_seconds']:.1f} s drawing; {overhead['redraws']} redraws took "
              f"{overhead['draw_seconds']:.2f} s = {100 * overhead['draw_share']:.1f}% of the run")
    print(f"nbgrader autograde of the solution (shortened runs): {autograde_seconds:.1f} s")
    summary = {f"{net}_{key}": round(value, 4) for net, row in rows.items() for key, value in row.items()}
    summary.update(autograde_seconds=round(autograde_seconds, 1), seeds=args.seeds, batches=args.batches,
                   device=device)
    if overhead:
        summary["monitor_draw_share"] = round(overhead["draw_share"], 4)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
