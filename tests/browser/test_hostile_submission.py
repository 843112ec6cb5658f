"""A submission is data: a graded submission that tries to run script in the instructor's browser changes
nothing when the instructor opens it (issue 27).

The submission is the solution plus one payload, placed everywhere a student can put markup: the written
answer (a markdown cell, ``<img onerror>``), outputs (HTML with ``<script>`` and ``onerror``, JavaScript,
SVG, markdown) and files beside the notebook (``notes.html``, ``pic.svg``). Run on the Jupyter server's
origin, the payload reads the XSRF cookie, writes a file into the course through the Jupyter API and sets
every grade of the submission to full marks through the formgrader's API. The instructor then opens the
formgrader's grading view, the files it serves, the feedback, and the autograded notebook in JupyterLab
after clicking *Trust*. Nothing may be written and every grade must stay as graded. The control at the end
serves the same payload unsanitized on the same origin and shows that it would have worked.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import labdriver
import nbformat
import pytest
from conftest import GRADING_BATCHES
from labdriver import Steps, appears

from bnlab import exercise
from bnlab.instructor import notebooks, scratch
from bnlab.instructor.autograde import record
from bnlab.instructor.nbgrader import nbgrader

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

STUDENT = "mallory"
PAYLOAD = """(function () {
  var m = document.cookie.match(/_xsrf=([^;]+)/), x = m ? decodeURIComponent(m[1]) : "";
  var h = {"X-XSRFToken": x, "Content-Type": "application/json"};
  fetch("/api/contents/pwned_WHERE.txt", {method: "PUT", headers: h, credentials: "same-origin",
    body: JSON.stringify({type: "file", format: "text", content: "pwned"})});
  var id = (location.pathname.match(/submissions\\/([^\\/]+)/) || [])[1];
  if (id) fetch("/formgrader/api/grades?submission_id=" + id, {headers: h, credentials: "same-origin"})
    .then(function (r) { return r.json(); })
    .then(function (gs) { gs.forEach(function (g) {
      fetch("/formgrader/api/grade/" + g.id, {method: "PUT", headers: h, credentials: "same-origin",
        body: JSON.stringify({manual_score: g.max_score})}); }); });
})();"""


# markup that would run in a browser (the student's code is shown as text: &lt;img ... onerror=, "eval(atob(...")
LIVE_MARKUP = re.compile(r"<(script|svg|iframe)\b[^>]*>\s*eval|<[a-z]+\b[^>]*\bon(error|load)\s*=", re.I)
TRUSTED = (
    "import sys, nbformat; from nbformat.sign import NotebookNotary; "
    "print(NotebookNotary().check_signature(nbformat.read(sys.argv[1], as_version=4)))"
)


def run(where: str) -> str:
    """JavaScript that runs the payload, tagged with ``where`` it was placed, with no quote inside."""
    return "eval(atob('" + base64.b64encode(PAYLOAD.replace("WHERE", where).encode()).decode() + "'))"


def hostile_answers() -> dict:
    solution = notebooks.solution_answers()
    html = f'<b>plot</b><script>{run("output-script")}</script><img src=x onerror="{run("output-img")}">'
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" onload="{run("output-svg")}"><circle r="5"/></svg>'
    outputs = f"""
