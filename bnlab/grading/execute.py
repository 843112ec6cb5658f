"""nbgrader's ``Execute`` preprocessor with the graded kernel inside a :class:`bnlab.isolation.Sandbox`.

``nbgrader_config.py`` lists :class:`SandboxedExecute` in ``Autograde.autograde_preprocessors``
where nbgrader's own ``Execute`` stands, so every route that runs nbgrader's autograde with the
course's configuration (the command, the formgrader's button, ``make autograde``) starts its
kernels sandboxed; it is configured as ``Execute`` is (``c.Execute.timeout`` applies).
"""
from __future__ import annotations

import os

from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute

from bnlab.isolation import Sandbox, check, sandbox_env, strays




class SandboxedKernelManager(AsyncKernelManager):
    """Starts the kernel inside a :class:`Sandbox` (Unix-socket transport, interrupts by message)."""

    _sandbox: Sandbox | None = None

    async def _async_pre_start_kernel(self, **kw):
        self._close_sandbox()
        if check(self.log):
            self._sandbox = Sandbox(kw.get("cwd"), shared=True)
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
        return cmd, kw

    async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        process = getattr(self.provisioner, "process", None)
        if self._sandbox is not None and process is not None:
            left = strays(process.pid, "ipykernel")
            if left:
                self.log.warning("SANDBOX: the submission in %s left %d process(es) running when its kernel shut "
                                 "down; the sandbox ended them: %s", self._sandbox.workdir, len(left), "; ".join(left[:3]))
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


class SandboxedExecute(Execute):
    """nbgrader's ``Execute`` whose kernels run sandboxed (configured as ``Execute``: timeout etc.)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)
