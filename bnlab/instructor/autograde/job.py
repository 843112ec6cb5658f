"""Grade one submission in its own scratch course: the task a local process or a Dask worker runs.

The coordinator (:mod:`bnlab.instructor.autograde.coordinator`) packs a *kit* once per run (:func:`make_kit`): the
assignment's ``source/`` folder, ``nbgrader_config.py``, the released notebooks and a copy of the
course gradebook with the assignment's stored cells and no students. :func:`grade_submission`
unpacks it into a temporary folder, writes the student's files into ``submitted/``, runs
``nbgrader autograde ASSIGNMENT --student ID`` there under :class:`bnlab.instructor.autograde.limits.Limits`, and
returns plain data (picklable, so Dask can send it back): the per-cell scores and comments read
from the scratch gradebook, the autograded files, the status and its reason, and the log lines
that deserve a look. A worker needs the course library installed and nothing else; it never
touches the course's own gradebook.

What a submission prints never decides a note, a flag or a reason: the command's output is held capped
(:func:`bnlab.instructor.autograde.limits.capped_read`) and serves only as the log tail; the notes come from
the records of nbgrader's own log file, written by nbgrader outside the sandbox, each record marked with a
random token of this run that student code never sees (a line it prints, or a newline inside a message,
cannot pass for a record), and from the autograded notebooks' metadata.
"""

from __future__ import annotations

import io
import re
import secrets
import tarfile
import tempfile
import time
from pathlib import Path

from bnlab.grading.errors import KERNEL_DIED
from bnlab.instructor import admission, isolation
from bnlab.instructor.autograde.limits import GiB, Limits, capped_read, run_limited
from bnlab.instructor.autograde.record import GRADEBOOK, TABLE, copy_database, gradebook, sql
from bnlab.instructor.nbgrader import nbgrader_command, nbgrader_env

TIMESTAMP = admission.TIMESTAMP
LOG = "grading.log"  # nbgrader's log file in the scratch course, out of the sandbox's reach
# nbgrader log lines that are expected on every correct run, with the reason they are harmless
EXPECTED_LOG = [
    (
        re.compile(r"SAWarning: Object of type <Submitted\w+> not in session|for notebook in submission\.assignment"),
        "nbgrader's own gradebook bookkeeping (SQLAlchemy autoflush note; the rows are written)",
    ),
    (
        re.compile(r"Kernel is running over TCP without encryption"),
        "the kernel and nbgrader talk over loopback inside the grading sandbox",
    ),
]
CHECKSUM = re.compile(r"Attribute 'checksum' for cell (\S+) has changed! \(should be: (\w+), got: (\w+)\)")
FAILURE_HINTS = re.compile(r"DeadKernelError|Kernel died|CellTimeoutError|Traceback|Error|error", re.I)


