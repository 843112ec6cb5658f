"""What students receive: the released notebooks and the course library, nothing of the instructor's.

``python -m bnlab.instructor.bundle`` (``make bundle``) writes ``dist/bnlab-student-VERSION/`` and its
``.zip``: the notebooks of ``release/`` under ``notebooks/``, the ``bnlab`` package without the
instructor's tooling (grading pipeline, release, exports, benchmarks), the data fetcher
(``python -m bnlab.data``), a minimal ``pyproject.toml`` with the course's pinned versions, a
``Makefile`` and a ``README.md``. Set-up is two commands::

    python3.11 -m venv .venv && .venv/bin/pip install -e .
    make lab        # or: .venv/bin/python -m bnlab.data && .venv/bin/jupyter lab notebooks

There is no ``source/``, no ``solutions/`` and no hidden test in it; :func:`leaks` checks that, and
``tests/test_bundle.py`` runs it on a fresh bundle. :func:`missing_notebooks` refuses a bundle without
every notebook that release/ must hold, and :func:`answer_leaks` pastes every function of the bundle's
notebooks and library as the answer to every graded function of the exercise: none may pass the checks
of the graded cell it would answer.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import io
import re
import shutil
import sys
import tomllib
from pathlib import Path

from bnlab.instructor import release
from bnlab.instructor.notebooks import ROOT

# the folder of instructor tooling (it reads source/ or drives nbgrader); never shipped to students
INSTRUCTOR_FOLDER = "instructor"
# the trusted re-run's processes (the worker and the judge) and what they exchange: they run only where the course
# is graded, never in a student's kernel, so they are not shipped either
GRADER_MODULES = ("grading/worker.py", "grading/judge.py", "grading/wire.py", "grading/export.py")
# lines of shipped modules between these markers stay out of the bundle (bnlab/questions.py: the teaching messages
# for wrong multiple-choice letters, whose missing letter is the answer)
GRADER_SIDE = re.compile(r"^# BEGIN GRADER SIDE\b.*?^# END GRADER SIDE\n", re.M | re.S)
# packages students do not need (the course's notebook tests, the parallel grader)
NOT_FOR_STUDENTS = ("nbval", "dask")
MARKERS = (
    "BEGIN SOLUTION",
    "END SOLUTION",
    "BEGIN HIDDEN TESTS",
    "END HIDDEN TESTS",
    "BEGIN MARK SCHEME",
    "BEGIN GRADER SIDE",
)

MAKEFILE = """\
# Batch Normalization in TensorFlow, student copy. `make lab` sets up and opens the notebooks.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(CURDIR)/.venv/bin
PORT ?= 8888
export PATH := $(BIN):$(PATH)
EXTENSION := .venv/share/jupyter/labextensions/bnlab-validate
.PHONY: setup data lab
setup: .venv/.installed
# After the README's `pip install -e .` the course is installed but this stamp is not there yet: no second install.
INSTALLED_HERE := import importlib.util as u, pathlib as p, sys; s = u.find_spec("bnlab"); \\
  sys.exit(s is None or p.Path(s.origin).resolve().parent != p.Path("bnlab").resolve())
.venv/.installed: pyproject.toml
\t@test -x $(BIN)/python || $(PYTHON) -m venv .venv
\t@if test ! -e $@ && $(BIN)/python -I -c '$(INSTALLED_HERE)' 2>/dev/null; then echo "bnlab is installed in .venv"; \\
\telse $(BIN)/python -m pip install --progress-bar off -e .; fi
\t@touch $@
data: setup  ## fetch and verify MNIST (cached in ~/.cache/bnlab/mnist)
\t$(BIN)/python -m bnlab.data
lab: setup data  ## open JupyterLab on the notebooks (with the course's quiet JupyterLab settings)
\tinstall -D -m 644 jupyter/overrides.json .venv/share/jupyter/lab/settings/overrides.d/bnlab-course.json
\tinstall -D -m 644 jupyter/jupyter_lab_config.json .venv/etc/jupyter/jupyter_lab_config.json
\tinstall -D -m 644 jupyter/nbgrader_student_config.py .venv/etc/jupyter/nbgrader_config.py
\tmkdir -p $(EXTENSION) && cp -R jupyter/validate-extension/. $(EXTENSION)
\t$(BIN)/jupyter lab --ServerApp.root_dir=notebooks --port=$(PORT) $(if $(filter 0,$(shell id -u)),--allow-root,)
"""

README = """\
# Batch Normalization in TensorFlow: student copy

