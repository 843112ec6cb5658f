"""Student code runs inside bubblewrap while it is graded: it sees only its own submission.

Every process that runs a submission's code during grading is started through :class:`Sandbox`:
the graded kernel (through :class:`SandboxedExecute`, which nbgrader's ``Autograde`` runs in place
of its ``Execute`` preprocessor (:mod:`bnlab.instructor.preprocessors.execute`), so plain ``nbgrader autograde``,
the formgrader's button, ``make autograde`` and ``make grade-demo`` all use it) and the trusted re-run's worker
(:class:`bnlab.instructor.preprocessors.remote.Session`). A sandbox is ``bwrap`` (the Debian package
``bubblewrap``, the sandbox Flatpak uses) with:

- read-only: the system (``/usr``, ``/etc``, ``/sys``), the Python installation and environment,
  the course library ``bnlab`` and the MNIST cache, and nothing else of the machine's files;
- writable: a private copy of the process's working folder (the submission's own files) and a
  private ``/tmp``, both thrown away afterwards;
- new user, PID, IPC, UTS, cgroup and network namespaces: no network at all (the kernel talks
  to nbgrader over Unix sockets in a private folder), and every process the submission starts,
  in a new session or a double fork included, ends with the sandbox (``--die-with-parent``);
- an environment of the variables a kernel needs (no instructor secrets, ``HOME`` in ``/tmp``).

Where bubblewrap cannot run (not Linux, not installed, user namespaces disabled), grading still
works without the sandbox and says so in nbgrader's log, unless ``BNLAB_ISOLATION=require``
(``make autograde ... --isolation require``), which refuses to start student code.
``python -m bnlab.instructor.isolation`` prints what is available here.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bnlab
from bnlab import settings

PACKAGE = Path(bnlab.__file__).resolve().parent
# the variables a sandboxed process keeps, by exact name (never a prefix: Terraform's TF_TOKEN_* and TF_VAR_*
# hold secrets); everything else is dropped. TensorFlow, XLA, CUDA and the BLAS/OpenMP thread settings by name.
KEEP = {
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "PYTHONHASHSEED",
    "PYTHONUNBUFFERED",
    "MPLBACKEND",
    "CI",
    "BNLAB_SHORT",
    "BNLAB_SHORT_BATCHES",
    "BNLAB_DETERMINISTIC",
    "BNLAB_ISOLATION",
    "NBGRADER_EXECUTION",
    "TF_CPP_MIN_LOG_LEVEL",
    "TF_CPP_MAX_VLOG_LEVEL",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "TF_USE_LEGACY_KERAS",
    "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_FORCE_GPU_ALLOW_GROWTH",
    "TF_GPU_ALLOCATOR",
    "TF_XLA_FLAGS",
    "XLA_FLAGS",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "KMP_AFFINITY",
    "KMP_BLOCKTIME",
    "PYDEVD_DISABLE_FILE_VALIDATION",
}
KEEP_PREFIXES: tuple[str, ...] = ()  # none: a prefix lets through whatever an instructor's tool names like it


class IsolationUnavailable(RuntimeError):
    """Student code would have to run without the sandbox, and the policy forbids it."""


def _system_binds() -> list[str]:
    args = []
    for top in ("/usr", "/etc"):
        args += ["--ro-bind", top, top]
    for top in ("/bin", "/lib", "/lib64", "/lib32", "/sbin"):  # merged-/usr symlinks, or real folders
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    args += ["--ro-bind-try", "/sys", "/sys"]
    for device in sorted(Path("/dev").glob("nvidia*")):  # a GPU, where there is one
        args += ["--dev-bind", str(device), str(device)]
    return args


def readable_paths() -> list[Path]:
    """What student code may read besides the system: Python, its environment, bnlab, MNIST."""
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), PACKAGE, settings.data_dir().resolve()}
    executable = Path(sys.executable).resolve()
    if not any(executable.is_relative_to(p) for p in paths):
        paths.add(executable.parent)
    return sorted(p for p in paths if p.exists())


def base_command(network: bool = False) -> list[str]:
    """bwrap and the options every sandbox shares (the private folders are added by :class:`Sandbox`)."""
    args = [
        "bwrap",
        "--unshare-user-try",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "grading",
    ]
    if not network:
        args.append("--unshare-net")
    args += _system_binds()
    for path in readable_paths():
        args += ["--ro-bind", str(path), str(path)]
    return args + ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--dir", "/tmp/home"]


def missing_tool(command: str, what: str, install: str) -> str | None:
    """Why the Linux ``command`` (``what`` it is) cannot run here, or ``None`` when it is installed."""
    if not sys.platform.startswith("linux"):
        return f"{what} runs on Linux only (this is {sys.platform})"
    if shutil.which(command) is None:
        return f"{what} is not installed ({install})"
    return None


@functools.lru_cache(maxsize=1)
def available() -> tuple[bool, str]:
    """``(True, what)`` when student code can run sandboxed here, else ``(False, why not)``."""
    missing = missing_tool("bwrap", "bubblewrap", "Debian/Ubuntu: apt-get install bubblewrap")
    if missing:
        return False, missing
    try:
        probe = subprocess.run(
            [*base_command(), "--", sys.executable, "-c", "import bnlab"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"bubblewrap could not start ({error})"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return False, f"bubblewrap cannot create its namespaces here (user namespaces disabled?): {last}"
    return True, "bubblewrap sandbox: own files only, private /tmp, no network, no process outlives grading"


def check(log: logging.Logger | None = None) -> bool:
    """Whether to sandbox, by ``BNLAB_ISOLATION``: raises :class:`IsolationUnavailable` under
    ``require`` without a sandbox; logs a warning when student code runs unprotected."""
    policy = settings.isolation()
    if policy == "off":
        if log:
            log.warning(
                "student code is NOT sandboxed (BNLAB_ISOLATION=off): it can read and write the "
                "grader's files and leave processes running"
            )
        return False
    ok, why = available()
    if ok:
        return True
    if policy == "require":
        raise IsolationUnavailable(f"refusing to run student code without a sandbox (BNLAB_ISOLATION=require): {why}")
    if log:
        log.warning(
            "student code is NOT sandboxed: %s. It can read and write the grader's files and leave "
            "processes running; grade untrusted work where bubblewrap runs",
            why,
        )
    return False


def sandbox_env(env: dict) -> dict:
    """The variables a sandboxed process gets from ``env``: the kernel's and the course's, no others."""
    kept = {k: v for k, v in env.items() if (k in KEEP or k.startswith(KEEP_PREFIXES))}
    bin_dir = str(Path(sys.executable).parent)
    kept.update(
        PATH=f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        HOME="/tmp/home",
        TMPDIR="/tmp",
        MPLCONFIGDIR="/tmp/home/.matplotlib",
        BNLAB_DATA_DIR=str(settings.data_dir().resolve()),
        BNLAB_SANDBOXED="1",
    )
    return kept


class Sandbox:
    """One sandboxed process: a private copy of ``workdir`` at the same path, and private folders
    (``shared``, writable by both sides, e.g. for a kernel's sockets). :meth:`close` removes them."""

    def __init__(self, workdir: str | os.PathLike | None, shared: bool = False):
        self.root = Path(tempfile.mkdtemp(prefix="bnlab-sandbox-"))
        self.workdir = Path(workdir).resolve() if workdir else None
        self.shared = self.root / "shared" if shared else None
        if self.shared:
            self.shared.mkdir()
        self.copy = self.root / "work"
        if self.workdir and self.workdir.is_dir():
            shutil.copytree(self.workdir, self.copy, symlinks=True, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        else:
            self.copy.mkdir()

    def command(self, cmd: list[str]) -> list[str]:
        args = base_command()
        if self.shared:
            args += ["--bind", str(self.shared), str(self.shared)]
        inside = str(self.workdir) if self.workdir else "/tmp/work"
        args += ["--bind", str(self.copy), inside, "--chdir", inside]
        # jupyter_client's launcher sets JPY_PARENT_PID to nbgrader's PID, which does not exist in here: the
        # kernel would think its parent gone. PID 1, the sandbox's init, lives exactly as long as the sandbox.
        return [*args, "--setenv", "JPY_PARENT_PID", "1", "--", *cmd]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def strays(bwrap_pid: int, main: str) -> list[str]:
    """Command lines of the processes in the sandbox started by ``bwrap_pid`` other than bwrap itself
    and its main process (whose command line contains ``main``): what the submission started and left
    running. They end with the sandbox; this only names them for the report."""
    import psutil

    try:
        processes = psutil.Process(bwrap_pid).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for process in processes:
        try:
            line = " ".join(process.cmdline())[:120]
        except psutil.Error:
            continue
        if process.name() != "bwrap" and main not in line:
            found.append(line)
    return found


def describe() -> str:
    ok, why = available()
    return (
        f"isolation policy (BNLAB_ISOLATION): {settings.isolation()}\n"
        f"sandbox available: {'yes' if ok else 'no'} ({why})"
    )


if __name__ == "__main__":
    print(describe())
