"""``nbgrader`` as the course runs it: ``python -m bnlab.nbgrader_cli ARGS`` is ``nbgrader ARGS``,
started about 2.5 s sooner.

nbgrader imports nbformat, nbformat imports jsonschema, and jsonschema's format checkers import
``rfc3987_syntax`` when it is installed (``jsonschema[format-nongpl]`` installs it, and nbformat
asks for that). Its import builds some 35 Earley parsers: 2.5 s on a 2-core CPU, more than half of
nbgrader's start-up, paid once per submission when a class is graded one process per student
(python-jsonschema/jsonschema#1428 reports the same cost). The parsers serve only the ``iri`` and
``iri-reference`` formats, which no notebook schema uses, and neither nbformat, nbconvert nor
nbgrader validates with a format checker (``tests/test_nbgrader_cli.py`` checks both), so this
entry point hides the module before nbgrader is imported: jsonschema then skips those two checks.

:func:`bnlab.release.nbgrader_command`, and so every nbgrader call the course makes (release,
grading, the LMS exports, the tests), runs through here; the Makefile's ``make feedback`` too.
"""
from __future__ import annotations

import sys

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


if __name__ == "__main__":
    sys.exit(main())
