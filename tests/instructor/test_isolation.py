"""The sandbox that student code runs in while it is graded (bnlab.instructor.isolation), tested directly:
what a sandboxed process can read, write and reach, and that nothing it starts outlives it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from bnlab.instructor import isolation

AVAILABLE, WHY = isolation.available()
needs_sandbox = pytest.mark.skipif(
    not AVAILABLE and os.environ.get("CI") != "true", reason=f"no sandbox on this machine: {WHY}"
)

PROBE = textwrap.dedent("""
    import json, os, socket, subprocess, sys
    secret, package, port, marker, grader = sys.argv[1:6]
    seen = {}
    def attempt(name, action):
        try:
            seen[name] = action() is not False
        except Exception as error:
            seen[name] = type(error).__name__
    attempt("read_secret", lambda: open(secret).read())
    attempt("list_course", lambda: "source" in os.listdir(os.path.dirname(os.path.dirname(secret))))
    attempt("write_package", lambda: open(os.path.join(package, "pwned_" + marker + ".py"), "w").write("x"))
    attempt("write_work", lambda: open("answer.txt", "w").write("mine"))
    attempt("write_tmp", lambda: open("/tmp/pwned_" + marker, "w").write("x"))
    attempt("signal_grader", lambda: os.kill(int(grader), 0))
    attempt("connect", lambda: socket.create_connection(("127.0.0.1", int(port)), timeout=2).close())
    seen["secret_env"] = os.environ.get("INSTRUCTOR_TOKEN")
    seen["home"] = os.environ.get("HOME")
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker], start_new_session=True)
    if os.fork() == 0:  # a double fork: the grandchild is reparented inside the sandbox
        if os.fork() == 0:
            os.setsid()
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", marker])
        os._exit(0)
    print(json.dumps(seen), flush=True)
""")


def _alive(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


# run as its own process (as another user too): makes the sandbox, runs PROBE in it, prints what it saw
RUNNER = textwrap.dedent("""
    import os, subprocess, sys
    from bnlab.instructor import isolation
    probe, secret, work, port, marker = sys.argv[1:6]
    sandbox = isolation.Sandbox(work)
    try:
        cmd = sandbox.command([sys.executable, "-c", probe, secret, str(isolation.PACKAGE), port, marker,
                               str(os.getpid())])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env=isolation.sandbox_env({**os.environ, "INSTRUCTOR_TOKEN": "token"}))
    finally:
        sandbox.close()
    sys.stderr.write(proc.stderr)
    print(proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else "")
