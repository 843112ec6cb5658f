"""Grade a whole class in parallel: on this machine, or on a Dask cluster. The course's one grading route:
``make autograde``, ``make grade-demo``, the tests and the benchmarks all grade through :func:`grade_class`.

``python -m bnlab.instructor.autograde`` (``make autograde JOBS=N``) grades every new or changed submission
in ``submitted/STUDENT/ASSIGNMENT/``. Each one is a task (:func:`bnlab.instructor.autograde.job.grade_submission`)
that grades it in its own process and its own scratch course, under per-submission limits
(:mod:`bnlab.instructor.autograde.limits`). The tasks go to Dask distributed: by default a local cluster of ``JOBS``
worker threads in this process (each task starts its own ``nbgrader`` process, so a thread is all
it needs), or with ``--scheduler tcp://host:8786`` an existing cluster, whose workers need only
the course library installed. Only this coordinator writes the course gradebook
(:mod:`bnlab.instructor.autograde.record`), as each result arrives, so an interrupted run keeps what it graded.

It shows a progress line (done, left, failed, ETA), then a summary table (student, score,
seconds, status), and writes ``autograde_report.csv`` plus the exports of :mod:`bnlab.instructor.lms`.
``--regrade`` regenerates the assignment from ``source/`` (nbgrader's stored cells updated) and
regrades everyone, listing only the students whose scores changed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import logging
import os
import shutil
import signal
import sys
import textwrap
import time
from pathlib import Path

from bnlab import settings
from bnlab.exercise import ASSIGNMENT as EXERCISE
from bnlab.instructor import isolation
from bnlab.instructor.admission import Admitted, admit
from bnlab.instructor.autograde import record
from bnlab.instructor.autograde.job import grade_submission, make_kit
from bnlab.instructor.autograde.limits import GiB, Limits, network_isolation
from bnlab.instructor.notebooks import ROOT, digest
from bnlab.instructor.release import ReleaseError, backup_gradebook, generate_safely

REPORT = "autograde_report.csv"


@dataclasses.dataclass
class Submission:
    student: str
    files: dict  # {relative name: bytes}: the regular files (bnlab.instructor.admission)
    digest: str  # of the files and of what grades them (source/ and the config)
    refused: dict = dataclasses.field(default_factory=dict)  # {name: reason}: never read, flagged


@dataclasses.dataclass
class ClassRun:
    """What one run graded: a record per student graded (see :mod:`bnlab.instructor.autograde.record`), and who
    was skipped."""

    rows: list
    skipped: list
    seconds: float
    notes: dict  # student -> log lines worth a look

    @property
    def failed(self) -> dict:
        return {r["student"]: f"{r['status']}: {r['reason']}" for r in self.rows if r["status"] != "graded"}

    @property
    def graded(self) -> list:
        return [r["student"] for r in self.rows if r["status"] == "graded"]


def grading_digest(course: Path, assignment: str) -> str:
    """A digest of what grades a submission: the assignment's source/ files and nbgrader_config.py."""
    course = Path(course)
    source = admit(course / "source" / assignment).files
    files = {f"source/{assignment}/{name}": data for name, data in source.items()}
    files["nbgrader_config.py"] = (course / "nbgrader_config.py").read_bytes()
    return digest(files)


def submissions(course: Path, assignment: str) -> list[Submission]:
    """Every submission of ``assignment`` in ``course/submitted/``, sorted by student: its regular files only
    (a link, a pipe, a device is never read: :mod:`bnlab.instructor.admission`), and what was refused."""
    course, found = Path(course), []
    salt = grading_digest(course, assignment)
    for folder in sorted((course / "submitted").glob(f"*/{assignment}")):
        if folder.parent.is_symlink():
            admitted = Admitted({}, {".": "the student's folder is a symbolic link, never followed"})
        elif folder.is_dir() or folder.is_symlink():
            admitted = admit(folder)
        else:
            continue
        found.append(Submission(folder.parent.name, admitted.files, digest(admitted.files, salt), admitted.refused))
    return found


