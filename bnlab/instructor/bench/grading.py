"""What grading costs: one submission, and a class (``python -m bnlab.instructor.bench grading`` and ``class``).

:func:`time_autograde` grades the solution with ``nbgrader autograde`` in a scratch course, as
configured (with the re-verification of the checks, ``bnlab.instructor.preprocessors.verify.VerifyChecks``) and
optionally without it; :func:`repeat_autograde` does it several times and reports the median, since
one run on a shared machine can be seconds off. :func:`profile_cells` executes the same submission the
way nbgrader does (``NBGRADER_EXECUTION=autograde``, so short mode) with nbclient and times the kernel
start and every cell, to show where grading spends its time. :func:`time_class` grades a class of
copies of the solution with each number of jobs, as ``make autograde JOBS=N`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from bnlab.exercise import ASSIGNMENT
from bnlab.instructor import scratch
from bnlab.instructor.autograde import limits
from bnlab.instructor.nbgrader import nbgrader_command, nbgrader_env
from bnlab.instructor.notebooks import fill_in, solution_answers


def _solution_course(tmp: Path, verify: bool):
    course = scratch.create_course(tmp)
    if not verify:
        with open(course / "nbgrader_config.py", "a") as config:  # StartVerification follows it too
            config.write("\nc.VerifyChecks.enabled = False\n")
    nb = fill_in(scratch.release_notebook(course), solution_answers())
    return course, scratch.submit(course, "bench", nb)


def time_autograde(verify: bool = True, sandbox_on: bool = True) -> dict:
    """``nbgrader autograde`` of the solution (one submission) in a scratch course, as ``make
    autograde`` runs it (under :func:`bnlab.instructor.autograde.limits.run_limited`, without limits):
    ``{"seconds": wall
    seconds, "peak_gib": the largest resident memory of nbgrader, its kernel and the re-run's worker
    together, "rerun_seconds": what the trusted re-run took, "waited_seconds": how long nbgrader waited for it after
    the kernel (both None without the re-run)}``."""
    with tempfile.TemporaryDirectory() as tmp:
        course, _ = _solution_course(Path(tmp), verify)
        cmd = nbgrader_command("autograde", ASSIGNMENT, "--force", root=course)
        env = nbgrader_env({"BNLAB_ISOLATION": "auto" if sandbox_on else "off"})
        out = limits.run_limited(cmd, course, env, limits.Limits(wall_seconds=900, memory_bytes=None, network="allow"))
        graded = list((course / "autograded").rglob("*.ipynb"))
        if out.status != "ok" or not graded:
            raise RuntimeError(f"autograding the solution failed ({out.status}): {out.reason}\n{out.output[-2000:]}")
        import nbformat

        report = nbformat.read(graded[0], as_version=4).metadata.get("bnlab", {})
        return {
            "seconds": out.seconds,
            "peak_gib": out.peak_rss / limits.GiB,
            "rerun_seconds": report.get("seconds"),
            "waited_seconds": report.get("waited_seconds"),
        }


def repeat_autograde(repeats: int, verify: bool = True, report=print, sandbox_on: bool = True) -> dict:
    """:func:`time_autograde` ``repeats`` times: ``{"seconds": median, "runs": every run's seconds,
    "peak_gib": the largest peak}``; ``report`` gets a line per run."""
    if repeats < 1:
        raise ValueError(f"repeats must be 1 or more, got {repeats}")
    runs, peak = [], 0.0
    for i in range(repeats):
        result = time_autograde(verify, sandbox_on)
        runs.append(round(result["seconds"], 1))
        peak = max(peak, result["peak_gib"])
        rerun = (
            f", trusted re-run {result['rerun_seconds']:.1f} s ({result['waited_seconds']:.1f} s after the kernel)"
            if result.get("rerun_seconds") is not None
            else ""
        )
        report(
            f"  autograde run {i + 1}/{repeats}: {result['seconds']:.1f} s, peak memory {result['peak_gib']:.2f} GiB"
            + rerun
        )
    return {"seconds": statistics.median(runs), "runs": runs, "peak_gib": peak}


def sandbox_overhead(repeats: int = 5) -> list[tuple[str, float, float]]:
    """What the sandbox adds to each process that runs student code: ``(process, plain median s,
    sandboxed median s)`` for a kernel (start, one cell, shut down, as nbgrader's Execute does it) and
    the re-run's worker (start, one cell, close), alternating plain and sandboxed runs."""
    import nbclient
    import nbformat
    from jupyter_client.manager import AsyncKernelManager

    from bnlab.instructor.preprocessors.execute import SandboxedKernelManager
    from bnlab.instructor.preprocessors.remote import Session

    def kernel(manager) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
            start = time.perf_counter()
            nbclient.NotebookClient(
                nb, kernel_name="python3", kernel_manager_class=manager, resources={"metadata": {"path": tmp}}
            ).execute()
            return time.perf_counter() - start

    def worker(sandboxed: bool) -> float:
        # Session follows the policy in the environment (bnlab.settings reads it); set it for this run only.
        with (
            mock.patch.dict(os.environ, {"BNLAB_ISOLATION": "auto" if sandboxed else "off"}),
            tempfile.TemporaryDirectory() as tmp,
        ):
            start = time.perf_counter()
            session = Session(cwd=tmp, timeout=60)
            session.exec_cell("x = 1")
            session.close()
            return time.perf_counter() - start

    rows = []
    for name, plain, boxed in (
        (
            "kernel: start, one cell, shut down",
            lambda: kernel(AsyncKernelManager),
            lambda: kernel(SandboxedKernelManager),
        ),
        ("re-run worker: start, one cell, close", lambda: worker(False), lambda: worker(True)),
    ):
        times = {"plain": [], "boxed": []}
        for _ in range(repeats):
            times["plain"].append(plain())
            times["boxed"].append(boxed())
        rows.append((name, statistics.median(times["plain"]), statistics.median(times["boxed"])))
    return rows


def time_class(n: int = 8, jobs: tuple = (1, 2), env: dict | None = None) -> dict:
    """Wall seconds to grade ``n`` copies of the solution with each number of ``jobs`` (one scratch course, as
    ``make autograde JOBS=N --regrade-all``): ``{"class_size": n, "jobs_J_seconds": ..., "speedup": first
    over last}``."""
    figures = {"class_size": n}
    with tempfile.TemporaryDirectory(prefix="bnlab-bench-class-") as tmp:
        course = scratch.create_course(Path(tmp) / "course")
        answered = fill_in(scratch.release_notebook(course), solution_answers())
        for i in range(n):
            scratch.submit(course, f"student{i + 1:02d}", answered)
        for count in jobs:
            run = scratch.autograde(course, env=env, jobs=count)
            if run.failed:
                raise RuntimeError(f"benchmark submissions failed: {run.failed}")
            figures[f"jobs_{count}_seconds"] = round(run.seconds, 1)
    if len(jobs) > 1:
        figures["speedup"] = round(figures[f"jobs_{jobs[0]}_seconds"] / figures[f"jobs_{jobs[-1]}_seconds"], 2)
    return figures


def grading_table(
    autograde_seconds: float, grading: dict, peak_gib: float = float("nan"), runs: list | None = None
) -> str:
    """One submission through ``nbgrader autograde`` (the median of ``runs`` when given; NaN leaves the
    row out), and a class graded with each number of jobs (:func:`time_class`)."""
    lines = ["| grading | wall s | s per submission |", "|---|---|---|"]
    if autograde_seconds == autograde_seconds:
        spread = f"; median of {len(runs)} runs, {min(runs):.1f} to {max(runs):.1f} s" if runs else ""
        lines.append(
            f"| 1 submission, `nbgrader autograde` (peak memory {peak_gib:.2f} GiB{spread}) | "
            f"{autograde_seconds:.1f} | {autograde_seconds:.1f} |"
        )
    n = grading.get("class_size")
    jobs = sorted(int(key.split("_")[1]) for key in grading if key.startswith("jobs_"))
    for count in jobs:
        seconds = grading[f"jobs_{count}_seconds"]
        lines.append(f"| {n} submissions, `make autograde JOBS={count}` | {seconds:.1f} | {seconds / n:.1f} |")
    if "speedup" in grading:
        lines.append(f"| speed-up, JOBS={jobs[-1]} over JOBS={jobs[0]} | {grading['speedup']:.2f}x | |")
    return "\n".join(lines)


def overhead_table(rows) -> str:
    lines = ["| process | without sandbox s (median) | sandboxed s (median) | added s |", "|---|---|---|---|"]
    lines += [f"| {name} | {plain:.2f} | {boxed:.2f} | {boxed - plain:+.2f} |" for name, plain, boxed in rows]
    total = sum(boxed - plain for _, plain, boxed in rows)
    return "\n".join(lines + [f"| per submission (both) | | | {total:+.2f} |"])


def profile_cells(timeout: int = 300) -> dict:
    """Kernel start and per-cell seconds of the solution run as nbgrader runs it (short mode)."""
    import nbclient
    import nbformat

    from bnlab.instructor.notebooks import grade_id

    with tempfile.TemporaryDirectory() as tmp:
        _, path = _solution_course(Path(tmp), verify=True)
        nb = nbformat.read(path, as_version=4)
        env = dict(os.environ, NBGRADER_EXECUTION="autograde")
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": tmp}}
        )
        start = time.perf_counter()
        old_env = os.environ.copy()
        os.environ.update(env)  # the kernel inherits this process's environment
        try:
            with client.setup_kernel():
                kernel_start = time.perf_counter() - start
                cells = []
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    t = time.perf_counter()
                    client.execute_cell(cell, index)
                    cells.append((grade_id(cell) or f"cell {index}", time.perf_counter() - t))
        finally:
            os.environ.clear()
            os.environ.update(old_env)
        return {"kernel_start": kernel_start, "cells": cells, "total": time.perf_counter() - start}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m bnlab.instructor.bench grading``."""
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-plain", action="store_true", help="skip the runs without the re-verification step")
    parser.add_argument(
        "--repeats", type=int, default=5, help="gradings timed per configuration (the median is reported)"
    )
    parser.add_argument(
        "--sandbox-repeats", type=int, default=5, help="runs per process kind for the sandbox's cost (0 skips it)"
    )
    parser.add_argument(
        "--compare-sandbox",
        action="store_true",
        help="also time whole gradings without the sandbox, alternating with sandboxed ones",
    )


def run(args: argparse.Namespace) -> int:
    """Time and profile grading one submission; print the tables, then the JSON line."""
    out = {}
    if args.sandbox_repeats:
        rows = sandbox_overhead(args.sandbox_repeats)
        print(f"What the sandbox adds, median of {args.sandbox_repeats} alternating runs:")
        print(overhead_table(rows), flush=True)
        out["sandbox_added_seconds"] = round(sum(boxed - plain for _, plain, boxed in rows), 2)
    if args.compare_sandbox:
        runs = {True: [], False: []}
        for i in range(args.repeats):
            for on in (True, False):
                runs[on].append(round(time_autograde(True, on)["seconds"], 1))
                print(
                    f"  autograde run {i + 1}/{args.repeats}, sandbox {'on' if on else 'off'}: {runs[on][-1]:.1f} s",
                    flush=True,
                )
        on, off = statistics.median(runs[True]), statistics.median(runs[False])
        print(f"whole grading, median of {args.repeats}: sandboxed {on:.1f} s, without {off:.1f} s ({on - off:+.1f} s)")
        out.update(autograde_seconds_sandboxed=on, autograde_seconds_unsandboxed=off)
    if not args.no_profile:
        profile = profile_cells()
        print(f"kernel start {profile['kernel_start']:.1f} s; cells (short mode, as under nbgrader):")
        for name, seconds in sorted(profile["cells"], key=lambda c: -c[1]):
            print(f"  {seconds:6.2f} s  {name}")
        print(f"total {profile['total']:.1f} s")
        out["profile_total_seconds"] = round(profile["total"], 1)
    for verify, suffix, label in (
        (True, "", "as configured (with re-verification)"),
        (False, "_without_verify", "without the re-verification step"),
    ):
        if (not verify and args.no_plain) or not args.repeats:
            continue
        result = repeat_autograde(args.repeats, verify)
        out.update(
            {
                f"autograde_seconds{suffix}": result["seconds"],
                f"autograde_runs{suffix}": result["runs"],
                f"autograde_peak_gib{suffix}": round(result["peak_gib"], 2),
            }
        )
        print(
            f"nbgrader autograde, {label}: median {result['seconds']:.1f} s of {args.repeats} "
            f"({min(result['runs']):.1f} to {max(result['runs']):.1f} s), peak memory {result['peak_gib']:.2f} GiB",
            flush=True,
        )
    print(json.dumps(out))
    return 0


def add_class_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m bnlab.instructor.bench class``."""
    parser.add_argument("--size", type=int, default=8, help="copies of the solution in the class")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="numbers of parallel jobs to time")


def run_class(args: argparse.Namespace) -> int:
    """Grade a class of solutions with each number of jobs; print the table, then the JSON line (``args.error``
    reports bad options)."""
    if args.size < 1 or min(args.jobs) < 1:
        args.error(f"the class size and the jobs must be at least 1, not {args.size} and {args.jobs}")
    print(
        f"timing a class of {args.size} solutions graded with JOBS={', then JOBS='.join(map(str, args.jobs))} ...",
        flush=True,
    )
    figures = time_class(args.size, tuple(args.jobs))
    print(grading_table(float("nan"), figures))
    print(json.dumps(figures))
    return 0