""")


def _run_probe(tmp_path: Path, user: str | None = None, python: str | None = None) -> tuple[dict, Path, str]:
    import json

    course = tmp_path / "course"
    (course / "source").mkdir(parents=True)
    secret = course / "source" / "solution.txt"
    secret.write_text("the answers")
    work = course / "autograded" / "ann" / "hw"
    work.mkdir(parents=True)
    (work / "notebook.ipynb").write_text("{}")
    marker = f"bnlab-probe-{uuid.uuid4().hex}"
    if user:
        for path in [tmp_path, *tmp_path.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
    with socket.create_server(("127.0.0.1", 0)) as server:
        cmd = [
            python or sys.executable,
            "-c",
            RUNNER,
            PROBE,
            str(secret),
            str(work),
            str(server.getsockname()[1]),
            marker,
        ]
        if user:  # the course library from the checkout (PYTHONPATH) when the venv's Python is private to root
            cmd = ["runuser", "-u", user, "--", "env", f"PYTHONPATH={isolation.PACKAGE.parent}", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), work, marker


def _assert_contained(seen: dict, work: Path, marker: str) -> None:
    assert seen["read_secret"] != True and seen["list_course"] != True, seen  # noqa: E712 - True or an error name
    assert seen["write_package"] != True, seen  # noqa: E712
    assert not list(isolation.PACKAGE.glob(f"pwned_{marker}*"))
    assert seen["write_work"] is True and not (work / "answer.txt").exists()  # a private copy, thrown away
    assert seen["write_tmp"] is True and not Path(f"/tmp/pwned_{marker}").exists()  # a private /tmp
    assert seen["connect"] != True, seen  # noqa: E712 - not even loopback
    assert seen["signal_grader"] == "ProcessLookupError", seen  # the grader's processes are not in its PID namespace
    assert seen["secret_env"] is None and seen["home"] == "/tmp/home"
    deadline = time.monotonic() + 5
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(marker) == [], "a process started by the sandboxed code outlived it"


@needs_sandbox
def test_sandboxed_code_sees_only_its_own_copy_and_leaves_nothing(tmp_path):
    seen, work, marker = _run_probe(tmp_path)
    _assert_contained(seen, work, marker)


UNPRIVILEGED = "bnlab-sandbox-test"


def _unprivileged_user() -> str | None:
    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("useradd") is None:
        return None
    if subprocess.run(["id", UNPRIVILEGED], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", UNPRIVILEGED], check=True)
    return UNPRIVILEGED


def _runs_as(user: str, python: str) -> bool:
    """Whether ``user`` can run ``python`` with the course library on PYTHONPATH (bnlab.instructor.isolation
    imported)."""
    code = "import sys; assert sys.version_info[:2] == (3, 11); import bnlab.instructor.isolation"
    return (
        subprocess.run(
            ["runuser", "-u", user, "--", "env", f"PYTHONPATH={isolation.PACKAGE.parent}", python, "-c", code],
            capture_output=True,
            cwd="/",
        ).returncode
        == 0
    )


@needs_sandbox
def test_the_sandbox_works_for_an_unprivileged_instructor(tmp_path):
    user = _unprivileged_user()
    if user is None:
        pytest.skip(
            "needs root (to create a throwaway user) and runuser: run as an ordinary user, "
            "test_sandboxed_code_sees_only_its_own_copy_and_leaves_nothing covers it"
        )
    # the venv's Python, or else the system's (the sandbox needs only the standard library and bnlab itself)
    python = next(
        (
            exe
            for exe in (sys.executable, shutil.which("python3.11") or "", "/usr/bin/python3")
            if exe and _runs_as(user, exe)
        ),
        None,
    )
    if python is None:
        pytest.skip(
            "no Python 3.11 here that another user may run with the course library (the venv's lies in a "
            "folder private to root)"
        )
    unprivileged = subprocess.run(
        ["runuser", "-u", user, "--", "bwrap", "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "true"],
        capture_output=True,
        text=True,
    )
    assert unprivileged.returncode == 0, "bubblewrap does not run for an unprivileged user here: " + unprivileged.stderr
    shared = Path(tempfile.mkdtemp(prefix="bnlab-unprivileged-"))  # pytest's own tmp folders are private to root
    try:
        seen, work, marker = _run_probe(shared, user=user, python=python)
        _assert_contained(seen, work, marker)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_policy_require_refuses_and_off_skips(monkeypatch):
    monkeypatch.setattr(isolation, "available", lambda: (False, "bubblewrap is not installed"))
    monkeypatch.setenv("BNLAB_ISOLATION", "require")
    with pytest.raises(isolation.IsolationUnavailable, match="bubblewrap is not installed"):
        isolation.check()
    monkeypatch.setenv("BNLAB_ISOLATION", "auto")
    assert isolation.check() is False
    monkeypatch.setenv("BNLAB_ISOLATION", "off")
    assert isolation.check() is False
    monkeypatch.setenv("BNLAB_ISOLATION", "sometimes")
    with pytest.raises(ValueError, match="BNLAB_ISOLATION"):
        isolation.check()


def test_the_environment_keeps_what_a_kernel_needs_and_drops_the_rest():
    env = isolation.sandbox_env(
        {
            "AWS_SECRET_ACCESS_KEY": "x",
            "NBGRADER_EXECUTION": "autograde",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "BNLAB_COURSE_ROOT": "/course",
            "LANG": "C.UTF-8",
            "PYTHONPATH": "/course",
        }
    )
    assert "AWS_SECRET_ACCESS_KEY" not in env and "BNLAB_COURSE_ROOT" not in env and "PYTHONPATH" not in env
    assert env["NBGRADER_EXECUTION"] == "autograde" and env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert env["HOME"] == "/tmp/home" and env["BNLAB_SANDBOXED"] == "1"


# Each resource attack, against a sandbox whose limits are small so that it stays cheap: the attack holds
# what it took (as a real one would) and says how far it got.
HOLD = "import time; time.sleep(20)"
FILL = textwrap.dedent("""
    def fill(path):  # until the file system is full, and no error
        try:
            with open(path, "wb") as handle:
                for _ in range(96):
                    handle.write(b"1" * (1 << 20))
        except OSError:
            pass
