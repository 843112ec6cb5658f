"""A class's whole cycle on the course's JupyterHub, in Chromium (bnlab.instructor.hub, `make hub`).

One hub, real Unix users, the cycle once: the teacher releases the exercise from the formgrader (a hub
service, in a tab of its own); student A fetches it from the Assignments list, answers, validates and
submits; student B submits the untouched notebook; a submission A makes under B's id is refused at
collection; the course's sandboxed grader (`make autograde`'s coordinator) grades; the teacher grades the
written answer by hand and releases feedback; A fetches it and sees the score without hidden tests; the
Canvas export carries the hub names. The hub and every process of its users stop at the end.
"""

from __future__ import annotations

import csv
import pwd
import time
from pathlib import Path

import hubdriver
import labdriver
import pytest
from labdriver import ARTIFACTS, Notebook, Steps, appears, score_by_hand, validate
from test_instructor_day import close_modal, hidden_lines
from test_student_day import is_answer, student_code

from bnlab import exercise
from bnlab.instructor import hub, notebooks, scratch
from bnlab.instructor.autograde import record

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1800)]

ASSIGNMENT = exercise.ASSIGNMENT
RELATIVE = str(notebooks.RELATIVE)


@pytest.fixture(scope="module")
def class_hub(browser):
    reason = hubdriver.why_not()
    if reason:
        pytest.skip(reason)
    labdriver.install_lab_settings()  # as `make hub` does: the students' servers read them from the course's .venv
    log = ARTIFACTS / "hub.log"
    with hubdriver.searchable_course(), hubdriver.running_hub(log) as layout:
        printed = log.read_text()
        assert (
            f"http://127.0.0.1:{layout.port}/hub/login" in printed and layout.passwords[layout.user("ada")] in printed
        )
        yield layout
    assert not layout.left, f"processes left running after the hub was stopped: {layout.left}"
    assert "the hub left running as its users" not in log.read_text(), "the hub's own shutdown left processes"


def assignment_list(page):
    """Open nbgrader's Assignment List from JupyterLab's Nbgrader menu (the students' Assignments tab)."""
    page.get_by_role("menuitem", name="Nbgrader").click()
    page.get_by_role("menuitem", name="Assignment List").click()
    appears(page.locator("#released_assignments_list"), 60, "nbgrader's assignment list")


def press(page, listing: str, button: str, seconds: float = 120) -> None:
    """Click ``button`` of the exercise's row in the assignment list's ``listing`` (refreshing until it shows)."""
    item = page.locator(f"#{listing} .list_item", has_text=ASSIGNMENT).locator("button", has_text=button)
    deadline = time.monotonic() + seconds
    while not item.count():
        assert time.monotonic() < deadline, f"no {button} button for {ASSIGNMENT} in {listing}"
        page.locator("#refresh_assignments_list").click()
        time.sleep(2)
    item.first.click()


def running_pythons(layout, user: str) -> set[str]:
    """The Python executables of ``user``'s single-user server and kernels (from /proc, as root)."""
    uid = pwd.getpwnam(user).pw_uid
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid != uid:
                    continue
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(word in b" ".join(argv) for word in (b"jupyterhub.singleuser", b"ipykernel_launcher")):
                found.add(argv[0].decode())
    return found


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:.0f} s"
        time.sleep(1)
    return value


