"""``nbgrader`` as the course runs it: ``python -m bnlab.instructor.nbgrader ARGS`` is ``nbgrader ARGS``,
started sooner.

nbgrader imports nbformat, nbformat imports jsonschema, and jsonschema's format checkers import
``rfc3987_syntax`` when it is installed (``jsonschema[format-nongpl]`` installs it, and nbformat
asks for that). Its import builds dozens of Earley parsers, a large share of nbgrader's start-up,
paid once per submission when a class is graded one process per student
(python-jsonschema/jsonschema#1428 reports the same cost). The parsers serve only the ``iri`` and
``iri-reference`` formats, which no notebook schema uses, and neither nbformat, nbconvert nor
nbgrader validates with a format checker (``tests/instructor/test_nbgrader_cli.py`` checks both), so this
entry point hides the module before nbgrader is imported: jsonschema then skips those two checks.

:func:`nbgrader_command`, and so every nbgrader call the course makes (release,
grading, the LMS exports, the tests), runs through here; the Makefile's ``make feedback`` too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SKIPPED_MODULES = ("rfc3987_syntax",)


def skip_slow_imports() -> None:
    """Make ``import rfc3987_syntax`` raise ImportError (jsonschema catches it) in this process."""
    for name in SKIPPED_MODULES:
        sys.modules.setdefault(name, None)


def main(argv: list[str] | None = None):
    """Run nbgrader's command line with ``argv`` (default: this process's arguments)."""
    skip_slow_imports()
    from nbgrader.apps.nbgraderapp import main as nbgrader_main

    sys.argv = ["nbgrader", *(sys.argv[1:] if argv is None else argv)]
    return nbgrader_main()


def nbgrader_env(extra: dict | None = None) -> dict:
    """The environment nbgrader needs: this interpreter's bin first on PATH (for ``alembic``)."""
    env = {**os.environ, **(extra or {})}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def nbgrader_command(*args: str, root: Path) -> list[str]:
    """``nbgrader ARGS`` of this interpreter's environment, for the course in folder ``root`` (through
    :mod:`bnlab.instructor.nbgrader`, which starts sooner than the ``nbgrader`` script)."""
    return [sys.executable, "-m", "bnlab.instructor.nbgrader", *args, f"--CourseDirectory.root={root}"]


def nbgrader(*args: str, root: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in course directory ``root`` with the course's config (``env`` adds variables)."""
    result = subprocess.run(
        nbgrader_command(*args, root=root), cwd=root, env=nbgrader_env(env), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


if __name__ == "__main__":
    sys.exit(main())
