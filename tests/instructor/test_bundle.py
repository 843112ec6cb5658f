"""The student bundle: what it holds, what it must never hold, and that it installs.

Installing the bundle for real downloads TensorFlow, too slow for CI. Instead the
bundle is built into a wheel with the venv's setuptools (this validates its ``pyproject.toml``),
the wheel is installed without dependencies into a scratch folder, and a fresh interpreter imports
``bnlab`` from there (the dependencies it finds are the venv's, the same pinned versions). Not
covered: resolving the dependencies from PyPI on a student's machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from bnlab.instructor import bundle, notebooks
from bnlab.instructor.notebooks import ROOT


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return bundle.build(tmp_path_factory.mktemp("dist"), check_answers=False)  # answer_leaks: its own test


def test_bundle_holds_the_release_notebooks_library_and_setup(built):
    released = {
        p.relative_to(ROOT / "release")
        for p in (ROOT / "release").rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    }
    shipped = {p.relative_to(built / "notebooks") for p in (built / "notebooks").rglob("*.ipynb")}
    assert released and shipped == released
    assert (built / "bnlab" / "data.py").exists() and (built / "bnlab" / "__init__.py").exists()
    for name in ("pyproject.toml", "Makefile", "README.md"):
        assert (built / name).exists()
    readme = (built / "README.md").read_text()
    assert "python3.11 -m venv .venv && .venv/bin/pip install -e ." in readme and "make lab" in readme
    with zipfile.ZipFile(f"{built}.zip") as zf:
        assert f"{built.name}/notebooks/{notebooks.RELATIVE}" in zf.namelist()


def test_bundle_has_no_solutions_hidden_tests_or_instructor_tools(built):
    assert bundle.leaks(built) == []
    names = {p.name for p in built.rglob("*")}
    assert not names & {"source", "solutions", "submitted", "autograded", "gradebook.db", "nbgrader_config.py"}
    assert not (built / "bnlab" / bundle.INSTRUCTOR_FOLDER).exists()
    assert (ROOT / "bnlab" / bundle.INSTRUCTOR_FOLDER).is_dir(), "the check above needs the folder to exist"
    assert [m for m in bundle.GRADER_MODULES if (ROOT / "bnlab" / m).is_file()] == list(bundle.GRADER_MODULES)
    assert not [m for m in bundle.GRADER_MODULES if (built / "bnlab" / m).exists()]  # the re-run's processes
    hidden = bundle.hidden_lines()
    assert hidden, "the source notebook should have hidden tests for this check to mean something"
    text = "\n".join(p.read_text(errors="replace") for p in built.rglob("*") if p.is_file() and p.suffix != ".zip")
    assert not [line for line in hidden if line in text]
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text


def test_leak_check_catches_a_source_notebook(built, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(built, copy)
    shutil.copy(notebooks.SOURCE, copy / "notebooks" / "oops.ipynb")
    (copy / "solutions").mkdir()
    shutil.copy(ROOT / "bnlab" / "grading" / "judge.py", copy / "bnlab" / "grading" / "judge.py")
    problems = bundle.leaks(copy)
    assert "solutions/ is in the bundle" in problems
    assert "the grader's bnlab/grading/judge.py is in the bundle" in problems
    assert any("oops.ipynb contains 'BEGIN SOLUTION'" in p for p in problems)
    assert any("oops.ipynb contains a hidden-test line" in p for p in problems)


def test_every_shipped_module_imports_in_the_bundle(built):
    """Nothing the student's copy ships reaches for the instructor tooling it leaves out."""
    modules = [
        ".".join(p.relative_to(built).with_suffix("").parts).removesuffix(".__init__")
        for p in (built / "bnlab").rglob("*.py")
        if p.name != "__main__.py"
    ]
    assert "bnlab.grading.checks" in modules and len(modules) > 20
    code = (
        f"import importlib, bnlab\nassert bnlab.__file__.startswith({str(built)!r}), bnlab.__file__\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(built)}
    result = subprocess.run([sys.executable, "-c", code], cwd=built, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_bundle_holds_no_teaching_message_of_the_multiple_choice_questions(built):
    from bnlab import questions

    text = "\n".join(p.read_text(errors="replace") for p in built.rglob("*") if p.suffix in (".py", ".ipynb", ".md"))
    messages = [m for question in questions.TEACH.values() for m in question.values()]
    assert messages and not [m[:60] for m in messages if m[:60] in text]
    shipped = (built / "bnlab" / "questions.py").read_text()
    assert "GRADER SIDE" not in shipped
    namespace: dict = {}
    exec(compile(shipped, "questions.py", "exec"), namespace)  # the student's copy still works, and says nothing
    assert namespace["TEACH"] == {} and "not the expected answer" in namespace["teach"]("statistics", "b")


# -- code that would answer a graded function ------------------------------------------------


def test_graded_parts_cover_every_graded_function_cell():
    parts = bundle.graded_parts()
    graded = [
        c
        for c in notebooks.read().cells
        if c.metadata.get("nbgrader", {}).get("grade")
        and c.cell_type == "code"
        and "check_choice" not in c.source
        and "check_number" not in c.source
    ]
    assert {p["grade_id"] for p in parts} == {notebooks.grade_id(c) for c in graded}
    assert {(p["name"], p["params"]) for p in parts} == {
        ("fully_connected", 2),
        ("conv_layer", 2),
        ("train_step", 4),
        ("fully_connected", 3),
        ("conv_layer", 3),
        ("fixed_fully_connected", 2),
        ("batchnorm_backward", 4),
    }


def test_no_function_of_the_bundle_passes_a_graded_cell(built):
    """Every function of the released notebooks' code cells and of the bundle's library, pasted as an answer."""
    assert bundle.answer_leaks(built) == []


@pytest.mark.slow
def test_the_answer_check_catches_the_solutions(built, tmp_path):
    """The check is not vacuous: the solutions notebook, shipped by mistake, passes every graded cell."""
    copy = tmp_path / "bundle"
    shutil.copytree(built, copy)
    shutil.copy(notebooks.SOLUTIONS, copy / "notebooks" / "oops.ipynb")
    found = bundle.answer_leaks(copy)
    passed = {line.rsplit("graded cell ", 1)[1].strip("'") for line in found if line.startswith("oops.ipynb")}
    assert passed == {p["grade_id"] for p in bundle.graded_parts()}, found


def _planted(cell_id: str, prefix: str) -> str:
    """The solution's code cell ``cell_id`` with each function it defines renamed ``prefix + name`` (calls too)."""
    import ast

    import nbformat

    cell = next(c for c in nbformat.read(notebooks.SOLUTIONS, as_version=4).cells if notebooks.grade_id(c) == cell_id)
    tree = ast.parse(cell.source)
    tree.body = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))]  # PLANT_HEADER's
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in names:
            node.name = prefix + node.name
        elif isinstance(node, ast.Name) and node.id in names:
            node.id = prefix + node.id
    return ast.unparse(tree)


