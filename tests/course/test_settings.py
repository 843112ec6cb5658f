"""bnlab.settings: each environment variable read and validated in one place, without TensorFlow."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bnlab
from bnlab import settings

VARIABLES = (
    "BNLAB_SHORT",
    "BNLAB_SHORT_BATCHES",
    "BNLAB_DATA_DIR",
    "BNLAB_DETERMINISTIC",
    "BNLAB_COURSE_ROOT",
    "BNLAB_EXCHANGE",
    "BNLAB_ISOLATION",
    "NBGRADER_EXECUTION",
)


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_short_mode_follows_nbgrader_and_the_override(monkeypatch):
    assert not settings.short_mode() and not bnlab.short_mode()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert settings.short_mode() and bnlab.short_mode()
    monkeypatch.setenv("BNLAB_SHORT", "0")
    assert not settings.short_mode()
    monkeypatch.delenv("NBGRADER_EXECUTION")
    monkeypatch.setenv("BNLAB_SHORT", "yes")
    assert settings.short_mode()


def test_short_runs_are_shorter_under_nbgrader_than_for_a_person(monkeypatch):
    assert settings.short_batches() == settings.SHORT_BATCHES
    monkeypatch.setenv("BNLAB_SHORT", "1")
    assert settings.evaluation_images() == settings.SHORT_EVALUATION
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    assert settings.short_batches() == settings.GRADING_BATCHES < settings.SHORT_BATCHES
    assert settings.evaluation_images() == settings.GRADING_EVALUATION < settings.SHORT_EVALUATION
    monkeypatch.setenv("BNLAB_SHORT_BATCHES", "7")
    assert settings.short_batches() == 7
    monkeypatch.setenv("BNLAB_SHORT", "0")
    assert settings.evaluation_images() is None


@pytest.mark.parametrize("value", ["many", "0", "-3", "2.5"])
def test_a_bad_batch_count_says_what_to_write(monkeypatch, value):
    monkeypatch.setenv("BNLAB_SHORT_BATCHES", value)
    with pytest.raises(settings.SettingError, match="BNLAB_SHORT_BATCHES must be a whole number"):
        settings.short_batches()


@pytest.mark.parametrize(
    "name, read", [("BNLAB_SHORT", settings.short_mode), ("BNLAB_DETERMINISTIC", settings.deterministic)]
)
def test_a_flag_that_is_neither_on_nor_off_is_refused(monkeypatch, name, read):
    monkeypatch.setenv(name, "maybe")
    with pytest.raises(settings.SettingError, match=f"{name}='maybe': use 1"):
        read()


def test_determinism_is_on_unless_turned_off(monkeypatch):
    assert settings.deterministic()
    monkeypatch.setenv("BNLAB_DETERMINISTIC", "false")
    assert not settings.deterministic()


def test_paths(monkeypatch, tmp_path):
    assert settings.data_dir() == Path.home() / ".cache" / "bnlab" / "mnist"
    monkeypatch.setenv("BNLAB_DATA_DIR", str(tmp_path))
    assert settings.data_dir() == tmp_path
    assert settings.course_root("/repo") == "/repo"
    monkeypatch.setenv("BNLAB_COURSE_ROOT", str(tmp_path))
    assert settings.course_root("/repo") == str(tmp_path)
    assert settings.exchange() is None


def test_the_command_prints_the_settings_in_effect_and_refuses_bad_ones(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    shown = subprocess.run(
        [sys.executable, "-m", "bnlab.settings"],
        env={**env, "NBGRADER_EXECUTION": "autograde", "BNLAB_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "short mode (BNLAB_SHORT)" in shown and str(tmp_path) in shown
    assert f"{settings.GRADING_BATCHES}\n" in shown
    bad = subprocess.run(
        [sys.executable, "-m", "bnlab.settings"],
        env={**env, "BNLAB_SHORT_BATCHES": "x"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "BNLAB_SHORT_BATCHES must be a whole number" in bad.stderr


def test_no_other_module_reads_these_variables():
    package = Path(settings.__file__).parent
    reads = re.compile(r"(environ\.get\(|environ\[|getenv\()[\"'](%s)[\"']" % "|".join(VARIABLES))
    readers = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "settings.py" and reads.search(path.read_text())
    ]
    assert readers == [], f"read these variables through bnlab.settings: {readers}"
    config = (package.parent / "nbgrader_config.py").read_text()
    assert "os.environ" not in config
