"""`make hub`'s configuration (bnlab.instructor.hub.configure) and its refusal without root, without starting
a hub: loopback only, the formgrader a service of the grader account reachable through one group role, no
``inherit`` role, students' servers on the student environment. tests/browser/test_hub.py runs the real hub.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from types import SimpleNamespace

from traitlets.config import Config

from bnlab.instructor import hub


def prepared(tmp_path, monkeypatch) -> hub.Layout:
    monkeypatch.setattr(hub, "home", lambda user: f"/home/{user}")  # no accounts are created here
    layout = hub.Layout(str(tmp_path), "cls-", 18000, short=True, passwords={"cls-ada": "secret"})
    layout.save()
    return layout


def test_the_layout_is_saved_private_and_read_back(tmp_path, monkeypatch):
    layout = prepared(tmp_path, monkeypatch)
    path = tmp_path / hub.STATE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "hub.json holds the passwords"
    again = hub.Layout.load(tmp_path)
    assert again == layout and again.users == ["cls-teacher", "cls-grader", "cls-ada", "cls-bob"]
    assert json.loads(path.read_text())["short"] is True


def test_the_hub_listens_on_loopback_and_the_formgrader_is_a_service_of_the_grader(tmp_path, monkeypatch):
    layout = prepared(tmp_path, monkeypatch)
    c = Config()
    hub.configure(c, tmp_path)
    assert c.JupyterHub.ip == c.JupyterHub.hub_ip == "127.0.0.1"
    assert c.ConfigurableHTTPProxy.api_url.startswith("http://127.0.0.1:")
    assert c.JupyterHub.authenticator_class == "pam" and c.JupyterHub.spawner_class == "localprocess"
    assert c.Authenticator.allowed_users == set(layout.users)
    (service,) = c.JupyterHub.services
    assert service["name"] == hub.COURSE_ID and service["user"] == "cls-grader"
    assert service["url"].startswith("http://127.0.0.1:") and service["cwd"] == "/home/cls-grader/course"
    assert service["environment"]["BNLAB_EXCHANGE"] == str(layout.exchange)
    assert c.JupyterHub.load_groups == {hub.GROUP: {"users": ["cls-teacher", "cls-grader"]}}
    roles = c.JupyterHub.load_roles
    assert roles == [{"name": "formgrader", "groups": [hub.GROUP], "scopes": ["access:services!service=batchnorm"]}]
    assert not any("inherit" in role.get("scopes", []) for role in roles), "no server gets the inherit role"


def test_students_run_the_student_environment_and_the_teacher_the_course(tmp_path, monkeypatch):
    layout = prepared(tmp_path, monkeypatch)
    spawners = {name: SimpleNamespace(user=SimpleNamespace(name=name)) for name in ("cls-ada", "cls-teacher")}
    for spawner in spawners.values():
        hub._pre_spawn(layout, spawner)
    ada, teacher = spawners["cls-ada"], spawners["cls-teacher"]
    assert ada.cmd == [str(layout.student_env / "bin" / "python"), "-m", "jupyterhub.singleuser"]
    assert ada.environment["JUPYTER_CONFIG_PATH"] == str(tmp_path / "student-config")
    assert ada.environment["BNLAB_SHORT"] == "1" and ada.environment["BNLAB_DATA_DIR"] == str(layout.data)
    assert teacher.cmd == [str(hub.VENV / "bin" / "python"), "-m", "jupyterhub.singleuser"]
    assert teacher.environment["JUPYTER_CONFIG_PATH"] == str(tmp_path / "teacher-config")


def test_students_config_switches_the_instructors_parts_off_and_names_the_exchange(tmp_path):
    layout = hub.Layout(str(tmp_path))
    hub.config_folder(layout, tmp_path / "student-config", student=True)
    server = json.loads((tmp_path / "student-config" / "jupyter_server_config.json").read_text())
    assert server["ServerApp"]["jpserver_extensions"]["nbgrader.server_extensions.formgrader"] is False
    page = json.loads((tmp_path / "student-config" / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"]["@jupyter/nbgrader:create-assignment"] is True
    config = (tmp_path / "student-config" / "nbgrader_config.py").read_text()
    assert f"c.Exchange.root = {str(layout.exchange)!r}" in config and '"batchnorm"' in config


def test_without_root_it_says_to_run_as_root_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hub.os, "geteuid", lambda: 1000)
    state = tmp_path / "state"
    assert hub.main(["start", "--state", str(state)]) == 2
    assert "sudo make hub" in capsys.readouterr().err
    assert not Path(state).exists()
