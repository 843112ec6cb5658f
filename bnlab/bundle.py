"""What students receive: the released notebooks and the course library, nothing of the instructor's.

``python -m bnlab.bundle`` (``make bundle``) writes ``dist/bnlab-student-VERSION/`` and its
``.zip``: the notebooks of ``release/`` under ``notebooks/``, the ``bnlab`` package without the
instructor's tooling (grading pipeline, release, exports, benchmarks), the data fetcher
(``python -m bnlab.data``), a minimal ``pyproject.toml`` with the course's pinned versions, a
``Makefile`` and a ``README.md``. Set-up is two commands::

    python3.11 -m venv .venv && .venv/bin/pip install -e .
    make lab        # or: .venv/bin/python -m bnlab.data && .venv/bin/jupyter lab notebooks

There is no ``source/``, no ``solutions/`` and no hidden test in it; :func:`leaks` checks that, and
``tests/test_bundle.py`` runs it on a fresh bundle.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tomllib
from pathlib import Path

from bnlab.release import ROOT

# modules only instructors run (they read source/ or drive nbgrader); never shipped to students
INSTRUCTOR_ONLY = frozenset({"autograde", "gradejob", "graderecord", "sandbox", "lms", "bundle", "pipeline", "release",
                             "bench", "bench_grading", "bench_monitor", "feedback"})
# packages students do not need (the course's notebook tests, the parallel grader)
NOT_FOR_STUDENTS = ("nbval", "dask")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "BEGIN MARK SCHEME")

MAKEFILE = """\
# Batch Normalization in TensorFlow, student copy. `make lab` sets up and opens the notebooks.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(CURDIR)/.venv/bin
PORT ?= 8888
export PATH := $(BIN):$(PATH)
.PHONY: setup data lab
setup: .venv/.installed
.venv/.installed: pyproject.toml
\t@test -x $(BIN)/python || $(PYTHON) -m venv .venv
\t$(BIN)/python -m pip install --progress-bar off -e .
\t@touch $@
data: setup  ## fetch and verify MNIST (cached in ~/.cache/bnlab/mnist)
\t$(BIN)/python -m bnlab.data
lab: setup data  ## open JupyterLab on the notebooks (with the course's quiet JupyterLab settings)
\tinstall -D -m 644 jupyter/overrides.json .venv/share/jupyter/lab/settings/overrides.d/bnlab-course.json
\tinstall -D -m 644 jupyter/jupyter_lab_config.json .venv/etc/jupyter/jupyter_lab_config.json
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
--LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate`.

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
    gpu = project.get("optional-dependencies", {}).get("gpu", [])
    quoted = lambda items: ", ".join(f'"{item}"' for item in items)  # noqa: E731
    return (f'[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "bnlab"\nversion = "{project["version"]}"\n'
            f'description = "Batch Normalization in TensorFlow: the course library (student copy)"\n'
            f'readme = "README.md"\nrequires-python = "{project["requires-python"]}"\n'
            f"dependencies = [{quoted(deps)}]\n\n"
            f"[project.optional-dependencies]\ngpu = [{quoted(gpu)}]\n\n"
            f'[tool.setuptools.packages.find]\ninclude = ["bnlab", "bnlab.*"]\n')


def _copy_library(target: Path) -> None:
    def ignore(folder, names):
        top = Path(folder).resolve() == (ROOT / "bnlab").resolve()
        return {n for n in names if n == "__pycache__" or n.endswith(".pyc")
                or (top and n.endswith(".py") and n[:-3] in INSTRUCTOR_ONLY)}

    shutil.copytree(ROOT / "bnlab", target / "bnlab", ignore=ignore)


def build(dist: Path = ROOT / "dist", release: Path = ROOT / "release") -> Path:
    """Write the student bundle folder and its zip into ``dist``; return the folder."""
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
    problems = leaks(target)
    if problems:
        raise RuntimeError("the student bundle would leak instructor material:\n  " + "\n  ".join(problems))
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
    for path in sorted(p for p in bundle.rglob("*") if p.is_file() and p.suffix in (".py", ".ipynb", ".md", ".toml", ".txt")):
        text = path.read_text(errors="replace")
        for marker in MARKERS:
            if marker in text:
                problems.append(f"{path.relative_to(bundle)} contains {marker!r}")
        for line in secret:
            if line in text:
                problems.append(f"{path.relative_to(bundle)} contains a hidden-test line: {line[:80]!r}")
                break
    for path in (bundle / "bnlab").glob("*.py"):
        if path.stem in INSTRUCTOR_ONLY:
            problems.append(f"instructor module bnlab/{path.name} is in the bundle")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    args = parser.parse_args(argv)
    target = build(args.dist)
    print(f"student bundle: {target}/ and {target}.zip (no source/, solutions/ or hidden tests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
