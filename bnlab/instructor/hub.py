"""A local JupyterHub for the course (``make hub``; docs/jupyterhub.md): a class of real Unix users.

``python -m bnlab.instructor.hub start`` (as root) prepares a state folder and runs JupyterHub in it:

- accounts (``PREFIX`` + ``teacher``, ``grader``, ``ada``, ``bob``) with generated passwords, logging in
  through PAM; the hub name is the Unix name, so nbgrader's student id is the hub name;
- nbgrader's exchange in ``STATE/exchange`` (mode 1777, as nbgrader's docs ask of the exchange root);
- the formgrader as a hub-managed service named after the course, running as the grader account in the
  grader's course folder (``~grader/course``: ``source/`` and ``nbgrader_config.py``); the group
  ``formgrade-COURSE`` (teacher and grader) holds a role with ``access:services!service=COURSE`` only.
  No server gets an ``inherit`` role, and the servers' content security policy is left as JupyterHub sets
  it: the formgrader opens in a tab of its own, never inside JupyterLab's iframe;
- students' servers run the student bundle (``make bundle``: no ``bnlab.instructor``, no grader-side text)
  in ``STATE/student-env``, a Python environment that sees the course venv's packages but not its
  editable ``bnlab``; the teacher's server runs the course venv (the whole course).

The configuration is :func:`configure`, which ``jupyter/jupyterhub_config.py`` calls with the state folder
(JupyterHub runs in it). Instructor tooling: imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bnlab import settings
from bnlab.instructor.notebooks import ROOT

PROXY_VERSION = "5.1.0"  # configurable-http-proxy (npm); 5.2+ needs Node 20, Debian 12 ships Node 18
PROXY = ROOT / ".venv" / "node_modules" / ".bin" / "configurable-http-proxy"
VENV = Path(sys.prefix)  # the course venv (the whole course, instructor tooling included)
COURSE_ID = "batchnorm"  # = nbgrader_config.py's course id; also the formgrader service's name
GROUP = f"formgrade-{COURSE_ID}"
ROLES = ("teacher", "grader", "ada", "bob")  # the hub's users, each ``PREFIX + role``
STUDENTS = ("ada", "bob")
HOST = "127.0.0.1"  # the hub listens on loopback only (TLS and a public address: docs/jupyterhub.md)
STATE_FILE = "hub.json"


class HubError(RuntimeError):
    """The hub cannot be prepared here; the message says what to do."""


@dataclass
class Layout:
    """Where everything of one hub lives; written to ``STATE/hub.json`` and read by :func:`configure`."""

    state: str
    prefix: str = "bnhub-"
    port: int = 8000
    short: bool = False  # students' training runs shortened (BNLAB_SHORT=1), as in CI
    passwords: dict = field(default_factory=dict)

    def user(self, role: str) -> str:
        return self.prefix + role

    @property
    def users(self) -> list[str]:
        return [self.user(r) for r in ROLES]

    @property
    def students(self) -> list[str]:
        return [self.user(r) for r in STUDENTS]

    @property
    def exchange(self) -> Path:
        return Path(self.state) / "exchange"

    @property
    def data(self) -> Path:
        return Path(self.state) / "data"

    @property
    def student_env(self) -> Path:
        return Path(self.state) / "student-env"

    @property
    def course(self) -> Path:
        """The grader's course folder (the formgrader's, the gradebook's, ``make autograde --course``)."""
        return Path(home(self.user("grader"))) / "course"

    def ports(self) -> dict:
        return {"hub": self.port, "api": self.port + 1, "proxy_api": self.port + 2, "service": self.port + 3}

    def save(self) -> None:
        path = Path(self.state) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=1))
        os.chmod(path, 0o600)  # the passwords

    @classmethod
    def load(cls, state: Path) -> Layout:
        return cls(**json.loads((Path(state) / STATE_FILE).read_text()))


def home(user: str) -> str:
    return pwd.getpwnam(user).pw_dir


def exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def require_root() -> None:
    if os.geteuid() != 0:
        raise HubError(
            "make hub creates Unix users (an instructor, a grader, two students) and starts their servers as "
            "them, so it runs as root: sudo make hub. On a shared server follow docs/jupyterhub.md instead."
        )


