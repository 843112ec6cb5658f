"""The student bundle: what it holds, what it must never hold, and that it installs.

Installing the bundle for real downloads TensorFlow (about 600 MB), too slow for CI. Instead the
bundle is built into a wheel with the venv's setuptools (this validates its ``pyproject.toml``),
the wheel is installed without dependencies into a scratch folder, and a fresh interpreter imports
``bnlab`` from there (the dependencies it finds are the venv's, the same pinned versions). Not
covered: resolving the dependencies from PyPI on a student's machine.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from bnlab import bundle, exercise
from bnlab.release import ROOT


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return bundle.build(tmp_path_factory.mktemp("dist"))


def test_bundle_holds_the_release_notebooks_library_and_setup(built):
    released = {p.relative_to(ROOT / "release") for p in (ROOT / "release").rglob("*.ipynb")
                if ".ipynb_checkpoints" not in p.parts}
    shipped = {p.relative_to(built / "notebooks") for p in (built / "notebooks").rglob("*.ipynb")}
    assert released and shipped == released
    assert (built / "bnlab" / "data.py").exists() and (built / "bnlab" / "__init__.py").exists()
    for name in ("pyproject.toml", "Makefile", "README.md"):
        assert (built / name).exists()
    readme = (built / "README.md").read_text()
    assert "python3.11 -m venv .venv && .venv/bin/pip install -e ." in readme and "make lab" in readme
    with zipfile.ZipFile(f"{built}.zip") as zf:
        assert f"{built.name}/notebooks/{exercise.RELATIVE}" in zf.namelist()


def test_bundle_has_no_solutions_hidden_tests_or_instructor_tools(built):
    assert bundle.leaks(built) == []
    names = {p.name for p in built.rglob("*")}
    assert not names & {"source", "solutions", "submitted", "autograded", "gradebook.db", "nbgrader_config.py"}
    assert not names & {f"{m}.py" for m in bundle.INSTRUCTOR_ONLY}
    hidden = bundle.hidden_lines()
    assert hidden, "the source notebook should have hidden tests for this check to mean something"
    text = "\n".join(p.read_text(errors="replace") for p in built.rglob("*") if p.is_file() and p.suffix != ".zip")
    assert not [line for line in hidden if line in text]
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text


def test_leak_check_catches_a_source_notebook(built, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(built, copy)
    shutil.copy(exercise.SOURCE, copy / "notebooks" / "oops.ipynb")
    (copy / "solutions").mkdir()
    problems = bundle.leaks(copy)
    assert "solutions/ is in the bundle" in problems
    assert any("oops.ipynb contains 'BEGIN SOLUTION'" in p for p in problems)
    assert any("oops.ipynb contains a hidden-test line" in p for p in problems)


def test_no_shipped_module_imports_an_instructor_module(built):
    import ast

    for path in (built / "bnlab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}"] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                parts = name.split(".")
                assert not (parts[0] == "bnlab" and len(parts) > 1 and parts[1] in bundle.INSTRUCTOR_ONLY), (path, name)


@pytest.mark.slow
def test_bundle_builds_a_wheel_that_installs_and_imports(built, tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(built)],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    (wheel,) = wheels.glob("bnlab-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith("METADATA"))).decode()
        shipped = zf.namelist()
    assert "Requires-Dist: tensorflow==2.21.*" in metadata and "nbval" not in metadata and "dask" not in metadata
    assert "bnlab/monitor/__init__.py" in shipped and "bnlab/autograde.py" not in shipped
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    code = ("import bnlab, bnlab.data, importlib.util as u; print(bnlab.__file__); "
            "print(u.find_spec('bnlab.autograde') is None, u.find_spec('bnlab.pipeline') is None)")
    # -S: no .pth files, so the repository's editable install of bnlab cannot answer instead of the wheel;
    # the dependencies come from the venv's site-packages, put after the wheel's folder
    path = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    out = subprocess.run([sys.executable, "-S", "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": path}).stdout.split()
    assert out[0].startswith(str(site)) and out[1:] == ["True", "True"], out


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_bundle_makefile_lab_target_runs_setup_then_data_then_jupyter(built):
    plan = subprocess.run(["make", "-n", "lab"], cwd=built, capture_output=True, text=True, check=True).stdout
    assert plan.index("pip install") < plan.index("-m bnlab.data") < plan.index("jupyter lab --ServerApp.root_dir=notebooks")
    if (ROOT / "jupyter" / "overrides.json").exists():  # the course's quiet JupyterLab settings travel along
        assert (built / "jupyter" / "overrides.json").exists()
        assert plan.index("overrides.d/bnlab-course.json") < plan.index("jupyter lab --ServerApp")
