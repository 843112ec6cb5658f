"""`python -m bnlab.instructor.nbgrader` is nbgrader without the slow import of rfc3987_syntax, and loses nothing
by it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bnlab.instructor import nbgrader as nbgrader_runner
from bnlab.instructor import notebooks

ROOT = Path(__file__).resolve().parents[2]
IRI_FORMATS = {"iri", "iri-reference"}
# the packages that read, validate, execute and grade notebooks in nbgrader's process
PACKAGES = ("nbformat", "nbconvert", "nbclient", "nbgrader")


def _package_dir(name: str) -> Path:
    return Path(importlib.util.find_spec(name).origin).parent


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_course_runs_nbgrader_through_the_cli(tmp_path):
    command = nbgrader_runner.nbgrader_command("--version", root=tmp_path)
    assert command[:3] == [sys.executable, "-m", "bnlab.instructor.nbgrader"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    import nbgrader

    assert result.returncode == 0, result.stderr
    assert nbgrader.__version__ in result.stdout + result.stderr


def test_the_cli_keeps_rfc3987_syntax_out_and_notebooks_still_validate():
    if importlib.util.find_spec("rfc3987_syntax") is None:
        pytest.skip("rfc3987_syntax is not installed here, so there is nothing for the cli to keep out")
    probe = (
        "import sys, json\n{setup}\nimport nbformat, nbgrader.apps.nbgraderapp\n"
        f"nb = nbformat.read({str(ROOT / 'source' / notebooks.RELATIVE)!r}, as_version=4)\n"
        "nbformat.validate(nb)\n"
        "print(json.dumps(sys.modules.get('rfc3987_syntax') is not None))"
    )
    plain = json.loads(_python(probe.format(setup="")))
    skipped = json.loads(
        _python(probe.format(setup="from bnlab.instructor.nbgrader import skip_slow_imports; skip_slow_imports()"))
    )
    assert plain is True, "jsonschema no longer imports rfc3987_syntax with nbformat: bnlab.instructor.nbgrader can go"
    assert skipped is False


def _format_keywords(node) -> set[str]:
    """Every JSON Schema ``format`` keyword's value in a schema (a property named "format" is a dict, skipped)."""
    found = set()
    if isinstance(node, dict):
        if isinstance(node.get("format"), str):
            found.add(node["format"])
        for value in node.values():
            found |= _format_keywords(value)
    elif isinstance(node, list):
        for value in node:
            found |= _format_keywords(value)
    return found


def test_no_notebook_schema_uses_the_formats_the_skipped_module_checks():
    schemas = [p for name in PACKAGES for p in _package_dir(name).rglob("*.json") if "schema" in p.name]
    assert any(p.parent.name == "v4" for p in schemas), "nbformat's v4 schemas were not found"
    for path in schemas:
        used = _format_keywords(json.loads(path.read_text()))
        assert not used & IRI_FORMATS, (
            f"{path} validates {used & IRI_FORMATS}: bnlab.instructor.nbgrader must not skip it"
        )


def test_no_grading_package_validates_with_a_format_checker():
    for name in PACKAGES:
        for path in _package_dir(name).rglob("*.py"):
            text = path.read_text(errors="replace")
            for word in ("format_checker", "FormatChecker", "FORMAT_CHECKER"):
                assert word not in text, (
                    f"{path} uses {word}: its formats may need the module bnlab.instructor.nbgrader skips"
                )
