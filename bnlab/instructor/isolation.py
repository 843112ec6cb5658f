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
- an environment of the variables a kernel needs (no instructor secrets, ``HOME`` in ``/tmp``);
- where asked (``Sandbox(hidden=...)``: Part 4's process, which must compute without autodiff), installed packages
  hidden: an empty read-only folder mounted over each of their folders (:func:`package_folders`);
- bounded resources (:class:`SandboxLimits`): ``/``, ``/dev`` read-only; ``/tmp``, ``/dev/shm`` and the working
  copy on size-limited tmpfs (bubblewrap's ``--size``), so a disk fill ends at the quota and never reaches the
  host's disk; ``RLIMIT_NPROC`` at twice the process limit (enforced by Linux for every user but root); and a
  watchdog (:meth:`Sandbox.watch`) that ends the sandbox when its processes' memory plus what its tmpfs hold passes the
  memory limit, when it runs more processes than allowed, when a tmpfs is full, or at its deadline, and says
  which (:attr:`Sandbox.stopped`). cgroups are not used (see ``docs/integrity.md``).

Where bubblewrap cannot run (not Linux, not installed, user namespaces disabled), grading still
works without the sandbox and says so in nbgrader's log, unless ``BNLAB_ISOLATION=require``
(``make autograde ... --isolation require``), which refuses to start student code.
``python -m bnlab.instructor.isolation`` prints what is available here.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
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
    "BNLAB_STUDENT",  # the id a notebook is graded under (set by the grader; bnlab.variants)
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


MiB, GiB = 1024**2, 1024**3
SUBMISSION = "/run/bnlab-submission"  # the submission's files, read-only, copied into the working tmpfs at start
# runs first inside the sandbox: copies the submission into the working tmpfs, then execs the command (through
# util-linux's prlimit, which sets RLIMIT_NPROC, where it is installed)
PROLOGUE = 'cp -a "$0"/. . && exec "$@"'


def size(n: int | None) -> str:
    """``n`` bytes as people read them (GiB or MiB), or ``no limit``."""
    if not n:
        return "no limit"
    return f"{n / GiB:.3g} GiB" if n >= GiB else f"{n / MiB:.3g} MiB"


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """What one sandbox may use. ``memory_bytes`` counts the resident memory of all its processes plus the
    pages its tmpfs hold; ``None`` or 0 turns a limit off (the tmpfs sizes are always set)."""

    memory_bytes: int | None = 4 * GiB
    tmp_bytes: int = 1 * GiB  # /tmp, HOME included
    work_bytes: int = 1 * GiB  # the writable copy of the working folder
    shm_bytes: int = 64 * MiB  # /dev/shm
    processes: int | None = 256
    wall_seconds: float | None = None  # from the start of the sandbox; the caller may give a deadline instead

    def describe(self) -> str:
        return (
            f"memory {size(self.memory_bytes)} (tmpfs included), /tmp {size(self.tmp_bytes)}, working copy "
            f"{size(self.work_bytes)}, /dev/shm {size(self.shm_bytes)}, {self.processes or 'any number of'} "
            f"processes, wall {f'{self.wall_seconds:g} s' if self.wall_seconds else 'no limit'}"
        )


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux's /proc/PID/task/TID/children: no scan of the whole process table)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as children:
                    kids = [int(k) for k in children.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


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


def package_folders(names) -> list[Path]:
    """The folders of the installed top-level packages ``names`` that a sandbox can read, for :class:`Sandbox` to
    hide: found on ``sys.path`` as a fresh interpreter finds them (not the ``__path__`` of a package loaded here, which
    TensorFlow extends with its own subfolders)."""
    from importlib.machinery import PathFinder

    readable = readable_paths()
    folders = []
    for name in names:
        spec = PathFinder.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec is not None else []:
            path = Path(location).resolve()
            if path.is_dir() and any(path.is_relative_to(r) for r in readable):
                folders.append(path)
    return [path for path in folders if not any(path != other and path.is_relative_to(other) for other in folders)]


def base_command(network: bool = False, limits: SandboxLimits | None = None) -> list[str]:
    """bwrap and the options every sandbox shares (the private folders are added by :class:`Sandbox`)."""
    limits = limits or SandboxLimits()
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
    # the private /tmp first: a course, a venv or an MNIST cache that lives under /tmp is bound on top of it
    args += ["--size", str(limits.tmp_bytes), "--tmpfs", "/tmp", "--dir", "/tmp/home"]
    for path in readable_paths():
        args += ["--ro-bind", str(path), str(path)]
    args += ["--dev", "/dev", "--size", str(limits.shm_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    return args + ["--proc", "/proc"]


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
    """One sandboxed process: a private copy of ``workdir`` at the same path (on a tmpfs of ``work_bytes``),
    and private folders (``shared``, writable by both sides, e.g. for a kernel's sockets), under ``limits``; the
    folders ``hidden`` (of packages, :func:`package_folders`) are empty inside. :meth:`watch` enforces the limits
    bubblewrap cannot; :meth:`close` removes the folders."""

    def __init__(
        self,
        workdir: str | os.PathLike | None,
        shared: bool = False,
        limits: SandboxLimits | None = None,
        hidden=(),
    ):
        self.limits = limits or SandboxLimits()
        self.hidden = [Path(path) for path in hidden]
        self.stopped: str | None = None  # why the watchdog ended the sandbox
        self.peak_bytes = 0  # the most memory (processes and tmpfs) the watchdog saw
        self._done = threading.Event()
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

    @property
    def inside(self) -> str:
        """The working folder's path inside the sandbox."""
        return str(self.workdir) if self.workdir else "/tmp/work"

    def command(self, cmd: list[str]) -> list[str]:
        args = base_command(limits=self.limits)
        if self.shared:
            args += ["--bind", str(self.shared), str(self.shared)]
        args += ["--ro-bind", str(self.copy), SUBMISSION, "--size", str(self.limits.work_bytes), "--tmpfs", self.inside]
        for path in self.hidden:  # an empty tmpfs over the folder, read-only: nothing of it is left to import
            args += ["--size", "4096", "--tmpfs", str(path), "--remount-ro", str(path)]
        args += ["--remount-ro", "/", "--chdir", self.inside]
        # jupyter_client's launcher sets JPY_PARENT_PID to nbgrader's PID, which does not exist in here: the
        # kernel would think its parent gone. PID 1, the sandbox's init, lives exactly as long as the sandbox.
        prologue = ["/bin/sh", "-c", PROLOGUE, SUBMISSION]
        if self.limits.processes and shutil.which("prlimit"):
            # a hard cap at twice the limit: the watchdog ends (and names) a sandbox over the limit, and a fork loop
            # faster than its sampling stops at the cap (for every grading user but root, whom Linux exempts)
            n = 2 * self.limits.processes
            prologue += [shutil.which("prlimit"), f"--nproc={n}:{n}", "--"]
        return [*args, "--setenv", "JPY_PARENT_PID", "1", "--", *prologue, *cmd]

    def usage(self, bwrap_pid: int) -> tuple[int, int, dict[str, tuple[int, int]]]:
        """``(resident bytes, processes, {tmpfs: (used, size)})`` of the sandbox started by ``bwrap_pid``."""
        pids = _descendants(bwrap_pid)
        rss, inner = 0, None
        for pid in pids:
            try:
                with open(f"/proc/{pid}/statm") as statm:
                    rss += int(statm.read().split()[1]) * PAGE
                if inner is None:
                    with open(f"/proc/{pid}/comm") as comm:
                        inner = pid if comm.read().strip() != "bwrap" else None
            except (OSError, IndexError, ValueError):
                pass
        mounts = {}
        for mount in ("/tmp", "/dev/shm", self.inside) if inner else ():
            try:
                st = os.statvfs(f"/proc/{inner}/root{mount}")
            except OSError:
                continue
            mounts[mount] = ((st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize)
        return rss, len(pids), mounts

    def watch(self, bwrap_pid: int, deadline: float | None = None, interval: float = 0.1) -> threading.Thread:
        """Sample the sandbox started by ``bwrap_pid`` every ``interval`` s and end it (SIGKILL to bwrap, whose
        namespace ends with it) past a limit or ``deadline`` (``time.monotonic()``); :attr:`stopped` says why."""
        if deadline is None and self.limits.wall_seconds:
            deadline = time.monotonic() + self.limits.wall_seconds
        self._done.clear()

        def loop():
            while not self._done.wait(interval):
                reason = self._over(bwrap_pid, deadline)
                if reason:
                    self.stopped = reason
                    try:
                        os.kill(bwrap_pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    return

        thread = threading.Thread(target=loop, daemon=True, name=f"sandbox-watch-{bwrap_pid}")
        thread.start()
        return thread

    def _over(self, bwrap_pid: int, deadline: float | None) -> str | None:
        rss, count, mounts = self.usage(bwrap_pid)
        total = rss + sum(used for used, _ in mounts.values())
        self.peak_bytes = max(self.peak_bytes, total)
        limits = self.limits
        # the process count first: a flood's many small processes also add up their resident pages (shared
        # ones each time), so a late sample would otherwise name it as memory
        if limits.processes and count > limits.processes + 2:  # bwrap's own two processes do not count
            return f"ran {count - 2} processes, over the sandbox's limit of {limits.processes}"
        if limits.memory_bytes and total > limits.memory_bytes:
            return (
                f"used {size(total)} of memory (processes {size(rss)}, files in memory {size(total - rss)}), "
                f"over the sandbox's limit of {size(limits.memory_bytes)}"
            )
        for mount, (used, total_size) in mounts.items():
            if total_size and used >= total_size - 64 * 1024:
                where = "the working folder" if mount == self.inside else mount
                return f"filled {where} to its limit of {size(total_size)}"
        if deadline is not None and time.monotonic() > deadline:
            return "still running at the grading time limit"
        return None

    def close(self) -> None:
        self._done.set()
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
