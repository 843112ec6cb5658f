"""``python -m bnlab.instructor.bench COMMAND``: the course's benchmarks, each printing its tables.

``training`` (``make bench``) trains the exercise's networks and times grading too; ``grading`` times and
profiles grading one submission; ``monitor`` measures the live monitor's drawing cost on a simulated loop;
``class`` times grading a class with each number of parallel jobs. ``COMMAND --help`` lists the options.
"""

from __future__ import annotations

import argparse
import sys

from bnlab.instructor.bench import grading, monitor, training

COMMANDS = {
    "training": (
        training.add_arguments,
        training.run,
        "800-batch runs of the three networks over the seeds: accuracy, where the time goes, grading",
    ),
    "grading": (grading.add_arguments, grading.run, "grading one submission: wall time, memory, sandbox, cells"),
    "monitor": (monitor.add_arguments, monitor.run, "the live monitor's drawing cost on a simulated training loop"),
    "class": (grading.add_class_arguments, grading.run_class, "a class graded with 1, 2, ... parallel jobs"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bnlab.instructor.bench", description="The course's benchmarks; each prints its tables."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, run, about) in COMMANDS.items():
        command = commands.add_parser(name, help=about, description=about)
        add_arguments(command)
        command.set_defaults(run=run, error=command.error)  # error: a usage message for options out of range
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