PLANT_HEADER = (
    "\nimport numpy as np\nimport bnlab as _bnlab\nfrom bnlab import nn, training\ntf = _bnlab.tf\nkeras = tf.keras\n"
)


@pytest.mark.slow
def test_the_answer_check_catches_a_planted_leak_of_each_kind(built, tmp_path):
    """Every graded function answered by code hidden where a student can still reach it: private functions of a
    shipped module, Part 3's fix among the Part 3 helpers, a static method, a lambda in a notebook cell."""
    import nbformat

    copy = tmp_path / "bundle"
    shutil.copytree(built, copy)
    tables, questions = copy / "bnlab" / "tables.py", copy / "bnlab" / "questions.py"
    planted = [_planted(cell, f"_planted_{cell}_") for cell in ("keras_layers", "keras_training", "nn_layers")]
    backward = _planted("backward_answer", "").replace("\n", "\n    ")
    tables.write_text(
        tables.read_text()
        + PLANT_HEADER
        + "\n\n".join(planted)
        + f"\n\n\nclass _Kept:\n    @staticmethod\n    {backward}\n"
    )
    questions.write_text(questions.read_text() + PLANT_HEADER + _planted("diagnose_fix", "_classmate_"))
    release = nbformat.read(copy / "notebooks" / notebooks.RELATIVE, as_version=4)
    release.cells.append(
        nbformat.v4.new_code_cell(
            "_dense = lambda prev_layer, num_units: keras.layers.ReLU()(keras.layers.BatchNormalization()("
            "keras.layers.Dense(num_units, use_bias=False)(prev_layer)))"
        )
    )
    nbformat.write(release, copy / "notebooks" / "oops.ipynb")
    found = bundle.answer_leaks(copy, only=("bnlab.tables._", "bnlab.questions._classmate_", "oops.ipynb"))
    passed: dict[str, set] = {}
    for line in found:
        label, grade_id = line.split(" passes the checks of graded cell ")
        passed.setdefault(label, set()).add(grade_id.strip("'"))
    parts = {p["grade_id"]: p["name"] for p in bundle.graded_parts()}
    assert set().union(*passed.values()) == set(parts), found
    assert "test_diagnose_fix" in passed["bnlab.questions._classmate_fixed_fully_connected"]
    backward = {g for g, name in parts.items() if name == "batchnorm_backward"}
    assert passed["bnlab.tables._Kept.batchnorm_backward"] == backward
    lambdas = [label for label in passed if label.startswith("oops.ipynb") and label.endswith(": _dense")]
    assert lambdas and "test_keras_fc_structure" in passed[lambdas[0]]