""")
RESOURCE_ATTACKS = {
    "tmp_fill": FILL + "fill('/tmp/fill')\n" + HOLD,
    "work_fill": FILL + "fill('fill')\n" + HOLD,
    "shm_fill": FILL + "fill('/dev/shm/fill')\n" + HOLD,
    "memory_in_tmpfs": "open('/tmp/f', 'wb').write(b'1' * (56 << 20))\nopen('f', 'wb').write(b'1' * (56 << 20))\n"
    "block = b'1' * (100 << 20)\n" + HOLD,
    "memory": "blocks = [b'1' * (32 << 20) for _ in range(192)]\n" + HOLD,  # 6 GiB
    "processes": "import subprocess\nprocs = []\ntry:\n    for _ in range(500):\n"
    "        procs.append(subprocess.Popen(['sleep', '60']))\nexcept OSError:\n    pass\n" + HOLD,
    "wall": HOLD,
    "root_write": "open('/pwned', 'w')",
    "dev_write": "open('/dev/pwned', 'w')",
}
SMALL = isolation.SandboxLimits(
    memory_bytes=200 * isolation.MiB,
    tmp_bytes=64 * isolation.MiB,
    work_bytes=64 * isolation.MiB,
    shm_bytes=16 * isolation.MiB,
    processes=32,
    wall_seconds=4,
)
EXPECTED_STOP = {
    "tmp_fill": "filled /tmp to its limit",
    "work_fill": "filled the working folder to its limit",
    "shm_fill": "filled /dev/shm to its limit",
    "memory_in_tmpfs": "files in memory",
    "memory": "of memory",
    "processes": "processes, over the sandbox's limit of 32",
    "wall": "still running at the grading time limit",
}


@needs_sandbox
@pytest.mark.parametrize("attack", sorted(RESOURCE_ATTACKS))
def test_a_resource_attack_is_bounded_named_and_leaves_nothing(tmp_path, attack):
    work = tmp_path / "work"
    work.mkdir()
    (work / "answer.py").write_text("x = 1\n")
    before = shutil.disk_usage(tmp_path).used
    sandbox = isolation.Sandbox(work, limits=SMALL)
    marker = f"bnlab-res-{uuid.uuid4().hex}"
    code = f"# {marker}\nassert open('answer.py').read() == 'x = 1\\n'\n" + RESOURCE_ATTACKS[attack]
    try:
        start = time.monotonic()
        proc = subprocess.Popen(
            sandbox.command([sys.executable, "-c", code]),
            env=isolation.sandbox_env(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sandbox.watch(proc.pid)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - start
    finally:
        sandbox.close()
    if attack in EXPECTED_STOP:
        assert sandbox.stopped and EXPECTED_STOP[attack] in sandbox.stopped, (sandbox.stopped, err[-2000:])
        assert proc.returncode == -9 and took < 15, (proc.returncode, took)
    else:  # a read-only root and /dev: the write fails at once
        assert "Read-only file system" in err and sandbox.stopped is None, err[-2000:]
    assert sandbox.peak_bytes < 1.5 * isolation.GiB  # sampled every 0.1 s: an allocation overshoots that much
    assert list(work.iterdir()) == [work / "answer.py"]  # nothing written into the real folder
    assert shutil.disk_usage(tmp_path).used - before < 32 * isolation.MiB  # nor onto the host's disk
    assert not sandbox.root.exists()
    deadline = time.monotonic() + 5
    while _alive("sleep 60") and _alive_in(sandbox) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(marker) == []


def _alive_in(sandbox) -> bool:
    return any(str(sandbox.root) in line for line in _alive("bwrap"))


@needs_sandbox
def test_an_honest_process_runs_within_the_default_limits(tmp_path):
    """The defaults leave room for the course's kernels: TensorFlow imports and trains a step."""
    sandbox = isolation.Sandbox(tmp_path)
    code = "import bnlab, numpy; print(numpy.ones((512, 512)).sum())"
    try:
        proc = subprocess.Popen(
            sandbox.command([sys.executable, "-c", code]),
            env=isolation.sandbox_env(os.environ),
            stdout=subprocess.PIPE,
            text=True,
        )
        sandbox.watch(proc.pid)
        out, _ = proc.communicate(timeout=120)
    finally:
        sandbox.close()
    assert proc.returncode == 0 and out.strip() == "262144.0" and sandbox.stopped is None
    assert "1 GiB" in isolation.SandboxLimits().describe()


def test_package_folders_are_found_on_disk_and_never_nested(tmp_path, monkeypatch):
    """The folders a sandbox hides (Part 4's TensorFlow and Keras) are the packages' folders on sys.path, as a fresh
    interpreter finds them, whatever a package loaded here made of its __path__ (TensorFlow adds its subfolders:
    bubblewrap could not mount over a folder inside one already hidden)."""
    site = tmp_path / "site"
    for name in ("alpha", "beta"):
        (site / name / "inner").mkdir(parents=True)
        (site / name / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(isolation, "readable_paths", lambda: [tmp_path])
    loaded = type(sys)("alpha")
    loaded.__path__ = [str(site / "alpha"), str(site / "alpha" / "inner")]
    monkeypatch.setitem(sys.modules, "alpha", loaded)
    assert isolation.package_folders(["alpha", "beta", "not_installed_here"]) == [site / "alpha", site / "beta"]
    monkeypatch.setattr(isolation, "readable_paths", lambda: [tmp_path / "elsewhere"])
    assert isolation.package_folders(["alpha"]) == []  # not visible in the sandbox: nothing to hide


@needs_sandbox
def test_a_hidden_folder_is_empty_and_read_only_inside(tmp_path):
    """Keras' folder, readable in every sandbox (the control), is empty and read-only in one that hides it."""
    keras = isolation.package_folders(["keras"])
    if not keras:
        pytest.skip("Keras is not installed where a sandbox can read it")
    command = "import os, sys; print(len(os.listdir(sys.argv[1]))); open(sys.argv[1] + '/x.py', 'w')"
    seen = []
    for hidden in ((), keras):
        sandbox = isolation.Sandbox(tmp_path, hidden=hidden)
        try:
            done = subprocess.run(
                sandbox.command([sys.executable, "-c", command, str(keras[0])]),
                capture_output=True,
                text=True,
                timeout=60,
                env=isolation.sandbox_env(dict(os.environ)),
            )
        finally:
            sandbox.close()
        seen.append((int(done.stdout.strip()), "Read-only file system" in done.stderr))
    assert seen[0][0] > 0 and seen[1] == (0, True), seen