def _add_tree(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    for name, data in admission.admit(path).files.items():
        info = tarfile.TarInfo(f"{arcname}/{name}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def template_gradebook(course: Path, target: Path) -> None:
    """Copy the course gradebook to ``target`` without students and their submissions."""
    copy_database(Path(course) / GRADEBOOK, target)
    with gradebook(target) as gb:
        sql(gb, "PRAGMA foreign_keys = OFF")
        tables = {row[0] for row in sql(gb, "SELECT name FROM sqlite_master WHERE type='table'")}
        for table in ("grade", "comment", "submitted_notebook", "submitted_assignment", "student", TABLE):
            if table in tables:
                sql(gb, f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        gb.db.commit()


def make_kit(course: Path, assignment: str) -> bytes:
    """The files a worker needs to grade ``assignment`` of ``course``, as a gzipped tar."""
    course = Path(course)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        template_gradebook(course, Path(tmp) / GRADEBOOK)
        tar.add(Path(tmp) / GRADEBOOK, GRADEBOOK)
        tar.add(course / "nbgrader_config.py", "nbgrader_config.py")
        _add_tree(tar, course / "source" / assignment, f"source/{assignment}")
        if (course / "release" / assignment).is_dir():
            _add_tree(tar, course / "release" / assignment, f"release/{assignment}")
    return buffer.getvalue()


def _read_scores(course: Path, assignment: str, student: str) -> dict:
    """What the scratch ``course``'s gradebook holds for ``student``'s submission, as plain data."""
    from nbgrader.api import MissingEntry

    notebooks = {}
    with gradebook(course) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return {}
        for nb in submission.notebooks:
            notebooks[nb.name] = {
                "grades": {
                    g.name: {
                        "auto_score": g.auto_score,
                        "max_score": g.max_score,
                        "needs_manual_grade": g.needs_manual_grade,
                    }
                    for g in nb.grades
                },
                "comments": {c.name: c.auto_comment for c in nb.comments},
                "late_submission_penalty": nb.late_submission_penalty,
                "flagged": bool(nb.flagged),  # FlagForReview's verdict (bnlab.instructor.preprocessors.review)
            }
    return notebooks


def _release_checksums(release: Path) -> dict:
    import nbformat
    from nbgrader.utils import compute_checksum

    sums = {}
    for path in release.glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id:
                sums[grade_id] = compute_checksum(cell)
    return sums


def classify_log(log: str, release_checksums: dict) -> tuple[list[str], int]:
    """Log lines worth showing (warnings and errors nobody expects), and how many expected ones were dropped.

    A locked cell whose checksum changed is expected when the student's copy equals the released
    one: the released test cells lack their hidden tests, and nbgrader restores them from source/.
    Any other change means the student edited a locked cell (nbgrader restores it; we report it)."""
    notes, expected = [], 0
    for line in log.splitlines():
        match = CHECKSUM.search(line)
        if match:
            cell, _, got = match.groups()
            if release_checksums.get(cell) == got:
                expected += 1
            else:
                notes.append(f"locked cell {cell} was edited in the submission; nbgrader graded the original")
            continue
        if any(pattern.search(line) for pattern, _ in EXPECTED_LOG):
            expected += 1
            continue
        if "| WARNING]" in line or "| ERROR]" in line or "| CRITICAL]" in line:
            note = line.split("]", 1)[-1].strip()[:300]
            if note not in notes:
                notes.append(note)
    return notes, expected


def _notebooks(autograded: Path) -> dict:
    """``{name: notebook}`` of the autograded notebooks, read once for every look below."""
    import nbformat

    return {path.stem: nbformat.read(path, as_version=4) for path in sorted(autograded.glob("*.ipynb"))}


def _cells_with_error(notebooks: dict, ename: str) -> list[str]:
    """The cells of ``notebooks`` with an ``ename`` error output (a timeout, a kernel death)."""
    return [
        cell.metadata.get("nbgrader", {}).get("grade_id") or f"{name}: cell {cell.get('id')}"
        for name, nb in notebooks.items()
        for cell in nb.cells
        if any(out.get("ename") == ename for out in cell.get("outputs", []))
    ]


def log_records(text: str, token: str) -> str:
    """The records of nbgrader's log file ``text`` whose prefix carries ``token`` (the token removed), one
    line each: a line a record's message continued onto, or anything else in the file, is left out."""
    mark = f" {token} "
    kept = []
    for line in text.splitlines():
        prefix, found, message = line.partition(mark)
        if found and prefix.startswith("[") and prefix.endswith("]") and "\n" not in prefix:
            kept.append(f"{prefix} {message}")
    return "\n".join(kept)


def _read_log(path: Path) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as stream:
        return capped_read(stream)


def _crash_reason(log: str) -> str:
    """Why nbgrader produced no graded notebook, in one sentence for the instructor."""
    if "DeadKernelError" in log or "Kernel died" in log:
        return (
            "the kernel died while running the notebook (the submission ended its Python process, e.g. "
            "os._exit, sys.exit in a thread, a crash in native code, or it was killed); no cell could be graded."
        )
    hints = [line.strip() for line in log.splitlines() if FAILURE_HINTS.search(line)]
    return "nbgrader could not grade the notebook; last log lines: " + " | ".join(hints[-3:])[:600]


def recognise_renamed(folder: Path, release: Path) -> str:
    """Give a renamed notebook (JupyterLab's ``…-Copy1.ipynb``, a download's ``… (1).ipynb``) its released
    name, so that nbgrader grades it instead of skipping an unknown notebook. Returns what was done (empty
    when every released notebook is there), or, starting with "could not", why it cannot tell which file
    is which."""
    expected = {p.name for p in release.glob("*.ipynb")}
    present = {p.name for p in folder.glob("*.ipynb")}
    missing, unknown = sorted(expected - present), sorted(present - expected)
    if not missing or not unknown:
        return ""
    if len(missing) == 1 and len(unknown) == 1:
        (folder / unknown[0]).rename(folder / missing[0])
        return (
            f"renamed: the notebook was handed in as {unknown[0]} and graded as {missing[0]}; rename it in "
            f"submitted/ (or ask the student to) so that nbgrader's own commands find it too"
        )
    return (
        f"could not tell which notebook is which: {', '.join(missing)} missing, {', '.join(unknown)} handed in "
        f"instead; rename them in submitted/{folder.parent.name}/{folder.name}/ to the released names and grade "
        "again"
    )


def _unreadable(files: dict) -> str:
    import nbformat

    for name, data in files.items():
        if name.endswith(".ipynb"):
            try:
                nbformat.validate(nbformat.reads(data.decode("utf-8"), as_version=4))
            except Exception as error:  # noqa: BLE001 - any reason a notebook cannot be read
                return f"{name} cannot be read as a notebook ({type(error).__name__}: {str(error)[:200]})"
    return ""


def _refusals(result: dict, refused: dict) -> dict:
    """Name what was not read (a link, a pipe, a bad timestamp) in ``result``'s notes and reason, and flag it."""
    if refused:
        why = admission.note(refused)
        result["notes"].insert(0, why)
        result["reason"] = "; ".join(filter(None, [result["reason"], "flagged for review: " + why]))
        for data in result["notebooks"].values():
            data["flagged"] = True
    return result


def grading_command(course: Path, assignment: str, student: str, token: str, limits: Limits) -> list[str]:
    """The ``nbgrader autograde`` command of one submission: nbgrader's log to a file, each record marked by
    ``token``; the sandbox's memory and wall time set to ``limits`` (``--memory-gib``, ``--wall-time``)."""
    cmd = nbgrader_command("autograde", assignment, "--student", student, "--force", root=course)
    cmd += [
        f"--NbGrader.logfile={course / LOG}",  # NbGrader: nbgrader moves AutogradeApp.* options elsewhere
        f"--NbGrader.log_format=%(color)s[%(name)s | %(levelname)s]%(end_color)s {token} %(message)s",
        f"--SandboxedExecute.memory_limit={(limits.memory_bytes or 0) / GiB:g}",
        f"--SandboxedExecute.wall_time={limits.wall_seconds:g}",
    ]
    if limits.cell_timeout:
        cmd.append(f"--Execute.timeout={int(limits.cell_timeout)}")
    return cmd


def grade_submission(
    kit: bytes,
    assignment: str,
    student: str,
    files: dict,
    limits: Limits = Limits(),
    env: dict | None = None,
    refused: dict | None = None,
) -> dict:
    """Grade one student's files in a scratch course unpacked from the kit; return the result as plain data.

    Args:
        kit: what :func:`make_kit` packed (the assignment, the config, a gradebook without students).
        assignment: the assignment to grade.
        student: the student's id.
        files: ``{name: bytes}`` of the submission.
        limits: the limits the grading command runs under.
        env: environment variables for the grading command (e.g. ``BNLAB_SHORT_BATCHES``).
        refused: ``{name: reason}`` of what the coordinator did not read (:mod:`bnlab.instructor.admission`):
            named in the notes and the reason, and the submission flagged.

    Returns:
        ``{"student", "assignment", "status", "reason", "notebooks" (scores, comments, flags), "autograded"
        ({name: bytes}), "notes", "seconds", ...}``; ``status`` is ``graded`` or why not.
    """
    start = time.perf_counter()
    refused = dict(refused or {})
    files = dict(files)
    if TIMESTAMP in files and admission.timestamp_problem(files[TIMESTAMP]):
        refused[TIMESTAMP] = admission.timestamp_problem(files.pop(TIMESTAMP))
    result = {
        "student": student,
        "assignment": assignment,
        "status": "graded",
        "reason": "",
        "notebooks": {},
        "autograded": {},
        "notes": [],
        "expected_warnings": 0,
        "log_tail": "",
        "network_isolated": False,
        "sandboxed": False,
    }
    with tempfile.TemporaryDirectory(prefix=f"bnlab-grade-{student}-") as tmp:
        course = Path(tmp)
        with tarfile.open(fileobj=io.BytesIO(kit), mode="r:gz") as tar:
            tar.extractall(course, filter="data")
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        for name, data in files.items():
            if ".." in Path(name).parts or Path(name).is_absolute():
                refused[name] = "a name that leaves the submission's folder"
                continue
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        renamed = recognise_renamed(folder, course / "release" / assignment)
        if renamed.startswith("could not"):
            result.update(status="renamed", reason=renamed, seconds=time.perf_counter() - start)
            return _refusals(result, refused)
        if not any(name.endswith(".ipynb") and "/" not in name for name in files):
            result.update(
                status="no notebook",
                reason="no notebook was handed in as a regular file: nothing to grade",
                seconds=time.perf_counter() - start,
            )
            return _refusals(result, refused)
        unreadable = _unreadable(files)
        if unreadable:
            result.update(status="unreadable", reason=unreadable, seconds=time.perf_counter() - start)
            return _refusals(result, refused)
        token = secrets.token_hex(16)  # marks nbgrader's log records; student code never sees it
        cmd = grading_command(course, assignment, student, token, limits)
        run_env = nbgrader_env({**(env or {}), "BNLAB_COURSE_ROOT": str(course), "BNLAB_ISOLATION": limits.isolation})
        sandbox_ok, sandbox_why = isolation.available()
        if limits.isolation == "require" and not sandbox_ok:
            result.update(
                status="refused",
                reason=f"not graded: the sandbox is required but unavailable on this machine ({sandbox_why})",
                seconds=time.perf_counter() - start,
            )
            return _refusals(result, refused)
        result["sandboxed"] = sandbox_ok and limits.isolation != "off"
        outcome = run_limited(cmd, course, run_env, limits)
        result["network_isolated"] = outcome.network_isolated
        result["log_tail"] = outcome.output[-6000:]
        log = log_records(_read_log(course / LOG), token)
        result["notes"], result["expected_warnings"] = classify_log(
            log, _release_checksums(course / "release" / assignment)
        )
        if not result["sandboxed"]:
            result["notes"].insert(
                0,
                "student code was NOT sandboxed: " + ("--isolation off" if limits.isolation == "off" else sandbox_why),
            )
        graded = course / "autograded" / student / assignment
        notebooks_done = graded.is_dir() and any(graded.glob("*.ipynb"))
        if outcome.status in ("timeout", "memory"):
            result.update(status=outcome.status, reason=outcome.reason)
        elif not notebooks_done:
            result.update(status="crashed", reason=_crash_reason(log))
            result["notes"] = []  # the reason says it
        else:
            result["notebooks"] = _read_scores(course, assignment, student)
            result["autograded"] = admission.admit(graded).files
            from bnlab.instructor.preprocessors.review import review_reasons

            notebooks = _notebooks(graded)
            review = [reason for nb in notebooks.values() for reason in review_reasons(nb)]
            if review:
                result["reason"] = "flagged for review: " + "; ".join(review)
            slow = _cells_with_error(notebooks, "CellTimeoutError")
            died = _cells_with_error(notebooks, KERNEL_DIED[0])
            if slow:
                result.update(
                    status="timeout",
                    reason="cells stopped at the per-cell time limit (the other cells were graded): " + ", ".join(slow),
                )
            elif died:
                result.update(
                    status="crashed",
                    reason="the kernel died in " + ", ".join(died) + " (the submission "
                    "ended its Python process, e.g. os._exit); that cell was skipped and the rest of the "
                    "notebook graded: the other cells keep their points.",
                )
    _refusals(result, refused)
    if renamed:
        result["notes"].insert(0, renamed)
        if result["status"] == "graded":
            result["reason"] = "; ".join(filter(None, [renamed, result["reason"]]))
    if result["status"] == "graded" and not result["sandboxed"]:  # in autograde_report.csv too
        result["reason"] = "; ".join(filter(None, [result["notes"][0], result["reason"]]))
    edited = [note for note in result["notes"] if "was edited in the submission" in note]
    if edited and result["status"] == "graded":
        result["reason"] = "; ".join(filter(None, [result["reason"], "flagged for review: " + "; ".join(edited)]))
        for data in result["notebooks"].values():
            data["flagged"] = True
    result["seconds"] = time.perf_counter() - start
    return result