def install_proxy() -> Path:
    """configurable-http-proxy (npm, pinned) into the course venv's node_modules/, unless it is there."""
    if PROXY.exists():
        return PROXY
    if shutil.which("npm") is None:
        raise HubError("JupyterHub's proxy comes from npm: install Node.js and npm (apt-get install npm)")
    subprocess.run(
        ["npm", "install", "--prefix", str(ROOT / ".venv"), "--no-audit", "--no-fund", "--no-save",
         f"configurable-http-proxy@{PROXY_VERSION}"],
        check=True,
    )  # fmt: skip
    return PROXY


def ensure_user(name: str, password: str) -> None:
    """A Unix account with a home folder (private to it) and ``password`` for PAM."""
    if not exists(name):
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    os.chmod(home(name), 0o700)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)


def remove_users(layout: Layout) -> None:
    """Delete the hub's accounts and their home folders (what :func:`prepare` created)."""
    for name in layout.users:
        if exists(name):
            subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def build_student_env(layout: Layout) -> Path:
    """The student package as ``make bundle`` ships it, in a Python environment students can read.

    The environment is a venv without pip whose one ``.pth`` line adds the course venv's site-packages:
    TensorFlow, JupyterLab and nbgrader come from there, but the editable ``bnlab`` of the course venv
    (which would bring ``bnlab.instructor``) is not installed in it; the bundle's ``bnlab`` is."""
    from bnlab.instructor import bundle

    target = bundle.build(Path(layout.state) / "bundle", check_answers=False)
    env = layout.student_env
    if env.exists():
        shutil.rmtree(env)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next(env.glob("lib/python3*/site-packages"))
    course_site = next(VENV.glob("lib/python3*/site-packages"))
    (site / "bnlab-student.pth").write_text(f"{target}\n{course_site}\n")
    for shared in ("share", "etc"):  # JupyterLab's extensions and settings, the server extensions' config
        (env / shared).symlink_to(VENV / shared)
    return target


def check_reachable(user: str) -> None:
    """Fail clearly when ``user`` cannot run the course's Python (e.g. one installed under /root)."""
    result = subprocess.run(
        ["runuser", "-u", user, "--", sys.executable, "-c", "import jupyterhub, nbgrader"],
        capture_output=True, text=True, cwd="/",
    )  # fmt: skip
    if result.returncode != 0:
        raise HubError(
            f"user {user} cannot run the course's Python {sys.executable} ({result.stderr.strip()[-300:]}). "
            "Every user's server runs it: install Python 3.11 and the course where all users can read them "
            "(e.g. /usr/bin, /opt), or let them through the folders above (chmod o+x)."
        )


# Students' servers: no formgrader, course list or Create Assignment (server side and in JupyterLab's menus).
STUDENT_OFF = ("formgrader", "course_list")
STUDENT_LAB_OFF = ("formgrader", "course-list", "create-assignment")


