"""The process boundary of the trusted re-verification: the parent's side.

The parent (nbgrader's own process, which never runs student code) starts one :mod:`bnlab.grading.worker`
process per submission, which runs the student's cells, and one :mod:`bnlab.grading.judge` process, which runs
the graphs the worker exports and nothing else of the student's; at the first Part 4 check, a third, Part 4's
process (:func:`bnlab.grading.worker.main_part_4`), which runs only Part 4's answer cell, without TensorFlow.
It talks to them over pipes in the JSON lines of :mod:`bnlab.grading.wire`.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

from bnlab.grading import numeric
from bnlab.grading.backward import AUTODIFF_PACKAGES
from bnlab.grading.errors import fail
from bnlab.grading.wire import MAX_LINE, RemoteName, decode, encode
from bnlab.instructor import isolation
from bnlab.instructor.isolation import Sandbox
from bnlab.instructor.reference import install as use_numpy_reference_gradients

# the checks judge in this process, which does not load TensorFlow (its memory counts against the limit)
use_numpy_reference_gradients()


class RemoteProbe:
    """A probe living in the judge's process: each method call is a request, its answer decoded data."""

    def __init__(self, process: "_Process", handle: int):
        self._process, self._handle = process, handle

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self._process.request("call", handle=self._handle, method=method, args=encode(args))

    @property
    def where(self):
        return self._process.request("call", handle=self._handle, method="where", args=None)


class RemoteStep(RemoteProbe):
    """The checks' reference model for ``train_step`` and ``predict``, built in the judge; the student's function
    is exported as a graph by the worker and handed to the judge with each call."""

    def __init__(self, session: "Session", handle: int, seed: int):
        super().__init__(session.judge, handle)
        self._session, self._seed = session, seed

    def train_step(self, function, x, y, learning_rate):
        package = self._session.worker.request("export_step", args=encode([function, self._seed, learning_rate]))
        return self._process.request(
            "call", handle=self._handle, method="train_step", args=encode([package, x, y, learning_rate])
        )

    def predict(self, function, x):
        package = self._session.worker.request("export_step", args=encode([function, self._seed]))
        return self._process.request("call", handle=self._handle, method="predict", args=encode([package, x]))


class BackwardRun:
    """Part 4's probe in the trusted re-run: the student's function, by name, in Part 4's own process."""

    def __init__(self, process: "_Process", name: str):
        self._process, self._name = process, name

    def run(self, dout, x, gamma, eps) -> dict:
        return self._process.request("run", name=self._name, args=encode([dout, x, gamma, float(eps)]))


class _Process:
    """One sandboxed Python process of the course (``python -I -m MODULE *ARGS IN OUT``) answering JSON lines within
    a total time budget; ``hidden``: folders left empty in its sandbox (``isolation.Sandbox``)."""

    def __init__(
        self, module: str, cwd: str | None, deadline: float, env: dict, log, sandboxed: bool, args=(), hidden=()
    ):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # -I: neither the working folder (the submission's) nor PYTHONPATH comes before the course's library, so a
        # `bnlab` (or `numpy`, ...) shipped in the submission cannot stand in for it
        cmd = [sys.executable, "-I", "-m", module, *args, str(to_child_r), str(from_child_w)]
        self.module, self.log = module, log
        self.sandbox = Sandbox(cwd, hidden=hidden) if sandboxed else None
        environment = env
        if self.sandbox is not None:
            cmd, environment = self.sandbox.command(cmd), isolation.sandbox_env(environment)
        self.process = subprocess.Popen(
            cmd,
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.sandbox.copy if self.sandbox is not None and cwd is None else cwd,
            env=environment,
            start_new_session=self.sandbox is not None,
        )  # sandboxed: bwrap ends it (--die-with-parent)
        if self.sandbox is not None:  # memory (tmpfs included), processes, full tmpfs: ended, and why (sandbox.stopped)
            self.sandbox.watch(self.process.pid)
        os.close(to_child_r)
        os.close(from_child_w)
        self.deadline = deadline
        self.stopped = ""  # why the process can no longer answer
        self.died = False  # ... because it ended (not a timeout or bad data)
        self.refused = []  # the judge's reasons for graphs it would not judge
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
        if "unjudgeable" in answer:
            reason = str(answer["unjudgeable"])[:1000]
            self.refused.append(reason)
            fail(f"Your code could not be judged: {reason}. {UNJUDGEABLE_HINT}")
        if "fail" in answer:
            fail(str(answer["fail"])[:1500])
        return decode(answer.get("ok"))

    def close(self) -> None:
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._to_child = self._from_child = -1
        if self.sandbox is not None and self.process.poll() is None and self.log is not None:
            left = isolation.strays(self.process.pid, self.module)
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