class Progress:
    """One status line: a bar, done / left / failed, elapsed and ETA (a line per student when not a terminal)."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.failed, self.stream = total, 0, 0, stream
        self.start = time.perf_counter()
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    @staticmethod
    def _clock(seconds: float) -> str:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        left = self.total - self.done
        eta = self._clock(elapsed / self.done * left) if self.done else "?"
        filled = int(20 * self.done / max(self.total, 1))
        return (
            f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} done, {left} left, "
            f"{self.failed} failed, {self._clock(elapsed)} elapsed, ETA {eta}"
        )

    def update(self, row: dict) -> None:
        self.done += 1
        self.failed += row["status"] != "graded"
        what = f"{row['score']:g}/{row['max_score']:g}" if row["max_score"] else "-"
        message = f"{row['student']}: {row['status']} {what} in {row['seconds']:.1f} s"
        if self.tty:
            self.stream.write(f"\r\033[K{message}\n{self.line()}")
        else:
            self.stream.write(f"{message}  {self.line()}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


@contextlib.contextmanager
def dask_client(jobs: int | None = None, scheduler: str | None = None):
    """A Dask client: to ``scheduler`` when given, else to a local cluster of ``jobs`` single-thread workers."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    # the in-process cluster logs its shutdown (closed comms) at INFO with tracebacks: not news
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        # no dashboard; the scheduler's small HTTP server (health checks) on a free loopback port
        with (
            LocalCluster(
                n_workers=jobs or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=False,
                dashboard_address=None,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    finally:
        quiet.setLevel(level)


def grade_class(
    course: Path,
    assignment: str = EXERCISE,
    jobs: int | None = None,
    scheduler: str | None = None,
    client=None,
    limits: Limits = Limits(),
    regrade_all: bool = False,
    retry_failed: bool = False,
    students: list | None = None,
    env: dict | None = None,
    stream=sys.stderr,
) -> ClassRun:
    """Grade the new or changed submissions of ``assignment`` and merge them into the course's gradebook.

    Args:
        course: the course folder (``submitted/``, ``source/``, ``gradebook.db``).
        assignment: the assignment to grade; it must be in the gradebook (generated).
        jobs: submissions graded at a time on a local Dask cluster (default: the number of cores).
        scheduler: the address of an existing Dask scheduler to use instead.
        client: an open Dask client to use instead of either.
        limits: the per-submission limits (wall time, memory, network, sandbox).
        regrade_all: grade unchanged submissions again too.
        retry_failed: grade again the submissions whose last grading failed.
        students: grade only these students.
        env: environment variables for the grading commands (e.g. ``BNLAB_SHORT_BATCHES``).
        stream: where the backup note and the progress lines go.
    """
    course = Path(course).resolve()
    with record.gradebook(course) as gb:
        from nbgrader.api import MissingEntry

        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise SystemExit(
                f"{assignment} is not in {course / 'gradebook.db'}: generate it first "
                f"(`make release`, or `nbgrader generate_assignment {assignment}`)."
            ) from None
    known = record.records(course, assignment)
    todo, skipped = [], []
    for sub in submissions(course, assignment):
        if students and sub.student not in students:
            continue
        last = known.get(sub.student, {})
        unchanged = last.get("digest") == sub.digest and not (retry_failed and last.get("status") != "graded")
        (skipped if unchanged and not regrade_all else todo).append(sub)
    skipped = [s.student for s in skipped]
    start, rows, notes = time.perf_counter(), [], {}
    if not todo:
        return ClassRun(rows, skipped, 0.0, notes)
    saved = backup_gradebook(course)  # every grading run can be undone: copy the gradebook over this one
    if saved is not None:
        print(f"gradebook backed up to {saved.relative_to(course)}", file=stream, flush=True)
    progress = Progress(len(todo), stream)
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(dask_client(jobs, scheduler))
        from distributed import as_completed

        kit = client.scatter(make_kit(course, assignment), broadcast=False)
        futures = {
            client.submit(
                grade_submission,
                kit,
                assignment,
                sub.student,
                sub.files,
                limits,
                env,
                refused=sub.refused,
                key=f"grade-{sub.student}-{sub.digest[:12]}",
                pure=False,
            ): sub
            for sub in todo
        }
        for future in as_completed(futures):
            sub = futures[future]
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001 - a lost worker must not stop the class
                result = {
                    "student": sub.student,
                    "assignment": assignment,
                    "status": "error",
                    "notebooks": {},
                    "reason": f"the grading task failed ({type(error).__name__}: {str(error)[:300]})",
                }
            if result["status"] != "graded":
                result["reason"] += f" The submission is kept unchanged in submitted/{sub.student}/{assignment}/."
            row = record.merge(course, result, sub.files, sub.digest)
            rows.append(row)
            if result.get("notes"):
                notes[sub.student] = result["notes"]
            progress.update(row)
    progress.close()
    return ClassRun(sorted(rows, key=lambda r: r["student"]), skipped, time.perf_counter() - start, notes)


def write_report(course: Path, assignment: str) -> Path:
    """``autograde_report.csv``: the last grading of every student (score, seconds, status, reason)."""
    path = Path(course) / REPORT
    rows = sorted(record.records(course, assignment).values(), key=lambda r: r["student"])
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=record.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def summary(run: ClassRun) -> str:
    """The table printed at the end of a run."""
    lines = [f"{'student':<28} {'score':>9} {'seconds':>8}  status", "-" * 64]
    for row in run.rows:
        score = f"{row['score']:g}/{row['max_score']:g}"
        lines.append(f"{row['student']:<28} {score:>9} {row['seconds']:>8.1f}  {row['status']}")
        if row["reason"]:  # in full: what happened and what to do (autograde_report.csv has it too)
            lines += textwrap.wrap(row["reason"], 110, initial_indent=" " * 29 + "why: ", subsequent_indent=" " * 34)
        lines += [f"{'':<28} note: {note}" for note in run.notes.get(row["student"], [])[:5]]
    lines.append(
        f"{len(run.rows)} submission(s) graded in {run.seconds:.1f} s, {len(run.failed)} failed, "
        f"{len(run.skipped)} unchanged and skipped (--regrade-all grades them again)."
    )
    return "\n".join(lines)


def _scores(cells: dict) -> dict:
    """``{student: {grade_id: score}}`` of :func:`bnlab.instructor.autograde.record.cell_scores`."""
    return {student: {name: score for name, (score, _) in grades.items()} for student, grades in cells.items()}


def regrade(course: Path, assignment: str = EXERCISE, **options) -> tuple[ClassRun, list]:
    """Regenerate the course's assignments from source/ (stored cells updated; nothing changes when nbgrader
    refuses), regrade everyone of ``assignment``, return who changed.

    The changes are ``(student, total before, total after, {grade_id: (before, after)})``."""
    course = Path(course).resolve()
    before = _scores(record.cell_scores(course, assignment))
    try:  # in a scratch copy first: a regeneration nbgrader refuses changes no file
        generate_safely(course, verbose=False)
    except ReleaseError as error:
        raise SystemExit(str(error)) from None
    run = grade_class(course, assignment, regrade_all=True, **options)
    after = _scores(record.cell_scores(course, assignment))
    changes = []
    for student in sorted(after):
        old, new = before.get(student, {}), after[student]
        cells = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
        if cells:
            total = (sum(v or 0 for v in old.values()), sum(v or 0 for v in new.values()))
            changes.append((student, *total, cells))
    return run, changes


def _limits(args) -> Limits:
    return Limits(
        wall_seconds=args.wall_time,
        memory_bytes=int(args.memory_gib * GiB) if args.memory_gib else None,
        cell_timeout=args.cell_timeout,
        network=args.network,
        isolation=args.isolation,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grade a class in parallel (locally or on a Dask cluster).")
    parser.add_argument("assignment", nargs="?", default=EXERCISE)
    parser.add_argument("--course", default=str(ROOT), help="course directory (default: the repository root)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel submissions (default: number of cores)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    parser.add_argument("--regrade-all", action="store_true", help="grade unchanged submissions again too")
    parser.add_argument("--retry-failed", action="store_true", help="grade failed submissions again")
    parser.add_argument("--regrade", action="store_true", help="regenerate from source/ and regrade everyone")
    parser.add_argument("--student", action="append", help="grade only this student (repeatable)")
    parser.add_argument("--wall-time", type=float, default=1800, help="seconds per submission (default 1800)")
    parser.add_argument("--memory-gib", type=float, default=4, help="memory per submission in GiB (0: no limit)")
    parser.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell (default: the config's)")
    parser.add_argument(
        "--network",
        choices=("auto", "require", "allow"),
        default="auto",
        help="cut student code off the network: when possible (auto), or refuse without it",
    )
    parser.add_argument(
        "--isolation",
        choices=("auto", "require", "off"),
        default=settings.isolation(),
        help="run student code in the bubblewrap sandbox: when possible (auto, the default; "
        "BNLAB_ISOLATION sets it), refuse to grade without it (require), or never (off)",
    )
    parser.add_argument("--no-export", action="store_true", help="skip grades.csv / grades_per_question.csv")
    args = parser.parse_args(argv)
    # `kill` of the coordinator: exit normally, so that the submissions being graded are ended too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    course = Path(args.course).resolve()
    limits = _limits(args)
    isolated, why = network_isolation()
    sandboxed, sandbox_why = isolation.available()
    where = args.scheduler or f"{args.jobs or os.cpu_count()} local jobs"
    if limits.isolation == "off" or not sandboxed:
        sandbox = f"student code NOT sandboxed: {'--isolation off' if sandboxed else sandbox_why}"
    else:
        sandbox = f"student code sandboxed ({sandbox_why})"
    print(
        f"Grading {args.assignment} in {course} with {where}; {sandbox}; limits: {limits.describe()} "
        f"(network isolation {'on' if isolated and limits.network != 'allow' else 'OFF'}: {why})",
        flush=True,
    )
    if limits.isolation == "require" and not sandboxed and not args.scheduler:
        print(
            f"error: --isolation require, but {sandbox_why}. Install bubblewrap, or grade with "
            "--isolation auto to grade without the sandbox.",
            file=sys.stderr,
        )
        return 2
    options = dict(jobs=args.jobs, scheduler=args.scheduler, limits=limits, students=args.student)
    if args.regrade:
        run, changes = regrade(course, args.assignment, **options)
    else:
        run, changes = (
            grade_class(
                course, args.assignment, regrade_all=args.regrade_all, retry_failed=args.retry_failed, **options
            ),
            None,
        )
    print(summary(run))
    if changes is not None:
        print(f"Scores changed for {len(changes)} student(s):" if changes else "No score changed.")
        for student, old, new, cells in changes:
            detail = ", ".join(
                f"{cell} {a if a is not None else '-'}->{b if b is not None else '-'}" for cell, (a, b) in cells.items()
            )
            print(f"  {student}: {old:g} -> {new:g} ({detail})")
    print("Report:", write_report(course, args.assignment))
    if not args.no_export:
        from bnlab.instructor import lms

        for path in lms.export(course, args.assignment):
            print("Export:", path)
    return 0  # failed submissions are recorded and listed; they are not an error of the run


if __name__ == "__main__":
    if shutil.which("alembic") is None:  # nbgrader runs `alembic` from PATH
        os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    sys.exit(main())
