"""`import bnlab` keeps TensorFlow quiet: nothing on stderr, at import or in later notebook cells.

nbgrader gives zero points to a test cell that writes to stderr, so this is a grading matter.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnlab import _quiet

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_import_writes_nothing_to_stderr():
    code = "import os, bnlab; print('level', os.environ['TF_CPP_MIN_LOG_LEVEL']); print('tf', bnlab.tf.__version__)"
    result = run_python(code, TF_CPP_MIN_LOG_LEVEL=None)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"`import bnlab` wrote to stderr:\n{result.stderr}"
    assert "level 3" in result.stdout, "bnlab should raise TensorFlow's C++ log threshold when the user set none"
    assert "tf 2.21" in result.stdout


def test_user_log_level_is_respected():
    code = "import os, bnlab; print('level', os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    result = run_python(code, TF_CPP_MIN_LOG_LEVEL="1")
    assert result.returncode == 0, result.stderr
    assert "level 1" in result.stdout, "a TF_CPP_MIN_LOG_LEVEL set by the user must not be overridden"


def test_silenced_fd2_hides_fd_level_writes_and_restores(capfd):
    os.write(2, b"before\n")
    with _quiet.silenced_fd2():
        os.write(2, b"hidden C++ noise\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "before" in err and "after" in err, "fd 2 must work again after the block"
    assert "hidden" not in err


def test_silenced_fd2_restores_after_an_exception(capfd):
    with pytest.raises(ZeroDivisionError):
        with _quiet.silenced_fd2():
            1 / 0
    os.write(2, b"still here\n")
    assert "still here" in capfd.readouterr().err


def test_python_loggers_raised_to_error():
    tf = _quiet.import_tensorflow()
    assert tf.get_logger().getEffectiveLevel() >= logging.ERROR
    from absl import logging as absl_logging

    assert absl_logging.get_verbosity() <= absl_logging.ERROR  # absl: higher number = more verbose


CELLS = [
    "import bnlab",
    "import sys\nprint(sys.executable)",
    "bnlab.device.print_device()",
    # A small Keras model, fitted for an epoch on random data.
    "import numpy as np\n"
    "keras = bnlab.tf.keras\n"
    "model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation='relu'),\n"
    "                          keras.layers.BatchNormalization(), keras.layers.Dense(3)])\n"
    "model.compile(optimizer='adam', loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
    "history = model.fit(np.random.rand(64, 8).astype('float32'), np.random.randint(0, 3, 64), epochs=1,\n"
    "                    batch_size=16, verbose=0)\n"
    "print('loss', history.history['loss'][0])",
    "model.predict(np.random.rand(5, 8).astype('float32'), verbose=0).shape",
    # Retracing: TensorFlow's Python logger warns about it (stderr in scripts, stdout in a kernel).
    "tf = bnlab.tf\n"
    "for n in range(1, 9):\n"
    "    f = tf.function(lambda x: tf.reduce_sum(x * 2.0))\n"
    "    f(tf.ones((n,)))\n"
    "@tf.function\n"
    "def scale(x, k):\n"
    "    return x * k\n"
    "for k in range(8):\n"
    "    scale(tf.ones((2,)), k)  # a Python number: one trace per value\n"
    "g = tf.function(lambda x: tf.reduce_mean(x))\n"
    "print([float(g(tf.ones((n, 2)))) for n in range(1, 9)])",
    # A Keras layer called eagerly, and a tf.nn batch normalization like the exercise writes.
    "x = tf.random.normal((32, 4))\n"
    "mean, variance = tf.nn.moments(x, axes=[0])\n"
    "y = tf.nn.batch_normalization(x, mean, variance, offset=None, scale=None, variance_epsilon=1e-3)\n"
    "print(round(float(tf.reduce_mean(y)), 3))",
]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_notebook_after_import_bnlab_has_no_stderr(tmp_path):
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    env_note = os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the kernel inherits our environment
    try:
        client = nbclient.NotebookClient(
            nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
    finally:
        if env_note is not None:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = env_note

    noisy = []
    for index, cell in enumerate(nb.cells):
        for output in cell.outputs:
            assert output.output_type != "error", f"cell {index} failed: {output.get('evalue')}"
            if output.output_type == "stream" and output.name == "stderr":
                noisy.append(f"cell {index}: {output.text}")
    assert not noisy, "cells wrote to stderr (nbgrader would give zero points):\n" + "\n".join(noisy)
    warnings = [
        f"cell {i}: {o.text}"
        for i, cell in enumerate(nb.cells)
        for o in cell.outputs
        if o.output_type == "stream" and ("WARNING" in o.text or "retracing" in o.text)
    ]
    assert not warnings, "TensorFlow warnings should be silenced after `import bnlab`:\n" + "\n".join(warnings)

    def stdout(index):
        return "".join(o.text for o in nb.cells[index].outputs if o.output_type == "stream")

    assert Path(stdout(1).strip()).parent == Path(sys.executable).parent, "the kernel should run the course's Python"
    assert "TensorFlow 2.21" in stdout(2)
    assert "loss" in stdout(3)
    assert nb.cells[4].outputs[0]["data"]["text/plain"] == "(5, 3)"
    assert stdout(5).strip() == str([1.0] * 8)
    assert stdout(6).strip() in ("0.0", "-0.0")


def test_tooling_modules_do_not_import_tensorflow():
    """Release, feedback and the exercise definition are used by nbgrader's side: no TensorFlow there."""
    code = (
        "import sys, bnlab.instructor.preprocessors.feedback, bnlab.instructor.release, bnlab.exercise\n"
        "print('tf loaded' if 'tensorflow' in sys.modules else 'tf absent')"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "tf absent" in result.stdout, "importing bnlab's tooling modules must not load TensorFlow"


def test_a_graded_kernel_does_not_pay_for_nbformat():
    """The notebook's imports leave nbformat (and its 2-second jsonschema import) to the tooling."""
    code = (
        "import sys, bnlab\nbnlab.tf\nfrom bnlab import grading, nn, questions, training, data\n"
        "print(sorted(m for m in ('nbformat', 'jsonschema') if m in sys.modules))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", "a module the notebook imports pulled in nbformat; import it lazily"
