"""Autograde preprocessor: every graded check, run again where the student's code cannot reach it.

Student code runs in the same kernel as the test cells, so it could replace the checks, NumPy,
builtins or IPython's error display and make every test cell look passed. After nbgrader has
executed the notebook, :class:`VerifyChecks` runs each graded test cell again:

- the test cell's source is taken from the gradebook (what the instructor wrote, hidden tests
  included), never from the submission, and executed here, in nbgrader's process, where no student
  code ever ran; the checks' judging (NumPy) runs here too, with modules imported before any
  submission was executed;
- the student's cells run in one fresh worker process (:mod:`bnlab.grading.worker`), started so that nothing in
  the submission's folder replaces course code; for a layer it only exports the TensorFlow graph the student's
  function builds (:mod:`bnlab.grading.export`), which a separate judge process (:mod:`bnlab.grading.judge`),
  where no student Python runs, refuses unless it is computation only, and runs on the checks' inputs to report
  data (outputs, statistics, gradients) for the checks to judge; a refused graph scores nothing and is flagged;
- the checks' inputs are drawn here, after the student's cells before the test cell ran, from the checks' seeds
  mixed with a fresh secret salt per test cell (:func:`bnlab.grading.numeric.salted`): the salt never reaches the
  worker, so the graph it exported cannot know the inputs it will be judged on (only the judge sees them, as arrays);
  a conv check asks the worker for the layer at a depth drawn with the salt among the network's depths of the stride
  it asked for that no check probes in the kernel (:func:`bnlab.grading.numeric.salted_depth`), so a layer cannot
  normalize only where the checks look in the kernel;
- Part 4's checks get their answers from a process of their own that runs only Part 4's answer cell, as submitted,
  where TensorFlow cannot be imported (:func:`bnlab.grading.worker.main_part_4`), on arrays drawn here;
- a cell that passed in the kernel but fails here gets an error output, so
  :class:`nbgrader.preprocessors.SaveAutoGrades` gives it zero, and the submission is flagged as
  tampered: a warning in nbgrader's log, ``metadata.bnlab`` on the cell and the notebook.

It also notices (and logs) when the grader's files change on disk during grading (a kernel can write
files); its verdicts do not depend on them, since the trusted side imported them before.
Registered in ``nbgrader_config.py`` between ``LimitOutput`` and ``SaveAutoGrades``. The re-run needs
nothing from the kernel, so :class:`StartVerification`, registered before ``Execute``, starts it in
a background thread: the worker imports TensorFlow and re-runs the checks while the kernel executes
the notebook (on 2 cores this hides most of the re-run's time), and :class:`VerifyChecks` collects it.
"""

from __future__ import annotations

import builtins
import re
import secrets
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from nbformat import NotebookNode
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Float, List, Unicode

import bnlab
from bnlab import grading as trusted_grading
from bnlab import settings, variants
from bnlab.exercise import DEMO_CELLS, TRAINING_RUNS
from bnlab.grading import numeric
from bnlab.grading.errors import CheckFailed
from bnlab.instructor.autograde.record import gradebook
from bnlab.instructor.notebooks import digest
from bnlab.instructor.preprocessors.remote import RemoteName, Session

PACKAGE = Path(bnlab.__file__).resolve().parent
# long cells that define nothing the checks need: the training runs and the diagnose task's demo
SKIPPED = TRAINING_RUNS | DEMO_CELLS
# Part 4's answer cell: the only source its checks' process runs (remote.Session's backward_source)
BACKWARD_ANSWER = "backward_answer"
try:  # the teaching messages of the prediction questions, imported before any submission runs
    import bnlab.questions  # noqa: F401
except ImportError:  # pragma: no cover - an exercise without questions
    pass


def package_digest() -> str:
    """SHA-256 over the grader's files: the checks (bnlab/grading/), these preprocessors, and the
    definitions the checks judge by (reference.py, exercise.py)."""
    paths = sorted(PACKAGE.glob("grading/*.py")) + sorted(PACKAGE.glob("instructor/preprocessors/*.py"))
    paths += [PACKAGE / "reference.py", PACKAGE / "exercise.py"]
    return digest({str(path.relative_to(PACKAGE)): path.read_bytes() for path in paths if path.exists()})