def test_modules_left_uncalled_by_the_answer_check_build_no_layer():
    """bundle.NOT_CALLED is not a hiding place: those modules hold no layer, variable or tf.nn code."""
    layer_code = re.compile(r"keras\.layers\.|BatchNormalization|tf\.Variable|get_variable|tf\.nn\.|\.assign\(")
    for name in bundle.NOT_CALLED:
        if name == "bnlab.grading":  # the checks and their probes (they build the reference model)
            continue
        path = ROOT / Path(*name.split(".")).with_suffix(".py")
        assert path.exists() and not layer_code.search(path.read_text()), name


def test_make_bundle_refuses_a_bundle_without_a_released_notebook(tmp_path, capsys):
    release = tmp_path / "release"
    shutil.copytree(ROOT / "release", release)
    (release / notebooks.RELATIVE).unlink()
    with pytest.raises(bundle.BundleError, match=re.escape(f"notebooks/{notebooks.RELATIVE} is missing")):
        bundle.build(tmp_path / "dist", release=release, check_answers=False)
    assert not list((tmp_path / "dist").glob("*.zip"))


def test_make_bundle_exits_non_zero_with_the_reason(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise bundle.BundleError("the student bundle lacks released notebooks:\n  notebooks/x.ipynb is missing")

    monkeypatch.setattr(bundle, "build", refuse)
    assert bundle.main(["--dist", str(tmp_path)]) == 1
    assert "refused" in capsys.readouterr().err


def test_the_after_deadline_appendix_is_not_in_the_bundle_but_its_extra_is(built):
    from bnlab.instructor import release

    later = release.after_deadline()
    assert later and all(not (built / "notebooks" / rel).exists() for rel in later)
    assert 'legacy = ["tf_keras' in (built / "pyproject.toml").read_text()


@pytest.mark.slow
def test_bundle_builds_a_wheel_that_installs_and_imports(built, tmp_path):
    wheels, site, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "bundle"
    shutil.copytree(built, source, ignore=shutil.ignore_patterns("*.zip"))  # the build writes build/ into its folder
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("bnlab-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith("METADATA"))).decode()
        shipped = zf.namelist()
    assert "Requires-Dist: tensorflow==2.21.*" in metadata and "nbval" not in metadata and "dask" not in metadata
    assert "bnlab/monitor/__init__.py" in shipped and not [n for n in shipped if n.startswith("bnlab/instructor/")]
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    code = (
        "import bnlab, bnlab.data, importlib.util as u; print(bnlab.__file__); "
        "print(u.find_spec('bnlab.instructor') is None, u.find_spec('bnlab.grading.checks') is None)"
    )
    # -S: no .pth files, so the repository's editable install of bnlab cannot answer instead of the wheel;
    # the dependencies come from the venv's site-packages, put after the wheel's folder
    path = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
    ).stdout.split()
    assert out[0].startswith(str(site)) and out[1:] == ["True", "False"], out


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_bundle_makefile_lab_target_runs_setup_then_data_then_jupyter(built):
    plan = subprocess.run(["make", "-n", "lab"], cwd=built, capture_output=True, text=True, check=True).stdout
    assert (
        plan.index("pip install")
        < plan.index("-m bnlab.data")
        < plan.index("jupyter lab --ServerApp.root_dir=notebooks")
    )
    if (ROOT / "jupyter" / "overrides.json").exists():  # the course's quiet JupyterLab settings travel along
        assert (built / "jupyter" / "overrides.json").exists()
        assert plan.index("overrides.d/bnlab-course.json") < plan.index("jupyter lab --ServerApp")
    # nbgrader in the student's JupyterLab finds a configuration (no "No nbgrader_config.py file found" warning)
    assert plan.index("etc/jupyter/nbgrader_config.py") < plan.index("jupyter lab --ServerApp")
    assert (built / "jupyter" / "nbgrader_student_config.py").exists()


def test_the_students_nbgrader_finds_its_configuration_and_stays_quiet(built, tmp_path):
    """nbgrader's apps warn at JupyterLab's start without a configuration; the bundle's one is found and read (and
    makes the command line's Validate list the answers graded only after submission)."""
    etc = tmp_path / "etc" / "jupyter"
    etc.mkdir(parents=True)
    shutil.copy(built / "jupyter" / "nbgrader_student_config.py", etc / "nbgrader_config.py")
    code = (
        "from nbgrader.apps.baseapp import NbGrader\nfrom nbgrader.validator import Validator\n"
        "app = NbGrader()\napp.load_config_file()\n"
        "print(app.config.Execute.timeout, app.config.CourseDirectory.course_id, "
        "getattr(Validator, 'explains_later_grading', False))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "JUPYTER_CONFIG_PATH": str(etc)},
    )  # where .venv/etc/jupyter stands
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["300", "batchnorm", "True"]  # `nbgrader validate` lists what is graded later
    assert "No nbgrader_config.py file found" not in result.stdout + result.stderr


# -- what students read speaks of the subject ------------------------------------------------

# names of the instructor's tools, which students neither have nor need, and words of the grading machinery
INSTRUCTOR_ONLY = re.compile(r"bnlab[./]instructor|answer_leaks|make bundle|make (?:autograde|collect|release)")
PLUMBING = re.compile(
    r"cost(?:s)? points|zero points|grader[- ]side|hidden[- ]tests?\b|gradebook|formgrader|autograd", re.I
)


def _student_text(root: Path) -> dict[str, str]:
    """``{path: text}`` of what a student reads in ``root``: the library's modules, the notebooks' cells
    (source and outputs, not nbgrader's cell metadata) and the Markdown files; the JupyterLab and nbgrader
    configuration files of ``jupyter/`` are settings, not text."""
    import nbformat

    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if not path.is_file() or rel.startswith("jupyter/"):
            continue
        if path.suffix in (".py", ".md"):
            found[rel] = path.read_text(errors="replace")
        elif path.suffix == ".ipynb":
            cells = nbformat.read(path, as_version=4).cells
            outputs = [o.get("text", "") + str(o.get("data", {})) for c in cells for o in c.get("outputs", [])]
            found[rel] = "\n".join([c.source for c in cells] + outputs)
    return found


def _plumbing(text: str) -> set[str]:
    words = {m.group(0).lower() for pattern in (INSTRUCTOR_ONLY, PLUMBING) for m in pattern.finditer(text)}
    return {
        "bnlab.instructor" if w.startswith("bnlab") else "hidden test" if w.startswith("hidden") else w for w in words
    }


def test_what_students_read_names_no_instructor_tool_and_no_grading_plumbing(built):
    found = {rel: words for rel, text in _student_text(built).items() if (words := _plumbing(text))}
    assert found == {}


def test_the_plumbing_scan_finds_what_it_looks_for(built, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(built, copy, ignore=shutil.ignore_patterns("*.zip"))
    (copy / "bnlab" / "tables.py").write_text('"""Log noise would cost points under nbgrader (bnlab.instructor)."""\n')
    (copy / "notebooks" / "note.md").write_text("After grading, see the gradebook and the hidden tests.\n")
    found = _student_text(copy)
    assert _plumbing(found["bnlab/tables.py"]) == {"cost points", "bnlab.instructor"}
    assert _plumbing(found["notebooks/note.md"]) == {"gradebook", "hidden test"}


# -- what the released notebooks name exists in the bundle ----------------------------------

EXTERNAL = {
    "11_deep_learning.ipynb"
}  # the textbook's companion notebook, cited with its repository (ageron/handson-ml)
FORBIDDEN = [r"earlier version", r"this lesson corrects", r"skip_when_grading=True` leaves", r"README's \*Benchmark"]


def _released_text(built) -> list[tuple[str, str]]:
    import nbformat

    return [
        (str(p.relative_to(built)), cell.source)
        for p in sorted((built / "notebooks").rglob("*.ipynb"))
        for cell in nbformat.read(p, as_version=4).cells
    ]


def _unresolved(built) -> list[tuple[str, str, str]]:
    """``(notebook, kind, name)`` of what the bundle's notebooks name that the bundle lacks, and their history or
    grading plumbing."""
    import tomllib

    names = {p.name for p in built.rglob("*")}
    extras = set(tomllib.loads((built / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    headings = {h.strip() for h in re.findall(r"^#+\s+(.*)$", (built / "README.md").read_text(), re.M)}
    targets = set(re.findall(r"^([a-z-]+):", (built / "Makefile").read_text(), re.M))
    wrong = []
    for where, text in _released_text(built):
        for path in re.findall(r"`([\w.-]*(?:/[\w.-]*)*\.(?:py|ipynb|toml|json|md)|bnlab/[\w/.-]*)`", text):
            found = (built / path.rstrip("/")).exists() or Path(path).name in names
            if not found and Path(path).name not in EXTERNAL:
                wrong.append((where, "path", path))
        for extra in re.findall(r"\.\[([\w,-]+)\]", text):
            wrong += [(where, "extra", e) for e in extra.split(",") if e not in extras]
        for section in re.findall(r"README(?:'s)?,? \*([^*]+)\*", text):
            if section not in headings:
                wrong.append((where, "README section", section))
        for target in re.findall(r"`make ([a-z-]+)", text):
            if target not in targets:
                wrong.append((where, "make target", target))
        for module in re.findall(r"python -m (bnlab(?:\.\w+)*)", text):
            if not (built / Path(*module.split("."))).with_suffix(".py").exists():
                wrong.append((where, "module", module))
        wrong += [(where, "history or plumbing", p) for p in FORBIDDEN if re.search(p, text)]
    return wrong


def test_every_path_extra_section_and_command_a_released_notebook_names_exists_in_the_bundle(built):
    assert _unresolved(built) == []


def test_the_name_check_catches_what_the_bundle_lacks(built, tmp_path):
    import nbformat

    copy = tmp_path / "bundle"
    shutil.copytree(built, copy)
    path = copy / "notebooks" / notebooks.RELATIVE
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += (
        "\n\nSee the README's *Benchmark* section, `bnlab/monitor.py`, `pip install -e '.[legacy2]'`"
        " and `make bench`. An earlier version said otherwise."
    )
    nbformat.write(nb, path)
    found = {(kind, name) for _, kind, name in _unresolved(copy)}
    assert {
        ("README section", "Benchmark"),
        ("path", "bnlab/monitor.py"),
        ("extra", "legacy2"),
        ("make target", "bench"),
        ("history or plumbing", "earlier version"),
    } <= found, found


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_after_the_readme_install_does_not_install_again(built, tmp_path):
    """The README installs with pip; `make setup` then finds bnlab installed from the folder and only writes
    its stamp, and installs again only once pyproject.toml changes. A stand-in python logs pip calls (the
    installed-here check runs for real, with the folder's bnlab on its path as an editable install gives)."""
    copy, calls = tmp_path / "bundle", tmp_path / "calls"
    shutil.copytree(built, copy)
    python = copy / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        f'#!/bin/sh\nif [ "$1" = "-I" ]; then exec {sys.executable} -c '
        f'"import sys; sys.path.insert(0, \'.\'); exec(sys.argv[1])" "$3"; fi\necho "$@" >> {calls}\n'
    )
    python.chmod(0o755)
    out = subprocess.run(["make", "setup"], cwd=copy, capture_output=True, text=True, check=True).stdout
    assert "bnlab is installed in .venv" in out and not calls.exists()
    os.utime(copy / "pyproject.toml", (os.path.getmtime(copy / ".venv" / ".installed") + 10,) * 2)
    subprocess.run(["make", "setup"], cwd=copy, capture_output=True, text=True, check=True)
    assert "pip install" in calls.read_text()
