"""What TensorFlow will train on, in one line for the top of every notebook."""

from __future__ import annotations

import bnlab

GPU_HINT = (
    "for GPU support on a machine with an NVIDIA GPU, install the course with the 'gpu' extra: pip install -e '.[gpu]'"
)


def describe() -> str:
    """One line: the GPU(s) TensorFlow sees, or the CPU with a hint how to get GPU support."""
    tf = bnlab.tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            try:
                details = tf.config.experimental.get_device_details(gpu)
            except Exception:  # details are optional; never fail the start-up line on them
                details = {}
            names.append(details.get("device_name", gpu.name))
        return f"TensorFlow {tf.__version__} will train on {len(gpus)} GPU(s): {', '.join(names)}"
    return f"TensorFlow {tf.__version__} will train on the CPU ({_cpu_count()} cores); {GPU_HINT}"


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def print_device() -> None:
    """Print :func:`describe`'s line."""
    print(describe())