DIGEST_AT_IMPORT = package_digest()  # before any submission ran: nbgrader imports preprocessors first


class _StudentNames(dict):
    """Test-cell namespace: ``grading`` is the trusted package; any other name is the student's."""

    def __init__(self, session):
        super().__init__(grading=trusted_grading, print=lambda *args, **kwargs: None)
        self.session = session

    def __missing__(self, name):
        return RemoteName(name, self.session)


class Unverifiable(str):
    """A test cell the trusted side cannot judge (it calls the student's code itself): the kernel's verdict
    stands, and the cell is marked as judged by the kernel only."""


class Unjudgeable(str):
    """A test cell whose layer the judge refused to run (its graph holds a Python callback, a file operation...):
    the cell scores nothing whatever the kernel said, and the submission is flagged."""


class _StudentValues(dict):
    """Namespace of a plain test cell (``assert ANSWER == "b"``): ``grading``, NumPy and ``math`` are the
    trusted ones; any other name is the *value* the student's code gave it in the worker, sent as data
    (strings, numbers, lists, dicts, arrays). A name whose value is not data (a function, a model) cannot
    be judged here."""

    def __init__(self, session):
        import math

        import numpy

        super().__init__(grading=trusted_grading, np=numpy, numpy=numpy, math=math, print=lambda *args, **kwargs: None)
        self.session = session

    def __missing__(self, name):
        if name in vars(builtins):
            raise KeyError(name)  # the builtins of the cell's globals answer
        try:
            return self.session.value(RemoteName(name, self.session))
        except CheckFailed as exc:
            if "cannot send" in str(exc):
                raise _NotData(name) from None
            raise


class _NotData(Exception):
    pass


