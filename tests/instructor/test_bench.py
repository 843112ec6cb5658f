"""The benchmarks (bnlab.instructor.bench): their summaries and tables, on made-up timings, and the monitor's
simulated workload."""
import pytest

from bnlab import training
from bnlab.instructor.bench import monitor as bench_monitor
from bnlab.monitor import TrainingMonitor


def test_bench_summarizes_seeds_and_the_overhead_ratio():
    from bnlab.instructor.bench import training as bench

    def result(test, single, wall, steps):
        timings = dict.fromkeys(training.Stopwatch.PARTS, 1.0)
        timings.update(steps=steps, wall=wall, other=0.5)
        return training.Results("r", 800, 0.9, test, single, wall, timings=timings)

    runs = [result(0.97, 0.98, 60.0, 40.0), result(0.95, 0.96, 80.0, 40.0), result(0.98, 0.99, 70.0, 40.0)]
    assert bench.overhead_ratio(runs[0].timings) == pytest.approx(60.0 / 43.0)  # steps + validation, test, single
    row = bench.summarize(runs, floor_per_step=0.04, batches=800)
    assert (row["test_accuracy"], row["test_accuracy_worst"]) == (0.97, 0.95)
    assert (row["single_sample_accuracy"], row["single_sample_accuracy_worst"]) == (0.98, 0.96)
    assert row["train_seconds"] == 70.0 and row["floor_seconds"] == pytest.approx(32.0)
    assert row["overhead_ratio_worst"] == pytest.approx(80.0 / 43.0)
    row["time_ratio"] = 1.0
    assert "0.9700 (0.9500)" in bench.accuracy_table({"keras_bn": row})
    assert "| 1.63 (1.86) |" in bench.breakdown_table({"keras_bn": row})
    assert bench.progress(0, 4, 0.0).startswith("[....................] 0/4 runs")
    assert "2/4 runs" in bench.progress(2, 4, 0.0)


def test_grading_is_timed_several_times_and_reported_by_its_median(monkeypatch):
    from bnlab.instructor.bench import training as bench, grading

    timings = iter([{"seconds": 31.0, "peak_gib": 2.0}, {"seconds": 26.0, "peak_gib": 2.2},
                    {"seconds": 28.0, "peak_gib": 1.9}])
    monkeypatch.setattr(grading, "time_autograde", lambda verify=True, sandbox_on=True: next(timings))
    lines = []
    result = grading.repeat_autograde(3, report=lines.append)
    assert result == {"seconds": 28.0, "runs": [31.0, 26.0, 28.0], "peak_gib": 2.2}
    assert len(lines) == 3 and lines[1].startswith("  autograde run 2/3: 26.0 s")
    table = bench.grading_table(result["seconds"], {}, result["peak_gib"], result["runs"])
    assert "median of 3 runs, 26.0 to 31.0 s) | 28.0 |" in table
    with pytest.raises(ValueError, match="1 or more"):
        grading.repeat_autograde(0)



def test_bench_prints_a_table(capsys):
    result = bench_monitor.bench(batches=100, seconds_per_batch=0.001)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["batches", "s"]
    assert out[1].split()[0] == "100"
    assert result["redraws"] >= 1 and result["draw_seconds"] > 0


def test_simulation_logs_on_the_training_schedule():
    from bnlab.training import TRAIN_LOG_EVERY, VALIDATE_EVERY

    assert bench_monitor.schedule() == (TRAIN_LOG_EVERY, VALIDATE_EVERY)
    monitor = TrainingMonitor("t", mode="silent")
    bench_monitor.simulate(monitor, 200, lambda: None, "sim")
    run = monitor.history["sim"]
    assert [p[0] for p in run.train] == list(range(TRAIN_LOG_EVERY, 201, TRAIN_LOG_EVERY))
    assert [p[0] for p in run.validation] == list(range(VALIDATE_EVERY, 201, VALIDATE_EVERY))
    assert monitor.closed and run.finished
    monitor = TrainingMonitor("t", mode="silent")
    bench_monitor.simulate(monitor, 30, lambda: None, "sim", every=(10, 15))
    assert [p[0] for p in monitor.history["sim"].validation] == [15, 30]


def test_bench_rejects_nonsense_with_a_message(capsys):
    with pytest.raises(SystemExit):
        bench_monitor.main(["--batches", "0"])
    assert "batches must be at least 1" in capsys.readouterr().err