UNJUDGEABLE_HINT = (
    "A layer is judged by running the TensorFlow graph it builds, so it must compute with TensorFlow operations "
    "only (no tf.numpy_function or tf.py_function, no file operations)"
)


class Session:
    """The trusted re-run's processes: the worker, which runs the student's cells and exports their layers'
    graphs (:mod:`bnlab.grading.worker`), the judge, which runs those graphs for the checks
    (:mod:`bnlab.grading.judge`) and has never loaded the student's Python, and, at the first Part 4 check, Part 4's
    process, which runs only ``backward_source`` (Part 4's answer cell, from the submission) from an empty folder,
    TensorFlow's and Keras' folders hidden in its sandbox and their import refused."""

    def __init__(
        self,
        cwd: str | None = None,
        timeout: float = 180.0,
        env: dict | None = None,
        log=None,
        backward_source: str = "",
    ):
        environment = dict(os.environ, **(env or {}))
        deadline = time.monotonic() + timeout
        sandboxed = isolation.check(log)  # the student's code runs in the worker, their graphs in the judge
        self.log, self.backward_source = log, backward_source
        self._start = (deadline, environment, sandboxed)
        self.worker = _Process("bnlab.grading.worker", cwd, deadline, environment, log, sandboxed)
        self.judge = _Process("bnlab.grading.judge", None, deadline, environment, log, sandboxed)
        self.backward: _Process | None = None
        self.process = self.worker.process

    def _backward_process(self) -> "_Process":
        """Part 4's process, started (once) with the answer cell run in it."""
        if self.backward is None:
            deadline, environment, sandboxed = self._start
            hidden = isolation.package_folders(AUTODIFF_PACKAGES) if sandboxed else ()
            self.backward = _Process(
                "bnlab.grading.worker", None, deadline, environment, self.log, sandboxed, ("backward",), hidden
            )
            self.backward.request("cell", source=self.backward_source)
        return self.backward

    @property
    def died(self) -> bool:
        return self.worker.died

    @property
    def stopped(self) -> str:
        return self.worker.stopped

    @property
    def refused(self) -> list:
        return self.judge.refused

    def request(self, op: str, **fields):
        __tracebackhide__ = True
        return self.worker.request(op, **fields)

    def exec_cell(self, source: str) -> None:
        """Run one of the notebook's (non-test) cells; its errors are ignored, as under nbgrader."""
        self.request("exec", source=source)

    def probe(self, kind: str, *args):
        """A layer's probe is its graph, exported by the worker and run by the judge; a training step's is the
        course's reference model in the judge, given the graph of the student's function; Part 4's NumPy function
        (``"backward"``) runs in Part 4's process, on the arrays the check sends.

        A layer's size is resolved here, under the test cell's salt (:func:`bnlab.grading.numeric.layer_arg`), so
        the worker builds a conv layer at the depth drawn with the salt without ever seeing the salt."""
        __tracebackhide__ = True
        if kind == "layer":
            layer_fn, layer_kind, api, arg, seed = args
            args = (layer_fn, layer_kind, api, numeric.layer_arg(layer_kind, arg), seed)
            package = self.worker.request("export", args=encode(args))
            return RemoteProbe(self.judge, int(self.judge.request("load", package=encode(package))))
        if kind == "step":
            seed = int(args[0]) if args else 0
            return RemoteStep(self, int(self.judge.request("step", seed=seed)), seed)
        if kind == "backward":
            return BackwardRun(self._backward_process(), args[0].name)
        raise ValueError(f"no probe {kind!r}")

    def value(self, name: RemoteName):
        return self.request("value", name=name.name)

    def close(self) -> None:
        for process in (self.worker, self.judge, self.backward):
            if process is not None:
                process.close()