def is_check_cell(source: str) -> bool:
    """Whether a test cell is the course's kind: only calls of ``grading.*`` (and ``print``), which the
    trusted side judges with student names as references into the worker."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    for statement in tree.body:
        if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)):
            return False
        func = statement.value.func
        if not (
            isinstance(func, ast.Name)
            and func.id == "print"
            or isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "grading"
        ):
            return False
    return True


def run_test_cell(source: str, session: Session, salt: int | None = None) -> str | None:
    """Execute a trusted test cell against the worker; None if it passes, else the failure message.

    A cell of ``grading.*`` calls gets student names as references the checks hand to the worker. Any
    other cell (an instructor's plain ``assert``) runs here on the values of the student's names; where a
    name is not data it returns :class:`Unverifiable`. The checks draw their inputs with ``salt`` mixed into their
    seeds (:func:`bnlab.grading.numeric.salted`); None draws a fresh secret one."""
    check_cell = is_check_cell(source)
    names = _StudentNames(session) if check_cell else _StudentValues(session)
    try:
        with numeric.salted(secrets.randbits(64) if salt is None else salt):
            exec(compile(source, "<test cell>", "exec"), {"__builtins__": builtins}, names)
    except _NotData as exc:
        return Unverifiable(
            f"the test cell uses {exc.args[0]!r}, which is not plain data, so only the kernel judged it"
        )
    except AssertionError as exc:
        return str(exc) or "a check failed"
    except Exception as exc:  # noqa: BLE001 - e.g. a name the test needs is not a function
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


def kernel_failed(cell) -> bool:
    return any(output.get("output_type") == "error" for output in cell.get("outputs", []))


def error_output(message: str) -> NotebookNode:
    lines = ["\x1b[0;31mNot confirmed by the grader\x1b[0m", *message.splitlines()]
    return NotebookNode(output_type="error", ename="CheckFailed", evalue=message, traceback=lines)


class VerifyChecks(NbGraderPreprocessor):
    """Re-run the graded test cells with trusted checks in a clean process; flag disagreements."""

    enabled = Bool(True, help="Re-verify every graded test cell out of the student's reach.").tag(config=True)
    timeout = Float(240.0, help="Seconds the worker may take for one submission in all.").tag(config=True)
    skip_cells = List(
        Unicode(), sorted(SKIPPED), help="grade_ids of (long) cells the worker does not run: the training runs."
    ).tag(config=True)

    def _trusted_sources(self, resources) -> dict:
        info = resources.get("nbgrader", {})
        sources = {}
        with gradebook(info["db_url"]) as gb:
            notebook = gb.find_notebook(info["notebook"], info["assignment"])
            for cell in notebook.grade_cells:
                if cell.cell_type != "code":
                    continue
                try:
                    source = gb.find_source_cell(cell.name, info["notebook"], info["assignment"])
                except MissingEntry:
                    continue
                if not _has_solution(gb, cell.name, info):
                    sources[cell.name] = source.source
        return sources

    def _start(self, nb, resources) -> tuple[dict, Future]:
        """Begin the re-run in a daemon thread; returns the trusted tests and the verdicts' future."""
        tests = self._trusted_sources(resources)
        future: Future = Future()
        _CANCELLED[_key(resources)] = threading.Event()

        def run():
            began = time.monotonic()
            try:
                verdicts = self._verify(nb, tests, resources)
                future.set_result((verdicts, time.monotonic() - began))
            except BaseException as exc:  # noqa: BLE001 - handed to the collecting preprocessor
                future.set_exception(exc)

        threading.Thread(target=run, name="bnlab-verify", daemon=True).start()
        return tests, future

    def preprocess(self, nb, resources):
        if not self.enabled:
            return nb, resources
        student = resources.get("nbgrader", {}).get("student", "?")
        started = _STARTED.pop(_key(resources), None)  # by StartVerification, while the kernel ran
        tests, future = started or self._start(nb, resources)
        waited = time.monotonic()
        report = {
            "tampered": False,
            "disagreements": {},
            "seconds": None,
            "started": "with the kernel" if started else "after the kernel",
            "grader_files_changed": package_digest() != DIGEST_AT_IMPORT,
        }
        if report["grader_files_changed"]:  # the checks here were imported before: a signal, not a verdict
            self.log.warning(
                "student %s: files of bnlab/grading changed on disk since grading began (a kernel can "
                "write files: grade in a sandbox); the verdicts use the copy loaded before",
                student,
            )
        verdicts, seconds = future.result()
        waited = time.monotonic() - waited
        for cell in nb.cells:
            name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if cell.cell_type != "code" or name not in tests:
                continue
            verdict = verdicts.get(name, "This test cell did not run in the submission's notebook.")
            if isinstance(verdict, Unverifiable):
                cell.metadata["bnlab"] = {"verification": "kernel only", "message": str(verdict)}
                report["kernel_only"] = sorted({*report.get("kernel_only", []), name})
                continue
            if isinstance(verdict, Unjudgeable):
                cell.metadata["bnlab"] = {"verification": "unjudgeable", "message": str(verdict)}
                report.setdefault("unjudgeable", {})[name] = str(verdict)
                if not kernel_failed(cell):
                    cell.outputs.append(error_output(verdict))
                continue
            status = (
                "confirmed"
                if verdict is None and not kernel_failed(cell)
                else "failed"
                if verdict is not None and kernel_failed(cell)
                else "tampered"
                if verdict is not None
                else "failed in the kernel only"
            )
            cell.metadata["bnlab"] = {"verification": status}
            if status == "tampered":
                report["tampered"] = True
                cell.outputs.append(error_output(verdict))
                cell.metadata["bnlab"]["message"] = verdict
            if status not in ("confirmed", "failed"):
                report["disagreements"][name] = status
        # the variants are the graded student's (bnlab.variants): a notebook answered for another id (the one it
        # entered, or its submitted outputs show) loses its answers, and the answer cells it lost are flagged
        others = sorted((set(resources.get("bnlab", {}).get("answered_for", ())) | variants.entered_in(nb)) - {student})
        if others:
            report["answered_for"] = others
            self.log.warning("ANSWERED FOR ANOTHER STUDENT: %s's notebook says %s", student, ", ".join(others))
            for cell in nb.cells:
                name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                if re.search(r"grading\.check_(choice|number)\(", tests.get(name, "")) and kernel_failed(cell):
                    why = f"answered for student {others[0]!r}, graded as {student!r}"
                    cell.metadata["bnlab"] = {"verification": "tampered", "message": why}
        report["seconds"], report["waited_seconds"] = round(seconds, 1), round(waited, 1)
        nb.metadata["bnlab"] = report
        if report["tampered"]:
            self.log.warning(
                "TAMPERING: student %s: the kernel passed test cells that the trusted re-run fails: %s",
                student,
                ", ".join(n for n, s in report["disagreements"].items() if s == "tampered"),
            )
        elif report["disagreements"]:
            self.log.warning(
                "student %s: cells failed in the kernel but pass when re-run: %s",
                student,
                ", ".join(report["disagreements"]),
            )
        if report.get("unjudgeable"):
            self.log.warning(
                "UNJUDGEABLE: student %s: the judge refused to run the graphs of %s (%s); they score nothing",
                student,
                ", ".join(report["unjudgeable"]),
                next(iter(report["unjudgeable"].values()))[:300],
            )
        if report.get("kernel_only"):
            self.log.warning(
                "student %s: test cells judged by the kernel only (they call student code directly; "
                "write them with grading.* checks for a verdict the student's code cannot touch): %s",
                student,
                ", ".join(report["kernel_only"]),
            )
        self.log.info(
            "Re-verified %d test cells of %s in %.1f s (%.1f s after the kernel finished)",
            len(tests),
            student,
            report["seconds"],
            report["waited_seconds"],
        )
        return nb, resources

    def _verify(self, nb, tests, resources) -> dict:  # runs in the background thread
        cells = [
            (cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"), cell.source)
            for cell in nb.cells
            if cell.cell_type == "code"
        ]
        key = _key(resources)
        cancelled = _CANCELLED.setdefault(key, threading.Event())  # made fresh by _start
        try:
            return verify_cells(
                cells,
                tests,
                cwd=resources.get("metadata", {}).get("path") or None,
                timeout=self.timeout,
                skip=set(self.skip_cells),
                on_session=lambda session: _WORKERS.__setitem__(key, session),
                log=self.log,
                cancelled=cancelled,
                student=resources.get("nbgrader", {}).get("student"),
            )
        finally:
            _WORKERS.pop(key, None)


# re-runs begun by StartVerification, collected by VerifyChecks: key -> (tests, future of (verdicts, seconds))
_STARTED: dict[tuple, tuple[dict, Future]] = {}
# the worker session of each re-run in progress: key -> Session
_WORKERS: dict[tuple, Session] = {}
# set by stop_abandoned: the re-run must not start a new worker for a cell that "killed" the old one
_CANCELLED: dict[tuple, threading.Event] = {}


def stop_abandoned(log=None) -> list[tuple]:
    """Stop the re-runs that no :class:`VerifyChecks` will collect; returns their keys.

    nbgrader grades one notebook at a time in a process, and when a notebook's kernel dies (or
    Execute fails otherwise) it skips that notebook's remaining preprocessors, VerifyChecks
    included. Its re-run would then keep a worker (with TensorFlow loaded) busy until its own
    timeout, beside the next student's kernel. :class:`StartVerification` calls this before it
    starts a re-run, so at most one abandoned worker lives, and only until the next notebook."""
    stopped = []
    for key in list(_STARTED):
        _STARTED.pop(key)
        _CANCELLED.setdefault(key, threading.Event()).set()
        session = _WORKERS.get(key)
        if session is not None and session.process.poll() is None:
            session.process.kill()  # the re-run's thread reads EOF, ends, and closes the session
        stopped.append(key)
        if log is not None:
            log.warning(
                "student %s: grading of %s stopped before its checks were re-verified (did the kernel die?); "
                "its re-run was stopped",
                key[2],
                key[1],
            )
    return stopped


def _key(resources) -> tuple:
    info = resources.get("nbgrader", {})
    return info.get("assignment"), info.get("notebook"), info.get("student")


class StartVerification(VerifyChecks):
    """Start :class:`VerifyChecks`' re-run before the kernel executes the notebook (same settings).

    The re-run takes the submission's cells as they are before execution, which is what the kernel
    runs, and the test cells from the gradebook, so it can overlap with ``Execute``. Without this
    preprocessor :class:`VerifyChecks` runs the re-run itself, after the kernel."""

    def preprocess(self, nb, resources):
        stop_abandoned(self.log)
        if self.enabled:
            cells = NotebookNode(
                cells=[
                    NotebookNode(cell_type=c.cell_type, source=c.source, metadata=NotebookNode(c.get("metadata", {})))
                    for c in nb.cells
                ]
            )  # a copy: the kernel's outputs go into nb
            _STARTED[_key(resources)] = self._start(cells, resources)
        return nb, resources


def verify_cells(
    cells,
    tests: dict,
    cwd=None,
    timeout: float = 240.0,
    skip=SKIPPED,
    on_session=None,
    log=None,
    max_deaths: int = 3,
    cancelled: threading.Event | None = None,
    student: str | None = None,
) -> dict:
    """Run ``cells`` in a worker; for every cell whose grade_id is in ``tests`` run the trusted source
    ``tests[grade_id]`` here instead.

    As in the graded kernel (:class:`bnlab.instructor.preprocessors.execute.SandboxedExecute`), a cell that
    ends the worker's process is skipped: a new worker runs the cells before it again, and the re-run goes on.

    Args:
        cells: ``(grade_id, source)`` of the notebook's code cells, in notebook order.
        tests: ``{grade_id: trusted source}`` of the graded test cells.
        cwd: the worker's working folder.
        timeout: seconds for the whole re-run, every restarted worker included.
        skip: grade_ids of cells the worker does not run.
        on_session: told each worker's session as soon as it starts.
        log: where the worker's session logs.
        max_deaths: how many cells may end a worker before the re-run gives up.
        cancelled: set when the grader stopped the worker (:func:`stop_abandoned`); no new worker starts.
        student: the id graded under, whose variants (:mod:`bnlab.variants`) both sides use; else ``BNLAB_STUDENT``.

    Returns:
        ``{grade_id: None (passed) or the failure's message}`` for the cells of ``tests``.
    """
    deadline = time.monotonic() + timeout
    student = student or settings.graded_student()
    env = {"NBGRADER_EXECUTION": settings.grading() or "autograde"}
    if student:
        env[settings.STUDENT_VARIABLE] = student
    backward_source = next((source for name, source in cells if name == BACKWARD_ANSWER), "")

    def start(replay=()):
        left = max(1.0, deadline - time.monotonic())
        session = Session(cwd=cwd, timeout=left, env=env, log=log, backward_source=backward_source)
        if on_session is not None:
            on_session(session)
        for source in replay:
            _run(session, source)
        return session

    session, ran, deaths = start(), [], 0
    verdicts = {}
    try:
        with variants.graded_as(student):
            for name, source in cells:
                if name in tests:
                    refused = len(session.refused)
                    verdicts[name] = run_test_cell(tests[name], session)
                    if len(session.refused) > refused and verdicts[name] is not None:
                        verdicts[name] = Unjudgeable(verdicts[name])
                elif name not in skip:
                    if _run(session, source):
                        ran.append(source)
                if session.died and deaths < max_deaths and not (cancelled is not None and cancelled.is_set()):
                    deaths += 1
                    session.close()
                    session = start(ran)
    finally:
        session.close()
    return verdicts


def _run(session: Session, source: str) -> bool:
    """Run one of the student's cells in the worker; False when the worker stopped during it."""
    try:
        session.exec_cell(source)
        return True
    except CheckFailed:
        return False  # the worker stopped: every later check says so, unless a new worker takes over


def _has_solution(gb, name, info) -> bool:
    try:
        gb.find_solution_cell(name, info["notebook"], info["assignment"])
        return True
    except MissingEntry:
        return False
