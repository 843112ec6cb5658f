"""The process boundary of the trusted re-verification: the parent's side.

The parent (nbgrader's own process, which never runs student code) starts one
:mod:`bnlab.grading.worker` process per submission and talks to it over two pipes in the JSON lines
of :mod:`bnlab.grading.wire`.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

from bnlab.grading.errors import fail
from bnlab.grading.wire import MAX_LINE, RemoteName, decode, encode
from bnlab.instructor import isolation
from bnlab.instructor.isolation import Sandbox


class RemoteProbe:
    """A probe living in the worker: each method call is a request, its answer decoded data."""

    def __init__(self, session: "Session", handle: int):
        self._session, self._handle = session, handle

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self._session.request("call", handle=self._handle, method=method, args=encode(args))

    @property
    def where(self):
        return self._session.request("call", handle=self._handle, method="where", args=None)


class Session:
    """One worker process, running the student's cells; requests answered within a total time budget."""

    def __init__(self, cwd: str | None = None, timeout: float = 180.0, env: dict | None = None, log=None):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        environment = dict(os.environ, **(env or {}))
        cmd = [sys.executable, "-m", "bnlab.grading.worker", str(to_child_r), str(from_child_w)]
        self.log = log
        self.sandbox = Sandbox(cwd) if isolation.check(log) else None  # the student's code runs here
        if self.sandbox is not None:
            cmd, environment = self.sandbox.command(cmd), isolation.sandbox_env(environment)
        self.process = subprocess.Popen(
            cmd,
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env=environment,
            start_new_session=self.sandbox is not None,
        )  # sandboxed: bwrap ends it (--die-with-parent)
        os.close(to_child_r)
        os.close(from_child_w)
        self.deadline = time.monotonic() + timeout
        self.stopped = ""  # why the worker can no longer answer
        self.died = False  # ... because its process ended (not a timeout or bad data)
        self._buffer = b""

    def _readline(self) -> bytes:
        while b"\n" not in self._buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the re-run of your code took too long")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise EOFError("the re-run of your code stopped the Python process")
            self._buffer += chunk
            if len(self._buffer) > MAX_LINE:
                raise ValueError("the re-run of your code sent too much data")
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def request(self, op: str, **fields):
        __tracebackhide__ = True
        if self.stopped:
            fail(f"Your code could not be checked: {self.stopped}.")
        try:
            os.write(self._to_child, (json.dumps({"op": op, **fields}) + "\n").encode())
            answer = json.loads(self._readline())
            if not isinstance(answer, dict):
                raise ValueError("malformed answer")
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            self.stopped = str(exc) or type(exc).__name__
            self.died = isinstance(exc, EOFError)
            self.close()
            fail(f"Your code could not be checked: {self.stopped}.")
        if "fail" in answer:
            fail(str(answer["fail"])[:1500])
        return decode(answer.get("ok"))

    def exec_cell(self, source: str) -> None:
        """Run one of the notebook's (non-test) cells; its errors are ignored, as under nbgrader."""
        self.request("exec", source=source)

    def probe(self, kind: str, *args) -> RemoteProbe:
        return RemoteProbe(self, int(self.request("new", what=kind, args=encode(args))))

    def value(self, name: RemoteName):
        return self.request("value", name=name.name)

    def close(self) -> None:
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._to_child = self._from_child = -1
        if self.sandbox is not None and self.process.poll() is None and self.log is not None:
            left = isolation.strays(self.process.pid, "bnlab.grading.worker")
            if left:
                self.log.warning(
                    "SANDBOX: the re-run of the submission left %d process(es) running; the sandbox ended them: %s",
                    len(left),
                    "; ".join(left[:3]),
                )
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.sandbox is not None:
            self.sandbox.close()
