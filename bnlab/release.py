"""Generate the student notebooks (release/) and the solutions (solutions/) from source/.

``python -m bnlab.release`` (``make release``) runs ``nbgrader generate_assignment`` and
``nbgrader generate_solution`` for every assignment under source/. ``--check`` generates into a
scratch copy of the course instead and fails, naming the files, when the committed release/ or
solutions/ differ from what source/ gives (CI runs it through the tests).

A source notebook whose metadata says ``"bnlab": {"handout": "after_deadline"}`` (the lesson's TF1
appendix, a worked solution of the exercise in TF1 code) is left out of release/, so neither
nbgrader's exchange nor the student bundle hands it out before grading; its copy in solutions/ is the
handout the instructor gives students once the deadline has passed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("release", "solutions")
AFTER_DEADLINE = "after_deadline"   # the value of a notebook's metadata.bnlab.handout kept out of release/


def nbgrader_env(extra: dict | None = None) -> dict:
    """The environment nbgrader needs: this interpreter's bin first on PATH (for ``alembic``)."""
    env = {**os.environ, **(extra or {})}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def nbgrader_command(*args: str, root: Path) -> list[str]:
    """``nbgrader ARGS`` of this interpreter's environment, for the course in folder ``root`` (through
    :mod:`bnlab.nbgrader_cli`, which starts 2.5 s sooner than the ``nbgrader`` script)."""
    return [sys.executable, "-m", "bnlab.nbgrader_cli", *args, f"--CourseDirectory.root={root}"]


def nbgrader(*args: str, root: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in course directory ``root`` with the course's config (``env`` adds variables)."""
    result = subprocess.run(nbgrader_command(*args, root=root), cwd=root, env=nbgrader_env(env), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def assignments(root: Path = ROOT) -> list[str]:
    return sorted(p.name for p in (root / "source").iterdir() if p.is_dir() and not p.name.startswith("."))


def after_deadline(root: Path = ROOT) -> list[Path]:
    """The source notebooks (relative to source/) handed out only after the deadline, from solutions/."""
    found = []
    for path in sorted((root / "source").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        meta = json.loads(path.read_text()).get("metadata", {}).get("bnlab", {})
        if meta.get("handout") == AFTER_DEADLINE:
            found.append(path.relative_to(root / "source"))
    return found


def released_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks (relative to source/) that release/ must hold: every source notebook but the handouts."""
    later = set(after_deadline(root))
    return [p.relative_to(root / "source") for p in sorted((root / "source").rglob("*.ipynb"))
            if ".ipynb_checkpoints" not in p.parts and p.relative_to(root / "source") not in later]


def generate(root: Path = ROOT, verbose: bool = True) -> None:
    """(Re)generate release/ and solutions/ in ``root`` from its source/; handouts stay out of release/."""
    later = after_deadline(root)
    for name in assignments(root):
        if verbose:
            print(f"generating release/{name} and solutions/{name} ...", flush=True)
        nbgrader("generate_assignment", name, "--force", root=root)
        nbgrader("generate_solution", name, "--force", root=root)
    for rel in later:
        (root / "release" / rel).unlink(missing_ok=True)
        if verbose:
            print(f"  {rel}: after the deadline only (solutions/{rel}), not in release/", flush=True)


def _normalized(path: Path):
    if path.suffix == ".ipynb":
        return json.loads(path.read_text())
    return path.read_bytes()


def stale_files(root: Path = ROOT) -> list[str]:
    """Files of release/ and solutions/ that differ from a fresh generation (missing, extra or changed)."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        shutil.copytree(root / "source", scratch / "source")
        shutil.copy(root / "nbgrader_config.py", scratch / "nbgrader_config.py")
        generate(scratch, verbose=False)
        problems = []
        for top in GENERATED:
            fresh = {p.relative_to(scratch) for p in (scratch / top).rglob("*") if p.is_file()}
            committed = {p.relative_to(root) for p in (root / top).rglob("*") if p.is_file()
                         and ".ipynb_checkpoints" not in p.parts}
            for rel in sorted(fresh | committed):
                if rel not in committed:
                    problems.append(f"{rel}: missing")
                elif rel not in fresh:
                    problems.append(f"{rel}: not generated from source/ (remove it)")
                elif _normalized(scratch / rel) != _normalized(root / rel):
                    problems.append(f"{rel}: differs from what source/ generates")
        return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that release/ and solutions/ are up to date")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files()
        if problems:
            print("release/ or solutions/ are stale; run `make release` and commit:\n  " + "\n  ".join(problems))
            return 1
        print("release/ and solutions/ are up to date with source/.")
        return 0
    generate()
    print("done: commit release/ and solutions/.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
