"""`make lab` starts JupyterLab on the student notebooks in release/ (loopback only, no browser)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) != 0


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_lab_serves_the_release_folder(tmp_path):
    expected = sorted(p.name for p in (REPO_ROOT / "release").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert "batch_norm_exercises" in expected, "release/ should hold the student assignment"
    port = free_port()
    log_path = tmp_path / "lab.log"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    lab_args = f"--no-browser --ServerApp.token= --ServerApp.password= --ServerApp.ip={HOST}"
    if os.geteuid() == 0:  # CI containers run as root, which Jupyter refuses without this flag
        lab_args += " --allow-root"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["make", "lab", f"PORT={port}", f"LAB_ARGS={lab_args}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base = f"http://{HOST}:{port}"
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"make lab exited early with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                status, _ = get(f"{base}/api/status", timeout=2)
                if status == 200:
                    break
            except OSError:  # not listening yet
                pass
            time.sleep(1)
        else:
            pytest.fail(f"JupyterLab did not answer on port {port} within 120 s:\n{log_path.read_text()[-3000:]}")

        status, page = get(f"{base}/lab")
        assert status == 200, f"/lab answered {status}"
        assert b"JupyterLab" in page or b"jupyter-config-data" in page

        status, body = get(f"{base}/api/contents")
        assert status == 200, f"/api/contents answered {status}"
        root = json.loads(body)
        assert root["type"] == "directory" and root["path"] == ""
        listed = sorted(item["name"] for item in root["content"] if item["type"] == "directory")
        assert listed == expected, f"the lab's root should be release/: lists {listed}"
        assert not any(item["name"] in ("bnlab", "source", "solutions") for item in root["content"]), (
            "students must not see the repository root (source/ holds the solutions)"
        )

        status, body = get(f"{base}/api/contents/batch_norm_exercises")
        assert status == 200
        notebooks = [item["name"] for item in json.loads(body)["content"] if item["type"] == "notebook"]
        assert notebooks, "the exercise folder should hold a notebook"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            pytest.fail("make lab did not stop on SIGTERM within 30 s")
    for _ in range(20):  # the server's child processes may take a moment to release the port
        if port_is_closed(port):
            break
        time.sleep(0.5)
    assert port_is_closed(port), "JupyterLab still listens after its process group was terminated"


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_lab_settings_installs_the_quiet_settings(tmp_path):
    """`make lab-settings LAB_PREFIX=...` puts the course's settings where JupyterLab reads them."""
    from jupyterlab_server.config import get_federated_extensions
    from jupyterlab_server.settings_utils import _get_overrides

    result = subprocess.run(
        ["make", "--no-print-directory", "lab-settings", f"LAB_PREFIX={tmp_path}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    overrides, error = _get_overrides(str(tmp_path / "share" / "jupyter" / "lab" / "settings"))
    assert not error
    assert overrides["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false", "checkForUpdates": False}
    config = json.loads((tmp_path / "etc" / "jupyter" / "jupyter_lab_config.json").read_text())
    assert config["LabApp"]["news_url"] is None
    assert config["LabApp"]["check_for_updates_class"] == "jupyterlab.NeverCheckForUpdate"
    # the Validate message (jupyter/validate-extension): JupyterLab finds it as a prebuilt extension
    found = get_federated_extensions([str(tmp_path / "share" / "jupyter" / "labextensions")])
    assert list(found) == ["bnlab-validate"], found
    build = found["bnlab-validate"]["jupyterlab"]["_build"]
    assert (Path(found["bnlab-validate"]["ext_path"]) / build["load"]).is_file()
    assert build["extension"] == "./extension"
