"""The benchmarks (``python -m bnlab.instructor.bench``): their summaries and tables, on made-up timings, the
monitor's simulated workload, and the command's subcommands."""

import json
import subprocess
import sys

import pytest

from bnlab.instructor.bench import grading, monitor, training
from bnlab.instructor.bench.__main__ import COMMANDS, main
from bnlab.monitor import TrainingMonitor
from bnlab.training import Results, Stopwatch


def test_bench_summarizes_seeds_and_the_overhead_ratio():
    def result(test, single, wall, steps):
        timings = dict.fromkeys(Stopwatch.PARTS, 1.0)
        timings.update(steps=steps, wall=wall, other=0.5)
        return Results("r", 800, 0.9, test, single, wall, timings=timings)

    runs = [result(0.97, 0.98, 60.0, 40.0), result(0.95, 0.96, 80.0, 40.0), result(0.98, 0.99, 70.0, 40.0)]
    assert training.overhead_ratio(runs[0].timings) == pytest.approx(60.0 / 43.0)  # steps + validation, test, single
    row = training.summarize(runs, floor_per_step=0.04, batches=800)
    assert (row["test_accuracy"], row["test_accuracy_worst"]) == (0.97, 0.95)
    assert (row["single_sample_accuracy"], row["single_sample_accuracy_worst"]) == (0.98, 0.96)
    assert row["train_seconds"] == 70.0 and row["floor_seconds"] == pytest.approx(32.0)
    assert row["overhead_ratio_worst"] == pytest.approx(80.0 / 43.0)
    row["time_ratio"] = 1.0
    assert "0.9700 (0.9500)" in training.accuracy_table({"keras_bn": row})
    assert "| 1.63 (1.86) |" in training.breakdown_table({"keras_bn": row})
    assert training.progress(0, 4, 0.0).startswith("[....................] 0/4 runs")
    assert "2/4 runs" in training.progress(2, 4, 0.0)


def test_grading_is_timed_several_times_and_reported_by_its_median(monkeypatch):
    timings = iter(
        [{"seconds": 31.0, "peak_gib": 2.0}, {"seconds": 26.0, "peak_gib": 2.2}, {"seconds": 28.0, "peak_gib": 1.9}]
    )
    monkeypatch.setattr(grading, "time_autograde", lambda verify=True, sandbox_on=True: next(timings))
    lines = []
    result = grading.repeat_autograde(3, report=lines.append)
    assert result == {"seconds": 28.0, "runs": [31.0, 26.0, 28.0], "peak_gib": 2.2}
    assert len(lines) == 3 and lines[1].startswith("  autograde run 2/3: 26.0 s")
    table = grading.grading_table(result["seconds"], {}, result["peak_gib"], result["runs"])
    assert "median of 3 runs, 26.0 to 31.0 s) | 28.0 |" in table
    with pytest.raises(ValueError, match="1 or more"):
        grading.repeat_autograde(0)


def test_a_class_is_timed_with_each_number_of_jobs(monkeypatch, capsys):
    seconds = {1: 80.0, 2: 50.0}

    class Run:
        def __init__(self, jobs):
            self.seconds, self.failed = seconds[jobs], {}

    calls = []
    monkeypatch.setattr(grading.scratch, "create_course", lambda path: path)
    monkeypatch.setattr(grading.scratch, "release_notebook", lambda course: {"cells": []})
    monkeypatch.setattr(grading, "fill_in", lambda nb, answers: nb)
    monkeypatch.setattr(grading, "solution_answers", dict)
    monkeypatch.setattr(grading.scratch, "submit", lambda course, student, nb: calls.append(student))
    monkeypatch.setattr(grading.scratch, "autograde", lambda course, env=None, jobs=1: Run(jobs))
    assert main(["class", "--size", "4", "--jobs", "1", "2"]) == 0
    assert calls == ["student01", "student02", "student03", "student04"]
    out = capsys.readouterr().out
    assert "| 4 submissions, `make autograde JOBS=1` | 80.0 | 20.0 |" in out
    assert "| speed-up, JOBS=2 over JOBS=1 | 1.60x | |" in out and "1 submission," not in out
    figures = {"class_size": 4, "jobs_1_seconds": 80.0, "jobs_2_seconds": 50.0, "speedup": 1.6}
    assert json.loads(out.strip().splitlines()[-1]) == figures


def test_one_command_runs_every_benchmark(capsys):
    assert set(COMMANDS) == {"training", "grading", "monitor", "class"}
    result = subprocess.run([sys.executable, "-m", "bnlab.instructor.bench", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and all(name in result.stdout for name in COMMANDS)
    assert main(["monitor", "--batches", "50", "--seconds-per-batch", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "50"


def test_bench_prints_a_table(capsys):
    result = monitor.bench(batches=100, seconds_per_batch=0.001)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["batches", "s"]
    assert out[1].split()[0] == "100"
    assert result["redraws"] >= 1 and result["draw_seconds"] > 0


def test_simulation_logs_on_the_training_schedule():
    from bnlab.training import TRAIN_LOG_EVERY, VALIDATE_EVERY

    assert monitor.schedule() == (TRAIN_LOG_EVERY, VALIDATE_EVERY)
    silent = TrainingMonitor("t", mode="silent")
    monitor.simulate(silent, 200, lambda: None, "sim")
    run = silent.history["sim"]
    assert [p[0] for p in run.train] == list(range(TRAIN_LOG_EVERY, 201, TRAIN_LOG_EVERY))
    assert [p[0] for p in run.validation] == list(range(VALIDATE_EVERY, 201, VALIDATE_EVERY))
    assert silent.closed and run.finished
    silent = TrainingMonitor("t", mode="silent")
    monitor.simulate(silent, 30, lambda: None, "sim", every=(10, 15))
    assert [p[0] for p in silent.history["sim"].validation] == [15, 30]


def test_bench_rejects_nonsense_with_a_message(capsys):
    with pytest.raises(SystemExit):
        main(["monitor", "--batches", "0"])
    assert "batches must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["class", "--size", "0"])
    assert "the class size and the jobs must be at least 1" in capsys.readouterr().err
