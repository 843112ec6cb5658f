"""nbgrader's ``Execute`` preprocessor with the graded kernel inside a :class:`bnlab.instructor.isolation.Sandbox`,
which also survives a cell that ends the kernel.

``nbgrader_config.py`` lists :class:`SandboxedExecute` in ``Autograde.autograde_preprocessors``
where nbgrader's own ``Execute`` stands, so every route that runs nbgrader's autograde with the
course's configuration (the command, the formgrader's button, ``make autograde``) starts its
kernels sandboxed; it is configured as ``Execute`` is (``c.Execute.timeout`` applies), and its own options
set the sandbox's limits (:class:`bnlab.instructor.isolation.SandboxLimits`): ``memory_limit``,
``tmp_size``, ``work_size``, ``max_processes`` and ``wall_time`` for the whole notebook. A kernel the
watchdog ends for a limit is a dead kernel: its cell scores zero and says why, the rest is graded.
The kernel gets the id nbgrader grades the notebook under in ``BNLAB_STUDENT``, so its checks expect that
student's answers (:mod:`bnlab.variants`).
"""

from __future__ import annotations

import copy
import os
import time

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Float, Integer

from bnlab import variants
from bnlab.grading.errors import KERNEL_DIED
from bnlab.instructor.isolation import GiB, MiB, Sandbox, SandboxLimits, check, sandbox_env, strays


class SandboxedKernelManager(AsyncKernelManager):
    """Starts the kernel inside a :class:`Sandbox` (Unix-socket transport, interrupts by message)."""

    _sandbox: Sandbox | None = None
    limits: SandboxLimits = SandboxLimits()
    deadline: float | None = None  # time.monotonic() at which the notebook's wall time runs out
    student: str | None = None  # the id the notebook is graded under: the kernel draws that student's variants

    async def _async_pre_start_kernel(self, **kw):
        self._close_sandbox()
        if check(self.log):
            self._sandbox = Sandbox(kw.get("cwd"), shared=True, limits=self.limits)
            self.transport = "ipc"
            self.ip = str(self._sandbox.shared / "kernel")
            self.connection_file = str(self._sandbox.shared / "kernel.json")
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        if self._sandbox is not None:
            # SIGINT to the process group would end bwrap itself; ipykernel interrupts on request
            self.kernel_spec.interrupt_mode = "message"
            cmd = self._sandbox.command(cmd)
            kw["env"] = sandbox_env(kw.get("env") or os.environ)
            self.log.info("kernel sandboxed by bubblewrap in %s", self._sandbox.workdir)
        if self.student is not None:
            kw["env"] = {**(kw.get("env") or os.environ), variants.STUDENT_VARIABLE: self.student}
        return cmd, kw

    async def _async_launch_kernel(self, kernel_cmd, **kw) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        process = getattr(self.provisioner, "process", None)
        if self._sandbox is not None and process is not None:
            self._sandbox.watch(process.pid, self.deadline)

    @property
    def stopped(self) -> str | None:
        """Why the sandbox's watchdog ended the kernel (a limit), or ``None``."""
        return self._sandbox.stopped if self._sandbox is not None else None

    async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        process = getattr(self.provisioner, "process", None)
        if self._sandbox is not None and process is not None:
            left = strays(process.pid, "ipykernel")
            if left:
                self.log.warning(
                    "SANDBOX: the submission in %s left %d process(es) running when its kernel shut "
                    "down; the sandbox ended them: %s",
                    self._sandbox.workdir,
                    len(left),
                    "; ".join(left[:3]),
                )
        await super()._async_shutdown_kernel(now=now, restart=restart)

    shutdown_kernel = _async_shutdown_kernel  # AsyncKernelManager binds the base class's coroutine by name

    def _close_sandbox(self):
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            self._close_sandbox()


def died_output(why: str | None = None) -> NotebookNode:
    ename, evalue = KERNEL_DIED[0], why or KERNEL_DIED[1]
    return NotebookNode(
        output_type="error", ename=ename, evalue=evalue, traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"]
    )


