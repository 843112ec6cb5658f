"""The course's JupyterHub for the browser tests: prepared and started as `make hub` does it
(bnlab.instructor.hub), with accounts prefixed ``bnhubt-`` and a state folder of their own, and
stopped at the end whatever happens: the hub, its proxy, every server, kernel and grading process
of its users, then the accounts and the folders.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from labdriver import HOST, REPO

from bnlab.instructor import hub

PREFIX = "bnhubt-"  # never the `make hub` accounts (bnhub-)


def free_ports(count: int = 4) -> int:
    """A port ``p`` such that ``p`` .. ``p + count - 1`` are free on loopback (the hub uses four)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            base = sock.getsockname()[1]
        if base + count > 65535:
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as sock:
                try:
                    sock.bind((HOST, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no four free consecutive ports on loopback")


def why_not() -> str | None:
    """Why the hub test cannot run here (one line), or ``None``."""
    if os.geteuid() != 0:
        return "the JupyterHub test creates Unix users and runs servers as them: run it as root (CI does)"
    return None  # without npm, bnlab.instructor.hub says how to install the proxy (the test fails, as in CI)


@contextlib.contextmanager
def searchable_course():
    """Let every user pass through the folders above the course's Python and venv (``o+x``, never ``o+r``),
    as a server for a class must (docs/jupyterhub.md, step 1); CI's Python may live under /root. Each
    folder changed gets its mode back at the end."""
    changed = {}
    for target in (Path(os.path.realpath(sys.executable)), REPO / ".venv", Path(sys.prefix)):
        for folder in [target, *target.parents] if target.is_dir() else target.parents:
            mode = folder.stat().st_mode
            if not mode & 0o001 and folder not in changed:
                changed[folder] = stat.S_IMODE(mode)
                os.chmod(folder, stat.S_IMODE(mode) | 0o001)
    try:
        yield sorted(changed)
    finally:
        for folder, mode in changed.items():
            os.chmod(folder, mode)


def group_alive(pgid: int) -> list[int]:
    """Process ids still in process group ``pgid`` (the hub's own: it, its proxy)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def running_hub(log_path: Path, timeout: float = 300):
    """``python -m bnlab.instructor.hub start`` (what `make hub` runs after setup and data) in a state folder
    of its own; yield its layout once the hub answers. At the end it is stopped as ``kill`` stops it, and
    ``layout.left`` lists what still ran afterwards (the test expects nothing); then everything of the hub's
    users is ended and the accounts and folders removed, whatever happened."""
    state = Path(tempfile.mkdtemp(prefix="bnlab-hub-"))
    os.chmod(state, 0o755)
    port = free_ports()
    layout = hub.Layout(str(state), PREFIX, port, short=True)
    layout.left = []
    hub.remove_users(layout)  # a run that was killed may have left them
    log = open(log_path, "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    command = [sys.executable, "-m", "bnlab.instructor.hub", "start", f"--state={state}", f"--port={port}"]
    process = subprocess.Popen(
        [*command, f"--prefix={PREFIX}", "--short"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://{HOST}:{port}"
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"make hub exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(f"{base}/hub/api", timeout=2) as response:
                    if "version" in json.load(response):
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterHub did not answer within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        layout = hub.Layout.load(state)
        layout.left = []
        yield layout
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)  # as `kill` (or Ctrl+C) stops `make hub`
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            pass
        layout.left = [hub.describe_process(pid) for pid in group_alive(process.pid) + hub.leftovers(layout)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        hub.stop_leftovers(layout)
        hub.remove_users(layout)
        shutil.rmtree(state, ignore_errors=True)
        log.close()


def as_user(layout: hub.Layout, role: str, args: list[str], cwd: Path | None = None, timeout: float = 900):
    """Run ``args`` as the hub user of ``role`` with the course's environment (as on the hub)."""
    name = layout.user(role)
    env = {**hub.course_env(layout), "HOME": hub.home(name), "USER": name, "LOGNAME": name, "LANG": "C.UTF-8"}
    if name in layout.students:
        env["PATH"] = f"{layout.student_env / 'bin'}:{env['PATH']}"
        env["JUPYTER_CONFIG_PATH"] = str(Path(layout.state) / "student-config")
    command = ["runuser", "-u", name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *args]
    return subprocess.run(
        command, cwd=cwd or hub.home(name), capture_output=True, text=True, timeout=timeout, check=False
    )


def login(browser, base: str, layout: hub.Layout, role: str):
    """A new browser context for the user of ``role``, logged in at the hub's login page; its JupyterLab page."""
    name = layout.user(role)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{base}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", layout.passwords[name])
    page.click("#login_submit")
    page.wait_for_url(f"**/user/{name}/lab**", timeout=240_000)
    page.locator(".jp-LauncherCard, .jp-NotebookPanel").first.wait_for(timeout=120_000)
    return page