You need Python 3.11 (and `make`). In this folder:

```bash
python3.11 -m venv .venv && .venv/bin/pip install -e .   # install the course library and its pinned versions
make lab                                                  # fetch MNIST once, then open JupyterLab
```

Without `make`: `.venv/bin/python -m bnlab.data`, then `.venv/bin/jupyter lab notebooks
--LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate` (copy
`jupyter/validate-extension` to `.venv/share/jupyter/labextensions/bnlab-validate` first, and *Validate* lists
the answers graded after you hand the notebook in).

- `notebooks/batch_norm_lesson/`: the lesson (ungraded).
- `notebooks/batch_norm_exercises/`: the graded exercise. Run its *Check* cells; hidden checks run
  the same tests on other inputs when your notebook is graded. Hand in the `.ipynb` file as your
  course asks (LMS upload, or *Submit* in the Assignments tab on the course's JupyterHub).
- `BNLAB_SHORT=1 make lab` shortens every training run for a quick pass. MNIST is cached in
  `~/.cache/bnlab/mnist` (`BNLAB_DATA_DIR` moves it); `python -m bnlab.data` says what to do offline.
- GPU: `.venv/bin/pip install -e '.[gpu]'` on a machine with an NVIDIA GPU.
"""


def _pyproject(source: dict) -> str:
    project = source["project"]
    deps = [d for d in project["dependencies"] if not d.startswith(NOT_FOR_STUDENTS)]
    extras = project.get("optional-dependencies", {})
    gpu, legacy = extras.get("gpu", []), extras.get("legacy", [])
    quoted = lambda items: ", ".join(f'"{item}"' for item in items)  # noqa: E731
    return (
        f'[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "bnlab"\nversion = "{project["version"]}"\n'
        f'description = "Batch Normalization in TensorFlow: the course library (student copy)"\n'
        f'readme = "README.md"\nrequires-python = "{project["requires-python"]}"\n'
        f"dependencies = [{quoted(deps)}]\n\n"
        f"[project.optional-dependencies]\ngpu = [{quoted(gpu)}]\nlegacy = [{quoted(legacy)}]\n\n"
        f'[tool.setuptools.packages.find]\ninclude = ["bnlab", "bnlab.*"]\n'
    )


def _copy_library(target: Path) -> None:
    def ignore(folder, names):
        top = Path(folder).resolve() == (ROOT / "bnlab").resolve()
        return {n for n in names if n == "__pycache__" or n.endswith(".pyc") or (top and n == INSTRUCTOR_FOLDER)}

    shutil.copytree(ROOT / "bnlab", target / "bnlab", ignore=ignore)
    for module in GRADER_MODULES:
        (target / "bnlab" / module).unlink()
    for path in (target / "bnlab").rglob("*.py"):
        text = path.read_text()
        if GRADER_SIDE.search(text):
            path.write_text(GRADER_SIDE.sub("", text))


class BundleError(RuntimeError):
    """The bundle would be incomplete or would hand over instructor material."""


def missing_notebooks(bundle: Path, root: Path = ROOT) -> list[str]:
    """The notebooks release/ must hold (every source notebook but the after-deadline handouts) that
    ``bundle`` lacks."""
    return [
        f"notebooks/{rel} is missing (run `make release`)"
        for rel in release.released_notebooks(root)
        if not (Path(bundle) / "notebooks" / rel).is_file()
    ]


def build(dist: Path = ROOT / "dist", release: Path = ROOT / "release", check_answers: bool = True) -> Path:
    """Write the student bundle folder and its zip into ``dist``; return the folder.

    Raises :class:`BundleError` (and writes no zip) when a released notebook is missing, when
    :func:`leaks` finds instructor material, or (``check_answers``) when :func:`answer_leaks` finds code
    that passes a graded cell."""
    source = tomllib.loads((ROOT / "pyproject.toml").read_text())
    name = f"bnlab-student-{source['project']['version']}"
    target = Path(dist) / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copytree(release, target / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    _copy_library(target)
    if (ROOT / "jupyter").is_dir():  # JupyterLab settings: no news pop-up, no update check
        shutil.copytree(ROOT / "jupyter", target / "jupyter", ignore=shutil.ignore_patterns("README.md"))
    (target / "pyproject.toml").write_text(_pyproject(source))
    (target / "Makefile").write_text(MAKEFILE)
    (target / "README.md").write_text(README)
    missing = missing_notebooks(target)
    if missing:
        raise BundleError("the student bundle lacks released notebooks:\n  " + "\n  ".join(missing))
    problems = leaks(target) + (answer_leaks(target) if check_answers else [])
    if problems:
        raise BundleError("the student bundle would leak instructor material:\n  " + "\n  ".join(problems))
    shutil.make_archive(str(target), "zip", root_dir=dist, base_dir=name)
    return target


def hidden_lines(source: Path = ROOT / "source") -> set[str]:
    """The lines of the hidden tests in the source notebooks (long enough to be telling).

    Solution lines are not listed: the library's lesson demos legitimately share lines with them
    (``use_bias=False``), so solutions are kept out by their markers and by leaving out source/ and
    solutions/."""
    import nbformat

    lines = set()
    for path in Path(source).rglob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                if re.search(r"### (BEGIN|END) HIDDEN TESTS", line):
                    inside = "BEGIN" in line
                    continue
                if inside and len(line.strip()) >= 25:
                    lines.add(line.strip())
    return lines


def leaks(bundle: Path, source: Path = ROOT / "source") -> list[str]:
    """What in ``bundle`` should not reach students: instructor folders and modules, markers, hidden-test lines."""
    bundle, problems = Path(bundle), []
    for folder in ("source", "solutions", "submitted", "autograded", "feedback"):
        if any(p.name == folder and p.is_dir() for p in bundle.rglob(folder)):
            problems.append(f"{folder}/ is in the bundle")
    secret = hidden_lines(source)
    for path in sorted(
        p for p in bundle.rglob("*") if p.is_file() and p.suffix in (".py", ".ipynb", ".md", ".toml", ".txt")
    ):
        text = path.read_text(errors="replace")
        for marker in MARKERS:
            if marker in text:
                problems.append(f"{path.relative_to(bundle)} contains {marker!r}")
        for line in secret:
            if line in text:
                problems.append(f"{path.relative_to(bundle)} contains a hidden-test line: {line[:80]!r}")
                break
    if (bundle / "bnlab" / INSTRUCTOR_FOLDER).exists():
        problems.append(f"the instructor tooling bnlab/{INSTRUCTOR_FOLDER}/ is in the bundle")
    problems += [f"the grader's bnlab/{m} is in the bundle" for m in GRADER_MODULES if (bundle / "bnlab" / m).exists()]
    return problems


# --------------------------------------------------------------------------------------------
# Code that would answer a graded function
# --------------------------------------------------------------------------------------------

# Library modules whose functions are not called with a graded function's arguments: they read, write or
# download files, start nbgrader, or are the checks themselves. None of them builds a layer or a training
# step (tests/test_bundle.py checks that their text holds no layer, variable or tf.nn code).
# (A function that opens a path would take a check's integer argument for a file descriptor, and close it.)
NOT_CALLED = {
    "bnlab.data": "reads, writes and downloads MNIST",
    "bnlab._quiet": "redirects file descriptor 2",
    "bnlab.grading": "the checks themselves",
}


def graded_parts(source: Path | None = None) -> list[dict]:
    """Every graded cell of the exercise that checks a function: ``{"grade_id", "name", "params", "calls"}``,
    ``calls`` being ``(check, args, kwargs)`` of its visible and hidden ``grading.check_*`` calls and ``params``
    the number of positional parameters of the answered function (from its last definition above the cell)."""
    import nbformat

    from bnlab.instructor import notebooks

    params, parts = {}, []
    for cell in nbformat.read(source or notebooks.SOURCE, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                params[node.name] = len(node.args.args)
        if not cell.metadata.get("nbgrader", {}).get("grade"):
            continue
        calls, name = [], None
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr.startswith("check_")
                and node.func.attr not in ("check_choice", "check_number")
                and node.args
                and isinstance(node.args[0], ast.Name)
            ):
                name = node.args[0].id
                calls.append(
                    (
                        node.func.attr,
                        [ast.literal_eval(a) for a in node.args[1:] if not isinstance(a, ast.Name)],
                        {k.arg: ast.literal_eval(k.value) for k in node.keywords},
                    )
                )
        if calls and name in params:
            parts.append(
                {
                    "grade_id": cell.metadata["nbgrader"]["grade_id"],
                    "name": name,
                    "params": params[name],
                    "calls": calls,
                }
            )
    return parts


def _notebook_functions(path: Path) -> list[tuple[str, object]]:
    """``(label, function)`` for every function defined at the top of a code cell of the notebook at ``path``
    (``def`` or a lambda assigned to a name, private names included), defined after the notebook's imports (and
    plain ``name = module.attribute`` aliases) in one namespace."""
    import nbformat

    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    trees = []
    for cell in cells:
        try:
            trees.append(ast.parse(cell.source))
        except SyntaxError:
            trees.append(ast.Module(body=[], type_ignores=[]))
    namespace: dict = {"__name__": "__answer_leaks__"}
    for tree in trees:
        for node in tree.body:
            alias = isinstance(node, ast.Assign) and isinstance(node.value, (ast.Attribute, ast.Name))
            if isinstance(node, (ast.Import, ast.ImportFrom)) or alias:
                with contextlib.suppress(Exception):
                    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    found = []
    for number, tree in enumerate(trees, 1):
        for node in tree.body:
            lambdas = isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda)
            names = [t.id for t in node.targets if isinstance(t, ast.Name)] if lambdas else []
            if isinstance(node, ast.FunctionDef):
                names = [node.name]
            if not names:
                continue
            with contextlib.suppress(Exception):
                exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
                found += [(f"{path.name}, code cell {number}: {name}", namespace[name]) for name in names]
    return found


def _bundle_module(bundle: Path, path: Path, name: str):
    """The module ``name`` as the bundle's file ``path`` defines it: the course's own module where the two files
    are the same, else the bundle's file run as a module of that name (a shipped module that differs, such as
    ``bnlab/questions.py`` without its grader-side block)."""
    import importlib
    import importlib.util

    ours = ROOT / path.relative_to(bundle)
    if ours.is_file() and ours.read_bytes() == path.read_bytes():
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _library_functions(bundle: Path) -> list[tuple[str, object]]:
    """``(label, function)`` for every function of the modules the bundle's ``bnlab`` holds, private names
    included (a student can import ``bnlab.questions._anything`` as well as a public name): module-level
    functions, lambdas bound to a name, and the static and class methods of the modules' classes."""

    found = []
    for path in sorted((Path(bundle) / "bnlab").rglob("*.py")):
        parts = list(path.relative_to(bundle).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if any(name == skip or name.startswith(skip + ".") for skip in NOT_CALLED):
            continue
        module = _bundle_module(Path(bundle), path, name)
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("__"):
                continue
            if inspect.isfunction(obj) and obj.__module__ == name:
                found.append((f"{name}.{attr}", obj))
            elif inspect.isclass(obj) and obj.__module__ == name:
                for method, raw in sorted(vars(obj).items()):
                    if isinstance(raw, (staticmethod, classmethod)):
                        found.append((f"{name}.{attr}.{method}", getattr(obj, method)))
    return found


def _fits(fn, count: int) -> bool:
    try:
        inspect.signature(fn).bind(*range(count))
        return True
    except (TypeError, ValueError):
        return False


# seconds one candidate may take to answer one graded cell (the solution's slowest cell takes a few): a candidate
# that runs longer, a training loop handed integers for instance, counts as failing
PAIR_SECONDS = 120


class _TooLong(Exception):
    pass


def _too_long(signum, frame):
    raise _TooLong


def _try(fn, part) -> bool:
    """Whether every check of ``part`` passes with ``fn`` as the answer (within :data:`PAIR_SECONDS`)."""
    import signal

    from bnlab import grading

    previous = signal.signal(signal.SIGALRM, _too_long)
    signal.alarm(PAIR_SECONDS)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for check, args, kwargs in part["calls"]:
                getattr(grading, check)(fn, *args, **kwargs)
    except Exception:  # noqa: BLE001 - failing, in any way, is what is wanted
        return False
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return True


def passing_parts(fn, parts: list[dict]) -> list[str]:
    """The grade ids of ``parts`` whose checks all pass with ``fn`` as the answer."""
    return [part["grade_id"] for part in parts if _fits(fn, part["params"]) and _try(fn, part)]


def _candidates(bundle: Path) -> list[tuple[str, object]]:
    found = [
        item
        for nb in sorted((Path(bundle) / "notebooks").rglob("*.ipynb"))
        if ".ipynb_checkpoints" not in nb.parts
        for item in _notebook_functions(nb)
    ]
    return found + _library_functions(bundle)


def _answer_worker(bundle: Path, start: int, only: tuple[str, ...] = ()) -> None:
    """Try the (candidate, part) pairs from number ``start`` on, printing ``try N`` before each and
    ``pass N LABEL GRADE_ID`` for each that passes (the parent restarts after a pair that kills the process).
    ``only``: the candidates whose label starts with one of these (all by default)."""
    parts, number = graded_parts(), 0
    for label, fn in _candidates(bundle):
        if only and not label.startswith(only):
            continue
        for part in parts:
            if not _fits(fn, part["params"]):
                continue
            if number >= start:
                print(f"try {number}", flush=True)
                if _try(fn, part):
                    print(f"pass {number} {label}\t{part['grade_id']}", flush=True)
            number += 1
    print("done", flush=True)


def answer_leaks(bundle: Path, only: tuple[str, ...] = ()) -> list[str]:
    """Functions of the bundle (its notebooks' code cells, its library, private names included) that pass a
    graded cell's checks; ``only`` limits the candidates to labels that start with one of these (planted leaks).

    The pairs run in a child process: some wrong answers abort TensorFlow itself (``tf.nn.conv2d`` on
    a dense layer's 2-D input), and such a pair counts as failing; the child then resumes after it."""
    import subprocess

    problems, start = [], 0
    while True:
        child = subprocess.run(
            [sys.executable, "-m", "bnlab.instructor.bundle", "--answer-worker", str(bundle), "--start", str(start)]
            + [arg for prefix in only for arg in ("--only", prefix)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        tried = None
        for line in child.stdout.splitlines():
            if line.startswith("try "):
                tried = int(line.split()[1])
            elif line.startswith("pass "):
                label, grade_id = line.split(" ", 2)[2].split("\t")
                problems.append(f"{label} passes the checks of graded cell {grade_id!r}")
        if "done" in child.stdout.splitlines():
            return problems
        if tried is None:
            raise BundleError(f"the answer check could not start:\n{child.stderr[-2000:]}")
        start = tried + 1  # that pair killed the process: it did not pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    parser.add_argument("--answer-worker", type=Path, help=argparse.SUPPRESS)  # answer_leaks' child process
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--only", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.answer_worker:
        _answer_worker(args.answer_worker, args.start, tuple(args.only))
        return 0
    try:
        target = build(args.dist)
    except BundleError as exc:
        print(f"make bundle: refused: {exc}", file=sys.stderr)
        return 1
    print(f"student bundle: {target}/ and {target}.zip (no source/, solutions/, hidden tests or working answers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
