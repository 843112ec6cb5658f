"""Import TensorFlow without the log noise it writes to stderr.

TensorFlow's C++ runtime prints notes (oneDNN, CUDA drivers, CPU features) straight to file
descriptor 2 while it is imported, before any log level applies; in a notebook they show as red
error text under a cell that did nothing wrong, and a check cell counts anything on stderr as an error.
We import it once with fd 2 pointed at /dev/null, then
raise the log thresholds so that later cells stay quiet too. ``TF_CPP_MIN_LOG_LEVEL`` set by the
user beforehand is respected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings


@contextlib.contextmanager
def silenced_fd2():
    """Point file descriptor 2 at /dev/null for the duration (Python-level errors still surface)."""
    try:
        sys.stderr.flush()
    except Exception:  # pragma: no cover - exotic stderr objects
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all (some embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Return the ``tensorflow`` module, imported quietly the first time."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        with silenced_fd2():
            import tensorflow  # noqa: F401
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    warnings.filterwarnings("ignore", module=r"(tensorflow|keras)(\..*)?")
    return tf
