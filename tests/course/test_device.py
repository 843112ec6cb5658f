"""bnlab.device.describe(): the one line at the top of every notebook saying what TensorFlow trains on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import bnlab
from bnlab import device

tf = bnlab.tf


def fake_gpu(index: int) -> SimpleNamespace:
    return SimpleNamespace(name=f"/physical_device:GPU:{index}", device_type="GPU")


def test_describe_on_this_machine():
    line = device.describe()
    assert "\n" not in line, "describe() must return a single line"
    assert f"TensorFlow {tf.__version__}" in line
    if tf.config.list_physical_devices("GPU"):
        assert "GPU(s)" in line and "[gpu]" not in line
    else:
        assert "CPU" in line and "[gpu]" in line, "on a CPU the line should say how to get GPU support"
        assert "pip install -e '.[gpu]'" in line


def test_cpu_branch(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    line = device.describe()
    assert line.startswith(f"TensorFlow {tf.__version__} will train on the CPU (")
    assert f"({device._cpu_count()} cores)" in line
    assert "[gpu]" in line and "\n" not in line


def test_gpu_branch_uses_device_names(monkeypatch):
    requested = []

    def list_physical_devices(kind=None):
        requested.append(kind)
        return [fake_gpu(0), fake_gpu(1)]

    names = {"/physical_device:GPU:0": "NVIDIA H100 80GB HBM3", "/physical_device:GPU:1": "NVIDIA A100-SXM4-40GB"}
    monkeypatch.setattr(tf.config, "list_physical_devices", list_physical_devices)
    monkeypatch.setattr(
        tf.config.experimental,
        "get_device_details",
        lambda gpu: {"device_name": names[gpu.name], "compute_capability": (9, 0)},
    )
    line = device.describe()
    assert requested == ["GPU"]
    assert line == (f"TensorFlow {tf.__version__} will train on 2 GPU(s): NVIDIA H100 80GB HBM3, NVIDIA A100-SXM4-40GB")
    assert "[gpu]" not in line and "CPU" not in line


@pytest.mark.parametrize("details", ["raise", "empty"])
def test_gpu_branch_survives_missing_details(monkeypatch, details):
    def get_device_details(gpu):
        if details == "raise":
            raise RuntimeError("device details are not available")
        return {}

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [fake_gpu(0)])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", get_device_details)
    line = device.describe()
    assert line == f"TensorFlow {tf.__version__} will train on 1 GPU(s): /physical_device:GPU:0"


def test_print_device(monkeypatch, capsys):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    device.print_device()
    captured = capsys.readouterr()
    assert captured.out == device.describe() + "\n"
    assert captured.err == ""


def test_cpu_count_is_positive():
    assert device._cpu_count() >= 1