def config_folder(layout: Layout, folder: Path, student: bool) -> None:
    """A Jupyter config folder for users' servers (``JUPYTER_CONFIG_PATH``): nbgrader's student settings
    and the hub's exchange; for students also the instructor's nbgrader parts switched off."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "jupyter" / "nbgrader_student_config.py").read_text()
    (folder / "nbgrader_config.py").write_text(text + f"c.Exchange.root = {str(layout.exchange)!r}\n")
    if student:
        off = {f"nbgrader.server_extensions.{x}": False for x in STUDENT_OFF}
        (folder / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": off}}))
        (folder / "labconfig").mkdir(exist_ok=True)
        disabled = {f"@jupyter/nbgrader:{x}": True for x in STUDENT_LAB_OFF}
        (folder / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": disabled}))


def prepare(layout: Layout) -> Layout:
    """Accounts, exchange, data, student environment, the grader's course; ``STATE/hub.json``."""
    require_root()
    check_reachable("nobody")  # before any account is made: can a user without rights run the course?
    install_proxy()
    state = Path(layout.state)
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o755)
    layout.passwords = {name: layout.passwords.get(name) or secrets.token_urlsafe(12) for name in layout.users}
    for name in layout.users:
        ensure_user(name, layout.passwords[name])
    layout.exchange.mkdir(exist_ok=True)
    os.chmod(layout.exchange, 0o1777)  # nbgrader: every user reads and writes the exchange root
    if layout.data.exists():
        shutil.rmtree(layout.data)
    shutil.copytree(settings.data_dir(), layout.data)  # MNIST (`make data`), readable by every user
    build_student_env(layout)
    config_folder(layout, state / "student-config", student=True)
    config_folder(layout, state / "teacher-config", student=False)
    course = layout.course
    if not course.exists():  # a course that exists holds a class's gradebook: never replaced here
        shutil.copytree(ROOT / "source", course / "source")
        shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
        _chown_tree(course, layout.user("grader"))
    readable = [layout.data, layout.student_env, state / "bundle", state / "student-config", state / "teacher-config"]
    for path in [p for folder in readable for p in [folder, *folder.rglob("*")]]:
        if not path.is_symlink():  # every user reads these (the hub's database and cookie secret stay private)
            os.chmod(path, os.stat(path).st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    layout.save()
    return layout


def course_env(layout: Layout) -> dict:
    """Environment of every course process on the hub (servers, formgrader, ``make autograde``)."""
    env = {
        "BNLAB_DATA_DIR": str(layout.data),
        "BNLAB_EXCHANGE": str(layout.exchange),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PATH": f"{VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",  # nbgrader runs `alembic` from PATH
    }
    if layout.short:
        env["BNLAB_SHORT"] = "1"
    return env


def _pre_spawn(layout: Layout, spawner) -> None:
    """Students run the bundle; the teacher (and anyone else) the course venv."""
    env = course_env(layout)
    state = Path(layout.state)
    if spawner.user.name in layout.students:
        python = layout.student_env / "bin" / "python"
        env["PATH"] = f"{layout.student_env / 'bin'}:{env['PATH']}"
        env["JUPYTER_CONFIG_PATH"] = str(state / "student-config")
    else:
        python = VENV / "bin" / "python"
        env["JUPYTER_CONFIG_PATH"] = str(state / "teacher-config")  # the exchange and course id for Assignments
    spawner.cmd = [str(python), "-m", "jupyterhub.singleuser"]
    spawner.environment = env


def configure(c, state: Path) -> None:
    """Fill JupyterHub's config ``c`` for the hub prepared in ``state`` (``jupyter/jupyterhub_config.py``)."""
    from functools import partial

    layout = Layout.load(state)
    ports = layout.ports()
    c.JupyterHub.ip = HOST
    c.JupyterHub.port = ports["hub"]
    c.JupyterHub.hub_ip = HOST
    c.JupyterHub.hub_port = ports["api"]
    c.ConfigurableHTTPProxy.command = [str(PROXY)]
    c.ConfigurableHTTPProxy.api_url = f"http://{HOST}:{ports['proxy_api']}"
    c.JupyterHub.db_url = f"sqlite:///{Path(state) / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(Path(state) / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(Path(state) / "jupyterhub.pid")
    c.JupyterHub.authenticator_class = "pam"
    c.Authenticator.allowed_users = set(layout.users)
    c.Authenticator.admin_users = {layout.user("teacher")}
    c.JupyterHub.spawner_class = "localprocess"
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 120
    c.Spawner.pre_spawn_hook = partial(_pre_spawn, layout)
    # Ctrl+C: each server gets time to shut its kernels down before SIGTERM (JupyterHub's default is 30 s, which
    # a loaded machine can exceed; a server killed then leaves its kernels running as the user)
    c.LocalProcessSpawner.interrupt_timeout = 45
    c.JupyterHub.load_groups = {GROUP: {"users": [layout.user("teacher"), layout.user("grader")]}}
    c.JupyterHub.load_roles = [
        {"name": "formgrader", "groups": [GROUP], "scopes": [f"access:services!service={COURSE_ID}"]},
    ]
    env = course_env(layout)
    c.JupyterHub.services = [
        {
            "name": COURSE_ID,
            "url": f"http://{HOST}:{ports['service']}",
            "user": layout.user("grader"),
            "cwd": str(layout.course),
            "command": [
                str(VENV / "bin" / "python"),
                "-m",
                "jupyterhub.singleuser",
                "--ServerApp.default_url=/formgrader",
            ],
            "environment": env,
            "oauth_no_confirm": True,
        }
    ]
    c.JupyterHub.cleanup_servers = True  # stopping the hub stops every server it started


def hub_command(layout: Layout) -> list[str]:
    return [str(VENV / "bin" / "jupyterhub"), "-f", str(ROOT / "jupyter" / "jupyterhub_config.py")]


def hub_env(layout: Layout) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BNLAB_", "JUPYTER"))}
    env["PATH"] = course_env(layout)["PATH"]
    return env


def leftovers(layout: Layout) -> list[int]:
    """Process ids still running as one of the hub's users (a zombie, already ended, is not counted)."""
    uids = {pwd.getpwnam(n).pw_uid for n in layout.users if exists(n)}
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


def describe_process(pid: int) -> str:
    """``pid``, its owner and its command line (for reports of what was left running); ``pid (gone)`` if ended."""
    try:
        owner = pwd.getpwuid(Path(f"/proc/{pid}").stat().st_uid).pw_name
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, KeyError):
        return f"{pid} (gone)"
    return f"{pid} {owner}: {command[:200]}"


def stop_leftovers(layout: Layout, grace: float = 20) -> list[int]:
    """After the hub stopped: wait up to ``grace`` seconds for its users' processes to end on their own (a
    server may still be shutting its kernels down), then kill what is left and wait until it is gone; return
    the ids that had to be killed."""
    deadline = time.monotonic() + grace
    while (pids := leftovers(layout)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while leftovers(layout) and time.monotonic() < deadline:
        time.sleep(0.2)
    return pids


def login_lines(layout: Layout) -> list[str]:
    url = f"http://{HOST}:{layout.port}/hub/login"
    lines = [f"JupyterHub for the course: {url} (loopback only; TLS and a public name: docs/jupyterhub.md)"]
    for role in ROLES:
        name = layout.user(role)
        lines.append(f"  {role:<8} user {name:<16} password {layout.passwords[name]}")
    lines.append(f"  the formgrader (teacher, grader): http://{HOST}:{layout.port}/services/{COURSE_ID}/formgrader")
    lines.append("Ctrl+C stops the hub and every server it started.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local JupyterHub for the course (docs/jupyterhub.md).")
    parser.add_argument("command", choices=["start", "prepare", "proxy", "remove-users"])
    parser.add_argument("--state", default="/srv/bnlab-hub", help="the hub's folder (default /srv/bnlab-hub)")
    parser.add_argument("--port", type=int, default=8000, help="the hub's port; the next three are used too")
    parser.add_argument("--prefix", default="bnhub-", help="prefix of the accounts' names (default bnhub-)")
    parser.add_argument("--short", action="store_true", help="students' training runs shortened (BNLAB_SHORT=1)")
    args = parser.parse_args(argv)
    try:
        if args.command == "proxy":
            print("configurable-http-proxy:", install_proxy())
            return 0
        state = Path(args.state).resolve()
        old = Layout.load(state).passwords if (state / STATE_FILE).exists() else {}
        layout = Layout(str(state), args.prefix, args.port, args.short, old)
        if args.command == "remove-users":
            require_root()
            remove_users(layout)
            return 0
        prepare(layout)
    except HubError as error:
        print(error, file=sys.stderr)
        return 2
    print("\n".join(login_lines(layout)))
    if args.command == "prepare":
        return 0
    process = subprocess.Popen(hub_command(layout), cwd=state, env=hub_env(layout))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill PID` stops it as Ctrl+C does
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGTERM)  # the hub stops its servers, the formgrader and the proxy
        return process.wait(timeout=180)
    finally:
        commands = {pid: describe_process(pid) for pid in leftovers(layout)}
        ended = stop_leftovers(layout)
        if ended:
            named = "; ".join(commands.get(pid) or str(pid) for pid in ended)
            print(f"ended {len(ended)} process(es) the hub left running as its users: {named}")


if __name__ == "__main__":
    sys.exit(main())