from IPython.display import HTML as _H, Javascript as _J, Markdown as _M, SVG as _S, display as _d
_d(_H({html!r}))
_d(_J({run("output-js")!r}))
_d(_M({f'<img src=x onerror="{run("output-markdown")}">'!r}))
_d(_S({svg!r}))
print("x" * 3_000_000)  # one 3 MB line: capped
"""
    return {
        **solution,
        "q_upstream_shift_answer": solution["q_upstream_shift_answer"] + "\n" + outputs,
        "diagnose_explain": solution["diagnose_explain"]
        + f'\n\n<img src=x onerror="{run("markdown")}"> [more](javascript:{run("markdown-link")})',
    }


def pwned(course: Path) -> list[str]:
    return sorted(str(p.relative_to(course)) for p in course.rglob("pwned_*"))


@pytest.fixture(scope="module")
def hostile_lab(browser, tmp_path_factory):
    """JupyterLab in a scratch course with the hostile submission graded by plain ``nbgrader autograde``."""
    work = tmp_path_factory.mktemp("hostile-lab")
    course = scratch.create_course(work / "course")
    nbgrader("db", "student", "add", STUDENT, "--first-name=Mallory", "--last-name=Student", root=course)
    folder = scratch.submit(course, STUDENT, notebooks.fill_in(scratch.release_notebook(course), hostile_answers()))
    folder = folder if folder.is_dir() else folder.parent
    (folder / "notes.html").write_text(f"<h1>notes</h1><script>{run('file-html')}</script>")
    (folder / "pic.svg").write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg"><script>{run("file-svg")}</script><circle r="5"/></svg>'
    )
    env = {"BNLAB_SHORT_BATCHES": GRADING_BATCHES, "BNLAB_COURSE_ROOT": str(course)}
    result = nbgrader("autograde", exercise.ASSIGNMENT, "--force", root=course, check=False, env=env)
    assert (course / "autograded" / STUDENT).is_dir(), result.stdout[-3000:] + result.stderr[-3000:]
    with labdriver.course_lab(course, work, {"BNLAB_SHORT_BATCHES": GRADING_BATCHES}, "hostile-lab.log") as (base, env):
        yield base, course, env, result.stdout + result.stderr


def settle(page, seconds: float = 4.0) -> None:
    """Give a payload time to run and its requests time to land."""
    page.wait_for_timeout(seconds * 1000)


def test_a_hostile_submission_changes_nothing_in_the_instructors_browser(hostile_lab, page):
    base, course, env, log = hostile_lab
    steps = Steps(page, "hostile")
    graded = record.cell_scores(course, exercise.ASSIGNMENT)[STUDENT]
    autograded = course / "autograded" / STUDENT / exercise.ASSIGNMENT
    relative_nb = f"autograded/{STUDENT}/{exercise.ASSIGNMENT}/{exercise.NOTEBOOK}.ipynb"

    def unchanged(where: str) -> None:
        assert pwned(course) == [], f"{where}: the submission's script wrote {pwned(course)}"
        now = record.cell_scores(course, exercise.ASSIGNMENT)[STUDENT]
        assert now == graded, f"{where}: the grades changed from {graded} to {now}"

    with steps("the graded notebook is inert and bounded"):
        nb = nbformat.read(course / relative_nb, as_version=4)
        shown = json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])  # code itself is shown as text
        shown += "".join(c.source for c in nb.cells if c.cell_type != "code")
        for word in ("onerror", "<script", "atob("):
            at = shown.find(word)
            assert at < 0, f"script left in the notebook: {shown[max(0, at - 300) : at + 100]!r}"
        assert "application/javascript" not in shown and "image/svg+xml" not in shown
        assert "plot" in shown and "cut by the course's grader" in shown
        assert (course / relative_nb).stat().st_size < 1_000_000
        assert f"SANITIZED: student {STUDENT}" in log, log[-3000:]
        names = {p.name for p in autograded.iterdir()}
        assert {"notes.html.txt", "pic.svg.txt"} <= names and not {"notes.html", "pic.svg"} & names, names
        solution_tests = {n for n, (s, m) in graded.items() if n.startswith("test_")}
        assert solution_tests and all(graded[n][0] == graded[n][1] for n in solution_tests), graded

    with record.gradebook(course) as gb:
        notebook_id = gb.find_submission_notebook(exercise.NOTEBOOK, exercise.ASSIGNMENT, STUDENT).id

    with steps("open the submission in the formgrader's grading view"):
        page.goto(f"{base}/lab")  # the instructor's session: the XSRF cookie is set
        page.wait_for_selector(".jp-LabShell", timeout=120_000)
        grader = page.context.new_page()
        steps.page = grader
        grader.goto(f"{base}/formgrader/submissions/{notebook_id}/?index=0", referer=f"{base}/lab")
        appears(grader.locator("input.score").first, 60, "the formgrader's score fields")
        assert grader.locator("text=plot").count() >= 1, "the harmless part of the HTML output is shown"
        settle(grader)
        unchanged("the formgrader's grading view")

    with steps("open the submitted files through the formgrader"):
        for name in ("notes.html", "pic.svg", "notes.html.txt", "pic.svg.txt"):
            response = grader.goto(f"{base}/formgrader/submissions/{notebook_id}/{name}", referer=f"{base}/lab")
            if name.endswith(".txt"):
                assert response.status == 200 and "text/plain" in response.headers.get("content-type", "")
            else:
                assert response.status == 404, f"{name} is served ({response.status})"
            settle(grader, 2)
        unchanged("the submitted files")

    with steps("generate and open the feedback"):
        nbgrader("generate_feedback", exercise.ASSIGNMENT, "--force", f"--student={STUDENT}", root=course, env=env)
        relative = f"feedback/{STUDENT}/{exercise.ASSIGNMENT}/{exercise.NOTEBOOK}.html"
        html = (course / relative).read_text()
        assert not LIVE_MARKUP.search(html), LIVE_MARKUP.search(html).group(0)
        grader.goto(f"{base}/files/{relative}", referer=f"{base}/lab")
        settle(grader)
        unchanged("the feedback")

    with steps("open the autograded notebook in JupyterLab and trust it"):
        steps.page = page
        page.goto(f"{base}/lab/tree/{relative_nb}?reset")
        page.wait_for_selector(labdriver.CELLS, timeout=120_000)
        settle(page, 3)
        page.keyboard.press("Control+Shift+C")
        palette = page.locator(".lm-CommandPalette-input, .jp-mod-commandPalette input").first
        appears(palette, 30, "the command palette")
        palette.fill("Trust Notebook")
        page.keyboard.press("Enter")
        trust = page.locator(".jp-Dialog-footer button", has_text="Trust")
        appears(trust, 60, "JupyterLab's Trust dialog")
        trust.click()
        settle(page, 3)
        page.keyboard.press("Control+s")  # the server signs the notebook when it saves it trusted
        settle(page, 5)
        unchanged("JupyterLab after Trust")
        check = subprocess.run([sys.executable, "-c", TRUSTED, str(course / relative_nb)], env=env, capture_output=True)
        assert check.stdout.strip() == b"True", (
            f"the notebook was not trusted: {check.stdout!r} {check.stderr[-500:]!r}"
        )

    with steps("the control: the same payload, served unsanitized on the same origin, would have worked"):
        control = autograded / "control.html"
        control.write_text(f"<script>{run('control')}</script>")
        grader.goto(f"{base}/formgrader/submissions/{notebook_id}/control.html", referer=f"{base}/lab")
        deadline = time.monotonic() + 20
        while not pwned(course) and time.monotonic() < deadline:
            time.sleep(0.5)
        control.unlink()
        assert pwned(course) == ["pwned_control.txt"], pwned(course)
        deadline = time.monotonic() + 30  # the grade requests follow the file's
        while record.cell_scores(course, exercise.ASSIGNMENT)[STUDENT] == graded and time.monotonic() < deadline:
            time.sleep(0.5)
        changed = record.cell_scores(course, exercise.ASSIGNMENT)[STUDENT]
        assert changed != graded, "the control's payload could not reach the formgrader's API"
        nbformat.read(course / relative_nb, as_version=4)  # still a valid notebook
