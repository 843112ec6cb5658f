"""One grading of every pipeline module's submissions per route, shared by the slow pipeline tests.

Grading a submission through nbgrader costs a kernel, a training run and a trusted re-run; a scratch course
costs ``nbgrader generate_assignment``. So the modules that grade submissions through the real pipeline
(test_pipeline, test_tamper_pipeline, test_sandbox_pipeline, test_hostile_pipeline, test_feedback) do not
each build a course and grade their own honest control: at import (collection) time each module registers
(:func:`register`) the students it needs on a route, and the session fixtures of ``conftest.py`` grade them
all in one course per route, with one honest control (:data:`HONEST`, the solution) and, on the grader's
route, the untouched release notebook (:data:`UNTOUCHED`). Running one module grades only what it registered.

The routes:

- ``grader``: the course's grader (``make autograde``: the coordinator, two submissions at a time);
- ``nbgrader``: plain ``nbgrader autograde`` in the course folder (what the formgrader's button runs), then
  ``nbgrader generate_feedback`` for the students of the batches registered with ``feedback=True``.

Every run uses ``BNLAB_SHORT_BATCHES=2`` (unless the environment sets it; no check depends on the length of the
training runs) and the environment the modules register (``BNLAB_ISOLATION=require`` where a module checks the
sandbox; two modules asking for different values of one variable is an error).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from bnlab.instructor import notebooks, scratch
from bnlab.instructor.autograde import coordinator, record
from bnlab.instructor.nbgrader import nbgrader

ROUTES = ("grader", "nbgrader")
HONEST = "honest"  # the solution: the control of every module, on both routes
UNTOUCHED = "untouched"  # the release notebook as handed out (grader's route)
CONTROLS = {"grader": (HONEST, UNTOUCHED), "nbgrader": (HONEST,)}
BASE_ENV = {"BNLAB_SHORT_BATCHES": os.environ.get("BNLAB_SHORT_BATCHES", "2")}


@dataclass(frozen=True)
class Batch:
    owner: str  # the module that registered it
    students: tuple[str, ...]
    submit: Callable[[Path, Path], None]  # (course, a scratch folder outside it) -> places the submissions
    env: dict
    feedback: bool  # nbgrader's route: generate_feedback for these students after autograde


_BATCHES: dict[str, list[Batch]] = {route: [] for route in ROUTES}


def register(
    route: str,
    owner: str,
    students,
    submit: Callable[[Path, Path], None],
    env: dict | None = None,
    feedback: bool = False,
) -> None:
    """Have the shared grading of ``route`` grade ``students``, which ``submit(course, scratch)`` places in
    ``course/submitted/`` (``scratch`` is a folder outside the course, for files a submission links to); with
    ``feedback``, nbgrader's route runs ``generate_feedback`` for them after ``autograde``."""
    if route not in ROUTES:
        raise ValueError(f"{owner}: unknown route {route!r}; the routes are {ROUTES}")
    taken = {s: b.owner for b in _BATCHES[route] for s in b.students} | {s: "shared_grading" for s in CONTROLS[route]}
    clash = {s: taken[s] for s in students if s in taken}
    if clash:
        raise ValueError(f"{owner}: students already registered on the {route} route: {clash}")
    _BATCHES[route].append(Batch(owner, tuple(students), submit, dict(env or {}), feedback))


def students(route: str, owner: str) -> set[str]:
    """The students ``owner`` registered on ``route``."""
    return {s for b in _BATCHES[route] if b.owner == owner for s in b.students}


def _env(route: str) -> dict:
    env = dict(BASE_ENV)
    owners = {name: "shared_grading" for name in env}
    for batch in _BATCHES[route]:
        for name, value in batch.env.items():
            if name in env and env[name] != value:
                raise ValueError(
                    f"the {route} route's shared grading cannot grade {batch.owner} ({name}={value!r}) together "
                    f"with {owners[name]} ({name}={env[name]!r}): grade one of them in a run of its own"
                )
            env[name], owners[name] = value, batch.owner
    return env


@dataclass
class Graded:
    """One route's grading of every registered submission."""

    route: str
    course: Path
    graded: list[str]  # the students graded
    failed: dict  # student -> why, for the submissions the grader's route could not grade
    log: str  # the grader's summary table and notes, or nbgrader's log
    notes: dict[str, str]  # student -> the log lines that concern it (nbgrader's route: its whole log)
    scores: dict  # record.cell_scores, read a few seconds after grading ended
    grown: int  # how far the grading process's resident memory rose above its start (grader's route)
    run: coordinator.ClassRun | None = None
    _feedback: tuple | None = field(default=None, repr=False)

    def feedback(self) -> tuple[list[Path], list[dict]]:
        """``generate_feedback`` and ``export`` of :func:`scratch.feedback_and_export`, run once."""
        if self._feedback is None:
            self._feedback = scratch.feedback_and_export(self.course)
        return self._feedback


def _grade_with_the_coordinator(course: Path, env: dict) -> tuple[coordinator.ClassRun, int]:
    """``make autograde``, two at a time, sampling this process's resident memory while it grades."""
    me, peak, done = psutil.Process(), [0], threading.Event()
    before = me.memory_info().rss

    def sample():
        while not done.wait(0.1):
            peak[0] = max(peak[0], me.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run = scratch.autograde(course, env=env, jobs=2)
    finally:
        done.set()
        sampler.join()
    return run, peak[0] - before


def grade(route: str, folder: Path) -> Graded:
    """Build one course in ``folder``, submit the controls and every registered batch, grade them on ``route``."""
    env = _env(route)
    course = scratch.create_course(folder / "course")
    release = scratch.release_notebook(course)
    scratch.submit(course, HONEST, notebooks.fill_in(release, notebooks.solution_answers()))
    if UNTOUCHED in CONTROLS[route]:
        scratch.submit(course, UNTOUCHED, release)
    for batch in _BATCHES[route]:
        batch.submit(course, folder)
    if route == "grader":
        run, grown = _grade_with_the_coordinator(course, env)
        graded, failed = run.graded, run.failed
        log = coordinator.summary(run) + "\n" + repr(run.notes)
        notes = {student: "\n".join(lines) for student, lines in run.notes.items()}
    else:
        result = nbgrader("autograde", scratch.EXERCISE, "--force", root=course, check=False, env=env)
        log, run, grown, failed = result.stdout + result.stderr, None, 0, {}
        for student in (student for batch in _BATCHES[route] if batch.feedback for student in batch.students):
            nbgrader("generate_feedback", scratch.EXERCISE, "--force", f"--student={student}", root=course, check=False)
        graded = sorted(p.parent.name for p in (course / "autograded").glob(f"*/{scratch.EXERCISE}"))
        notes = {student: log for batch in _BATCHES[route] for student in batch.students + CONTROLS[route]}
    time.sleep(3)  # a process that outlived grading and rewrites gradebooks would have done it by now
    scores = record.cell_scores(course, scratch.EXERCISE)
    return Graded(route, course, graded, failed, log, notes, scores, grown, run)
