"""How long grading one submission takes, and where the time goes (part of ``make bench``).

:func:`time_autograde` grades the solution with ``nbgrader autograde`` in a scratch course, once
as configured (with the re-verification of the checks, ``bnlab.grading.verify.VerifyChecks``) and
optionally once without it. :func:`profile_cells` executes the same submission the way nbgrader
does (``NBGRADER_EXECUTION=autograde``, so short mode) with nbclient and times the kernel start
and every cell, to show where grading spends its time. ``python -m bnlab.bench_grading`` prints both.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

def _solution_course(tmp: Path, verify: bool):
    from bnlab import pipeline
    from bnlab.exercise import fill_in, solution_answers

    course = pipeline.create_course(tmp)
    if not verify:
        with open(course / "nbgrader_config.py", "a") as config:  # StartVerification follows it too
            config.write("\nc.VerifyChecks.enabled = False\n")
    nb = fill_in(pipeline.release_notebook(course), solution_answers())
    return course, pipeline.submit(course, "bench", nb)


def time_autograde(verify: bool = True) -> dict:
    """``nbgrader autograde`` of the solution (one submission) in a scratch course, as ``make
    autograde`` runs it (under :func:`bnlab.sandbox.run_limited`, without limits): ``{"seconds": wall
    seconds, "peak_gib": the largest resident memory of nbgrader, its kernel and the re-run's worker
    together}``."""
    from bnlab import sandbox
    from bnlab.exercise import ASSIGNMENT
    from bnlab.release import nbgrader_command, nbgrader_env

    with tempfile.TemporaryDirectory() as tmp:
        course, _ = _solution_course(Path(tmp), verify)
        cmd = nbgrader_command("autograde", ASSIGNMENT, "--force", root=course)
        out = sandbox.run_limited(cmd, course, nbgrader_env(), sandbox.Limits(wall_seconds=900, memory_bytes=None,
                                                                              network="allow"))
        graded = list((course / "autograded").rglob("*.ipynb"))
        if out.status != "ok" or not graded:
            raise RuntimeError(f"autograding the solution failed ({out.status}): {out.reason}\n{out.output[-2000:]}")
        return {"seconds": out.seconds, "peak_gib": out.peak_rss / sandbox.GiB}


def profile_cells(timeout: int = 300) -> dict:
    """Kernel start and per-cell seconds of the solution run as nbgrader runs it (short mode)."""
    import nbclient
    import nbformat

    from bnlab.exercise import grade_id

    with tempfile.TemporaryDirectory() as tmp:
        _, path = _solution_course(Path(tmp), verify=True)
        nb = nbformat.read(path, as_version=4)
        env = dict(os.environ, NBGRADER_EXECUTION="autograde")
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": tmp}})
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time nbgrader autograde of the solution and profile its cells")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-plain", action="store_true", help="skip the run without the re-verification step")
    args = parser.parse_args(argv)
    out = {}
    if not args.no_profile:
        profile = profile_cells()
        print(f"kernel start {profile['kernel_start']:.1f} s; cells (short mode, as under nbgrader):")
        for name, seconds in sorted(profile["cells"], key=lambda c: -c[1]):
            print(f"  {seconds:6.2f} s  {name}")
        print(f"total {profile['total']:.1f} s")
        out["profile_total_seconds"] = round(profile["total"], 1)
    graded = time_autograde(verify=True)
    out.update(autograde_seconds=round(graded["seconds"], 1), autograde_peak_gib=round(graded["peak_gib"], 2))
    print(f"nbgrader autograde, as configured (with re-verification): {out['autograde_seconds']} s, "
          f"peak memory {out['autograde_peak_gib']} GiB", flush=True)
    if not args.no_plain:
        plain = time_autograde(verify=False)
        out.update(autograde_seconds_without_verify=round(plain["seconds"], 1),
                   autograde_peak_gib_without_verify=round(plain["peak_gib"], 2))
        print(f"nbgrader autograde without the re-verification step: {out['autograde_seconds_without_verify']} s, "
              f"peak memory {out['autograde_peak_gib_without_verify']} GiB")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