def test_class_cycle_on_the_hub(browser, class_hub, tmp_path):
    layout = class_hub
    base = f"http://127.0.0.1:{layout.port}"
    teacher, ada, bob = (layout.user(r) for r in ("teacher", "ada", "bob"))
    inbound = layout.exchange / hub.COURSE_ID / "inbound"
    course = layout.course
    formgrader_url = f"{base}/services/{hub.COURSE_ID}/formgrader"

    page = hubdriver.login(browser, base, layout, "teacher")
    steps = Steps(page, "hub")
    with steps("the teacher logs in; the formgrader opens in a tab of its own"):
        grader = page.context.new_page()
        steps.page = grader
        response = grader.goto(formgrader_url)
        policy = response.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in policy, f"the formgrader's security policy was changed: {policy!r}"
        row = grader.locator("tr", has=grader.locator("td.name", has_text=ASSIGNMENT))
        appears(row, 60, f"the formgrader's row of {ASSIGNMENT}")

    with steps("the teacher generates and releases the exercise"):
        row.locator("td.assign a").click()
        assert "Successfully created the student version" in close_modal(grader, "success-modal")
        row.locator("td.release a").click()
        close_modal(grader, "success-modal")
        released = layout.exchange / hub.COURSE_ID / "outbound" / ASSIGNMENT / notebooks.FILENAME
        assert released.is_file(), f"nothing released into the exchange ({released})"

    student = hubdriver.login(browser, base, layout, "ada")
    steps.page = student
    ada_home = Path(hub.home(ada))
    with steps("student A fetches the exercise from the Assignments list"):
        assignment_list(student)
        press(student, "released_assignments_list", "Fetch")
        wait_for(lambda: (ada_home / RELATIVE).is_file(), 60, "the fetch into A's home")

    with steps("student A answers every question and validates"):
        nb = Notebook(student, f"{base}/user/{ada}", ada_home, RELATIVE)
        student.goto(f"{base}/user/{ada}/lab/tree/{RELATIVE}?reset")
        wait_for(lambda: student.locator(".jp-NotebookPanel .jp-Cell").count() == len(nb.nb.cells), 120, "the cells")
        answers = {k: student_code(v) for k, v in notebooks.solution_answers().items()}
        for i, cell in enumerate(nb.nb.cells):
            if is_answer(cell):
                nb.type_into(i, answers[cell.metadata["nbgrader"]["grade_id"]])
        saved = nb.save()
        typed = [c for c in saved.cells if is_answer(c)]
        assert all(c.source.strip() == answers[c.metadata["nbgrader"]["grade_id"]].strip() for c in typed)
        validate(student, saved, 600)
        student.locator(".jp-Dialog .jp-mod-accept").click()

    with steps("A's server and kernel run the student package; the teacher's the whole course"):
        pythons = {name: running_pythons(layout, name) for name in (ada, teacher)}
        assert pythons[ada] == {str(layout.student_env / "bin" / "python")}, pythons
        assert pythons[teacher] == {str(hub.VENV / "bin" / "python")}, pythons
        probe = "import bnlab, importlib.util as u; print(bnlab.__file__, u.find_spec('bnlab.instructor') is None)"
        shipped = hubdriver.as_user(layout, "ada", [next(iter(pythons[ada])), "-c", probe])
        where, no_tooling = shipped.stdout.split()
        assert where.startswith(f"{layout.state}/bundle/") and where.endswith("/bnlab/__init__.py"), shipped
        assert no_tooling == "True", "a student's kernel can import bnlab.instructor"

    with steps("student A submits from the Assignments list"):
        assignment_list(student)
        press(student, "fetched_assignments_list", "Submit")
        mine = wait_for(lambda: list(inbound.glob(f"{ada}+{ASSIGNMENT}+*")), 120, "A's submission")
        assert pwd.getpwuid(mine[0].stat().st_uid).pw_name == ada

    other = hubdriver.login(browser, base, layout, "bob")
    steps.page = other
    with steps("student B fetches and submits the untouched notebook"):
        assignment_list(other)
        press(other, "released_assignments_list", "Fetch")
        wait_for(lambda: (Path(hub.home(bob)) / RELATIVE).is_file(), 60, "the fetch into B's home")
        press(other, "fetched_assignments_list", "Submit")
        wait_for(lambda: list(inbound.glob(f"{bob}+{ASSIGNMENT}+*")), 120, "B's submission")

    steps.page = grader
    with steps("A's submission under B's id is refused when the teacher collects"):
        time.sleep(1.1)  # a later timestamp than B's own submission: nbgrader would take it as B's latest
        forged = hubdriver.as_user(
            layout, "ada", ["python", "-m", "nbgrader", "submit", ASSIGNMENT, f"--student={bob}"]
        )
        assert forged.returncode == 0, forged.stderr[-2000:]
        collected = hubdriver.as_user(
            layout, "grader", ["python", "-m", "bnlab.instructor.lms", "collect", "--course", str(course)], cwd=course
        )
        assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
        assert f"claims student '{bob}' but was submitted by '{ada}'" in collected.stdout, collected.stdout[-2000:]
        assert {p.name for p in (course / "submitted").iterdir() if not p.name.startswith(".")} == {ada, bob}
        bob_nb = notebooks.read(course / "submitted" / bob / RELATIVE)
        assert not any("BEGIN SOLUTION" in c.source or c.source.strip() in answers.values() for c in bob_nb.cells)

    with steps("the course's sandboxed grader grades both; the formgrader shows the scores"):
        graded = hubdriver.as_user(
            layout,
            "grader",
            ["python", "-m", "bnlab.instructor.autograde", ASSIGNMENT, "--course", str(course), "--jobs", "2"],
            cwd=course,
        )
        assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-2000:]
        scores = record.cell_scores(course, ASSIGNMENT)
        on_hub = {n: s for n, (s, _) in scores[ada].items() if n not in answers}
        assert sum(on_hub.values()) > 0 and sum(s for s, _ in scores[bob].values()) == 0, scores
        # The same notebook graded as `make autograde` grades it in the course (a scratch course, as root).
        reference = scratch.create_course(tmp_path / "reference")
        scratch.submit(reference, ada, notebooks.read(course / "submitted" / ada / RELATIVE))
        scratch.autograde(reference)
        by_make = {n: s for n, (s, _) in record.cell_scores(reference, ASSIGNMENT)[ada].items() if n not in answers}
        differ = {n: (on_hub[n], by_make.get(n)) for n in on_hub if on_hub[n] != by_make.get(n)}
        assert not differ, (
            f"A's scores on the hub differ from make autograde's (hub, make): {differ}; why on the hub: "
            f"{scratch.why_zero(course, ada)}; why by make: {scratch.why_zero(reference, ada)}"
        )
        grader.goto(f"{formgrader_url}/manage_submissions/{ASSIGNMENT}")
        for name in (ada, bob):
            appears(grader.locator("td.student-id", has_text=name), 60, f"{name} in the formgrader")

    with steps("the teacher grades A's written answer by hand in the formgrader"):
        with record.gradebook(course) as gb:
            submitted = gb.find_submission_notebook(exercise.NOTEBOOK, ASSIGNMENT, ada)
            manual = [g.name for g in submitted.grades if g.cell.cell_type == "markdown"]
            notebook_id = submitted.id
        assert manual, "the exercise has no written answer to grade by hand"
        grader.goto(f"{formgrader_url}/submissions/{notebook_id}/?index=0")
        field = grader.locator(f"input.score#{manual[0]}")
        appears(field, 60, f"the score field of {manual[0]}")
        score_by_hand(grader, field, "1.5", lambda: record.cell_scores(course, ASSIGNMENT)[ada][manual[0]][0] == 1.5)

    with steps("the teacher generates and releases feedback"):
        grader.goto(formgrader_url)
        appears(row, 60, f"the formgrader's row of {ASSIGNMENT}")
        row.locator("td.generate-feedback a").click()
        assert "Successfully generated feedback" in close_modal(grader, "success-modal")
        row.locator("td.release-feedback a").click()
        close_modal(grader, "success-modal")

    steps.page = student
    with steps("student A fetches the feedback: the score, no hidden test"):
        assignment_list(student)
        press(student, "submitted_assignments_list", "Fetch Feedback")
        pattern = f"{ASSIGNMENT}/feedback/*/{exercise.NOTEBOOK}.html"
        html = wait_for(lambda: sorted(ada_home.glob(pattern)), 60, "the feedback in A's home")[-1]
        view = student.context.new_page()
        steps.page = view
        view.goto(f"{base}/user/{ada}/files/{html.relative_to(ada_home)}", referer=f"{base}/user/{ada}/lab")
        text = view.locator("body").inner_text()
        total = sum(s for s, _ in record.cell_scores(course, ASSIGNMENT)[ada].values())
        assert f"{total:g}" in text and "1.5" in text, f"the feedback does not show A's score {total:g}"
        leaked = [line for line in hidden_lines(notebooks.SOURCE) if line in text]
        assert not leaked, f"the feedback shows {len(leaked)} hidden test line(s), e.g. {leaked[0]!r}"

    with steps("the grades export, Canvas CSV included, carries the hub names"):
        exported = hubdriver.as_user(
            layout, "grader", ["python", "-m", "bnlab.instructor.lms", "export", "--course", str(course)], cwd=course
        )
        assert exported.returncode == 0, exported.stdout[-2000:] + exported.stderr[-2000:]
        with open(course / "grades_canvas.csv", newline="") as handle:
            rows = {r["SIS Login ID"]: r for r in csv.DictReader(handle)}
        assert rows[ada][ASSIGNMENT] == f"{total:g}" and rows[bob][ASSIGNMENT] == "0", rows
        assert {ada, bob} <= {r["student_id"] for r in csv.DictReader(open(course / "grades.csv"))}
