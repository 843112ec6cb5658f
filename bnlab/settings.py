"""Every environment variable the course reads, read and validated here and nowhere else.

=======================  ==========================  ===============================================
variable                 default                     effect
=======================  ==========================  ===============================================
``BNLAB_SHORT``          on under nbgrader, else off ``1``: every training run is shortened (CI,
                                                     a quick pass); ``0``: full runs, even under
                                                     nbgrader
``BNLAB_SHORT_BATCHES``  40 (10 under nbgrader)      batches per shortened run
``BNLAB_DATA_DIR``       ``~/.cache/bnlab/mnist``    where MNIST is cached
``BNLAB_DETERMINISTIC``  ``1``                       ``0`` turns TensorFlow's op determinism off
``BNLAB_COURSE_ROOT``    the repository              the nbgrader course folder (scratch courses of
                                                     the tooling point it at their copies)
``BNLAB_EXCHANGE``       nbgrader's default          folder of nbgrader's exchange on a shared machine
``BNLAB_ISOLATION``      ``auto``                    student code under grading runs in bubblewrap:
                                                     ``auto`` where it can, ``require`` refuses
                                                     without it, ``off`` never (trusted work only)
``BNLAB_STUDENT``        (set by the grader)         the id a graded kernel is graded under: its
                                                     questions are drawn for it (``bnlab.variants``)
``JUPYTERHUB_USER``      (set by JupyterHub)         read only: the hub user, whose questions the
                                                     notebook shows
``NBGRADER_EXECUTION``   (set by nbgrader)           read only: nbgrader is executing the notebook
=======================  ==========================  ===============================================

While nbgrader runs or validates a notebook nothing reads the accuracy of the training runs, so they
only have to show that the network trains: :func:`short_batches` is 10 and :func:`evaluation_images`
500 there. ``python -m bnlab.settings`` prints the values in effect. This module imports only the
standard library, so the grading tools and ``nbgrader_config.py`` can use it without TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path

SHORT_BATCHES = 40  # batches of a shortened run when a person is watching (BNLAB_SHORT=1)
GRADING_BATCHES = 10  # batches of a run under nbgrader: enough to show that it trains
SHORT_EVALUATION = 1000  # validation / test images evaluated by a shortened run
GRADING_EVALUATION = 500  # ... and by a run under nbgrader

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class SettingError(ValueError):
    """An environment variable of the course has a value it cannot use."""


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SettingError(f"{name}={value!r}: use 1 (on) or 0 (off), or unset it for the default.")


def grading() -> str | None:
    """What nbgrader is doing with this notebook (its ``NBGRADER_EXECUTION``), or None."""
    return os.environ.get("NBGRADER_EXECUTION") or None


STUDENT_VARIABLE = "BNLAB_STUDENT"


def graded_student() -> str | None:
    """The id a graded kernel is graded under (``$BNLAB_STUDENT``, set by the grader), or None."""
    return os.environ.get(STUDENT_VARIABLE, "").strip() or None


def hub_user() -> str | None:
    """The JupyterHub user this server runs for (``$JUPYTERHUB_USER``), or None off a hub."""
    return os.environ.get("JUPYTERHUB_USER", "").strip() or None


def skip_given_code(what: str, asked: bool) -> bool:
    """Whether to skip ``what``, a demo or run of the notebook's given code only: when its call asked
    for it (``skip_when_grading=True``) and nbgrader is running, where it grades nothing of the
    student's. Says so when it skips."""
    if not (asked and grading()):
        return False
    print(
        f"{what}: skipped while nbgrader checks the notebook. It runs only the notebook's given code, so it grades "
        "nothing of yours; run the notebook yourself to see it."
    )
    return True


def short_mode() -> bool:
    """True when training runs are shortened: ``BNLAB_SHORT=1``, or under nbgrader unless ``BNLAB_SHORT=0``."""
    return _flag("BNLAB_SHORT", default=grading() is not None)


def short_batches() -> int:
    """Batches per shortened run: ``$BNLAB_SHORT_BATCHES``, else 10 under nbgrader and 40 otherwise."""
    value = os.environ.get("BNLAB_SHORT_BATCHES", "").strip()
    if not value:
        return GRADING_BATCHES if grading() else SHORT_BATCHES
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise SettingError(f"BNLAB_SHORT_BATCHES must be a whole number of batches (1 or more), got {value!r}.")
    return number


def evaluation_images() -> int | None:
    """Validation and test images a run evaluates: all (None) in full runs, fewer in shortened ones."""
    if not short_mode():
        return None
    return GRADING_EVALUATION if grading() else SHORT_EVALUATION


def deterministic() -> bool:
    """Whether training uses TensorFlow's op determinism (``BNLAB_DETERMINISTIC``, default on)."""
    return _flag("BNLAB_DETERMINISTIC", default=True)


def data_dir() -> Path:
    """Where MNIST is cached: ``$BNLAB_DATA_DIR``, else ``~/.cache/bnlab/mnist``."""
    value = os.environ.get("BNLAB_DATA_DIR", "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "bnlab" / "mnist"


def course_root(default: str | Path) -> str:
    """The nbgrader course folder: ``$BNLAB_COURSE_ROOT``, else ``default`` (the repository)."""
    return os.environ.get("BNLAB_COURSE_ROOT") or str(default)


def exchange() -> str | None:
    """The folder of nbgrader's exchange (``$BNLAB_EXCHANGE``), or None for nbgrader's default."""
    return os.environ.get("BNLAB_EXCHANGE") or None


ISOLATION_POLICIES = ("auto", "require", "off")


def isolation() -> str:
    """How student code is sandboxed while graded (``BNLAB_ISOLATION``): auto, require or off."""
    value = os.environ.get("BNLAB_ISOLATION", "").strip().lower() or "auto"
    if value not in ISOLATION_POLICIES:
        raise SettingError(
            f"BNLAB_ISOLATION={value!r}: use auto (sandbox where possible), require (refuse to grade "
            "without the sandbox) or off (no sandbox), or unset it for auto."
        )
    return value


def describe() -> str:
    """The settings in effect, one per line (``python -m bnlab.settings``)."""
    rows = [
        ("grading (NBGRADER_EXECUTION)", grading() or "no"),
        ("graded as (BNLAB_STUDENT)", graded_student() or "no one"),
        ("JupyterHub user (JUPYTERHUB_USER)", hub_user() or "none"),
        ("short mode (BNLAB_SHORT)", "on" if short_mode() else "off"),
        ("batches per shortened run (BNLAB_SHORT_BATCHES)", short_batches()),
        ("evaluation images", evaluation_images() or "all"),
        ("op determinism (BNLAB_DETERMINISTIC)", "on" if deterministic() else "off"),
        ("MNIST cache (BNLAB_DATA_DIR)", data_dir()),
        ("nbgrader exchange (BNLAB_EXCHANGE)", exchange() or "nbgrader's default"),
        ("student code sandbox (BNLAB_ISOLATION)", isolation()),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


if __name__ == "__main__":
    try:
        print(describe())
    except SettingError as exc:
        raise SystemExit(f"error: {exc}") from None