class SandboxedExecute(Execute):
    """nbgrader's ``Execute`` whose kernels run sandboxed (configured as ``Execute``: timeout etc.).

    When a cell ends the kernel, nbgrader would grade nothing of the notebook. Here the cell gets an error
    output that says so (it scores zero where it is a test, and the feedback shows why), a new kernel runs
    the cells before it again (their first outputs are kept), and execution goes on after it. After
    ``max_kernel_deaths`` deaths the remaining cells are marked as not run."""

    _student: str | None = None

    max_kernel_deaths = Integer(3, help="Kernel deaths after which the rest of the notebook is not run.").tag(
        config=True
    )

    memory_limit = Float(4.0, help="GiB of memory the sandbox may use, its tmpfs included (0: no limit).").tag(
        config=True
    )
    tmp_size = Float(1024.0, help="MiB of the sandbox's /tmp (a tmpfs).").tag(config=True)
    work_size = Float(1024.0, help="MiB of the sandbox's writable copy of the working folder (a tmpfs).").tag(
        config=True
    )
    max_processes = Integer(256, help="Processes the sandbox may run at once (0: no limit).").tag(config=True)
    wall_time = Float(1800.0, help="Seconds the whole notebook may run, replays included (0: no limit).").tag(
        config=True
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    def sandbox_limits(self) -> SandboxLimits:
        return SandboxLimits(
            memory_bytes=int(self.memory_limit * GiB) or None,
            tmp_bytes=int(self.tmp_size * MiB),
            work_bytes=int(self.work_size * MiB),
            processes=self.max_processes or None,
        )

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if isinstance(km, SandboxedKernelManager):
            km.limits, km.deadline = self.sandbox_limits(), self._deadline
            km.student = self._student
        return km

    def preprocess(self, nb, resources=None, km=None):
        self._deaths, self._skipped = 0, set()
        self._deadline = time.monotonic() + self.wall_time if self.wall_time else None
        self._student = (resources or {}).get("nbgrader", {}).get("student")  # whose variants the kernel draws
        others = variants.entered_in(nb) - {self._student}  # the ids the submission was answered for, before it runs
        if others and resources is not None:
            resources.setdefault("bnlab", {})["answered_for"] = sorted(others)
        return super().preprocess(nb, resources, km)

    def _stop_reason(self) -> str | None:
        if self._deaths > self.max_kernel_deaths:
            return f"not run: the kernel died {self._deaths} times in earlier cells."
        if self._deadline is not None and time.monotonic() > self._deadline:
            return f"not run: the notebook used up its grading time of {self.wall_time:g} s."
        return None

    def preprocess_cell(self, cell, resources, index):
        stop = self._stop_reason()
        if stop:
            if cell.cell_type == "code":
                cell.outputs = [died_output(stop)]
            return cell, self.resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._deaths += 1
            self._skipped.add(index)
            limit = getattr(self.km, "stopped", None)
            cell.outputs.append(died_output(f"the grader's sandbox stopped this cell: it {limit}." if limit else None))
            student = (resources or {}).get("nbgrader", {}).get("student", "?")
            self.log.warning(
                "student %s: the kernel died in cell %d (%s)%s; skipping it and grading the rest",
                student,
                index,
                cell.metadata.get("nbgrader", {}).get("grade_id", "ungraded cell"),
                f": SANDBOX LIMIT: it {limit}" if limit else "",
            )
            if self._stop_reason() is None:
                self._restart_and_replay(index)
            return cell, self.resources

    def _restart_and_replay(self, index: int) -> None:
        """A new kernel (and client) that has run the code cells before ``index`` again, but the skipped ones."""
        if self.kc is not None:
            self.kc.stop_channels()
        self.kc = None
        run_sync(self.km.restart_kernel)(now=True)
        self.start_new_kernel_client()
        for i, earlier in enumerate(self.nb.cells[:index]):
            if earlier.cell_type != "code" or i in self._skipped:
                continue
            kept = copy.deepcopy(earlier.get("outputs", []))
            try:
                self.execute_cell(earlier, i, store_history=True)
            except DeadKernelError:  # it did not die the first time: count it, and stop replaying
                self._deaths = self.max_kernel_deaths + 1
                earlier.outputs = kept
                return
            earlier.outputs = kept
