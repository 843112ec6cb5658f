"""Run one grading command under limits: wall time, memory, and no network where the machine allows.

:func:`run_limited` starts a command in its own process group and ends the whole group (nbgrader
and the kernel it started) when it runs past ``Limits.wall_seconds`` or when the resident memory of
the group passes ``Limits.memory_bytes`` (a watchdog samples it every quarter second, so a student
cell that allocates faster than that can overshoot briefly; ``Limits.address_space_bytes`` adds a
hard ``RLIMIT_AS`` on every process, off by default because TensorFlow reserves several GiB of
address space it never touches).

These limits surround the whole grading command under ``make autograde``. The sandbox around student code has
its own, on every route (plain ``nbgrader autograde`` too): memory counting its tmpfs, tmpfs sizes, a process
count and the notebook's wall time (:class:`bnlab.instructor.isolation.SandboxLimits`, set through
``c.SandboxedExecute``).

Network: on Linux with unprivileged user namespaces (``unshare -rn`` works), the command runs in a
new network namespace whose only interface is loopback, brought up by ``python -m bnlab.instructor.autograde.limits``
before it execs the command: the kernel still talks to nbgrader over 127.0.0.1, and student code
reaches nothing else. Elsewhere (macOS, containers without user namespaces) the network stays
reachable and :func:`network_isolation` says why.
"""

from __future__ import annotations

import atexit
import dataclasses
import fcntl
import functools
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from bnlab.instructor.isolation import missing_tool

GiB = 1024**3
OUTPUT_KEPT = 256 * 1024  # bytes of a grading command's output kept from its start, and as many from its end
_LIVE: set[int] = set()  # process groups of the commands running now (ended if this process exits)


@atexit.register
def _end_live_groups() -> None:
    """On exit (also Ctrl-C), end the grading commands still running: they run in their own sessions,
    so neither a terminal's Ctrl-C nor the death of this process would reach them."""
    for pgid in list(_LIVE):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-submission limits. ``network``: ``"auto"`` isolates when possible, ``"require"`` refuses
    to grade without isolation, ``"allow"`` leaves the network reachable. ``isolation``: the same for
    the sandbox around student code (``BNLAB_ISOLATION`` of the grading command)."""

    wall_seconds: float = 1800.0
    memory_bytes: int | None = 4 * GiB
    address_space_bytes: int | None = None
    cell_timeout: int | None = None  # nbgrader's per-cell limit (c.Execute.timeout); None keeps the config's
    network: str = "auto"
    isolation: str = "auto"  # the student-code sandbox (bnlab.instructor.isolation): auto, require or off

    def describe(self) -> str:
        memory = f"{self.memory_bytes / GiB:g} GiB" if self.memory_bytes else "no memory limit"
        return f"wall {self.wall_seconds:g} s, {memory}, network {self.network}, sandbox {self.isolation}"


@dataclasses.dataclass
class Outcome:
    """How a limited command ended: ``status`` is ``ok``, ``timeout``, ``memory`` or ``error`` (nonzero exit)."""

    status: str
    reason: str
    returncode: int | None
    output: str
    seconds: float
    peak_rss: int
    network_isolated: bool


@functools.lru_cache(maxsize=1)
def network_isolation() -> tuple[bool, str]:
    """``(available, why)``: whether commands can run without network (a private network namespace)."""
    missing = missing_tool("unshare", "the `unshare` command", "util-linux")
    if missing:
        return False, missing
    probe = subprocess.run(
        ["unshare", "-rn", sys.executable, "-m", "bnlab.instructor.autograde.limits", "--probe"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return False, (
            "`unshare -rn` is not permitted here (unprivileged user namespaces disabled): "
            + (probe.stderr.strip().splitlines() or ["no message"])[-1]
        )
    return True, "private network namespace (loopback only) via `unshare -rn`"


def wrap_command(cmd: list[str], limits: Limits) -> tuple[list[str], bool]:
    """The command to run for ``cmd`` under ``limits``'s network policy, and whether it is isolated."""
    if limits.network == "allow":
        return cmd, False
    available, why = network_isolation()
    if not available:
        if limits.network == "require":
            raise RuntimeError(f"network isolation required but unavailable: {why}")
        return cmd, False
    return ["unshare", "-rn", sys.executable, "-m", "bnlab.instructor.autograde.limits", "--", *cmd], True


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the process that started it dies (a killed coordinator or Dask
    worker leaves no grading behind; the kernel exits when nbgrader, its parent, is gone)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def capped_read(stream, keep: int = OUTPUT_KEPT) -> str:
    """Everything ``stream`` gives until its end, of which only the first and the last ``keep`` bytes are held
    (a submission can print without end to the kernel's inherited stdout): head, a line saying how much was
    left out, tail."""
    head, tail, dropped = bytearray(), bytearray(), 0
    for chunk in iter(lambda: stream.read(65536), b""):
        room = keep - len(head)
        head += chunk[:room]
        tail += chunk[room:] if room > 0 else chunk
        if len(tail) > keep:
            dropped += len(tail) - keep
            del tail[: len(tail) - keep]
    stream.close()
    middle = f"\n[... {dropped} bytes of output left out here ...]\n".encode() if dropped else b""
    return (bytes(head) + middle + bytes(tail)).decode("utf-8", "replace")


def run_limited(cmd: list[str], cwd, env: dict, limits: Limits) -> Outcome:
    """Run ``cmd`` under ``limits`` and say how it ended; never raises for the command's own failures."""
    cmd, isolated = wrap_command(cmd, limits)

    def preexec():
        _die_with_parent()
        if limits.address_space_bytes:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limits.address_space_bytes, limits.address_space_bytes))

    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec,
    )
    _LIVE.add(proc.pid)
    state = {"status": "ok", "reason": "", "peak": 0}
    done = threading.Event()

    def kill(status: str, reason: str):
        if state["status"] == "ok":
            state.update(status=status, reason=reason)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def watch():
        while not done.wait(0.25):
            rss = _tree_rss(proc.pid)
            state["peak"] = max(state["peak"], rss)
            if limits.memory_bytes and rss > limits.memory_bytes:
                kill(
                    "memory",
                    f"used {rss / GiB:.2f} GiB of memory, over the limit of "
                    f"{limits.memory_bytes / GiB:g} GiB; grading was stopped",
                )
            elif time.perf_counter() - start > limits.wall_seconds:
                kill(
                    "timeout",
                    f"still running after the wall-time limit of {limits.wall_seconds:g} s; grading was stopped",
                )

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = capped_read(proc.stdout)
    proc.wait()
    done.set()
    watcher.join()
    try:  # whatever the command left behind in its group (a kernel nbgrader could not shut down)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _LIVE.discard(proc.pid)
    status, reason = state["status"], state["reason"]
    if status == "ok" and proc.returncode != 0:
        status, reason = "error", f"exited with status {proc.returncode}"
    return Outcome(status, reason, proc.returncode, output, time.perf_counter() - start, state["peak"], isolated)


def _loopback_up() -> None:
    """Bring ``lo`` up in this (new) network namespace: SIOCGIFFLAGS / SIOCSIFFLAGS with IFF_UP."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _loopback_up()
    if argv[:1] == ["--probe"]:
        with socket.create_server(("127.0.0.1", 0)):
            pass
        return 0
    if argv[:1] == ["--"]:
        argv = argv[1:]
    os.execvp(argv[0], argv)
    return 127


if __name__ == "__main__":
    sys.exit(main())
