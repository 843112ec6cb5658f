"""bnlab: the course library of *Batch Normalization in TensorFlow*.

Notebooks import it first. ``bnlab.tf`` is TensorFlow, imported quietly on first use (no log noise
on stderr under the cells); tools that need no TensorFlow import their modules without loading it. The
modules:

- :mod:`bnlab.data`: MNIST, verified and split 55,000 / 5,000 / 10,000;
- :mod:`bnlab.device`: the one-line report of what TensorFlow trains on;
- :mod:`bnlab.monitor`: the live loss/accuracy panel;
- :mod:`bnlab.training`: the training loops the notebooks share;
- :mod:`bnlab.grading`: the numerical checks behind the graded cells.
"""

from __future__ import annotations

import importlib
import os

__version__ = "1.0.0"

# Set before anything imports TensorFlow (also in kernels and subprocesses started from here);
# a level the user chose is kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# imported on first access (PEP 562), so that importing a module that needs no TensorFlow stays free of it
_LAZY_MODULES = {"data", "device"}


def __getattr__(name: str):
    if name == "tf":
        from bnlab._quiet import import_tensorflow

        value = import_tensorflow()
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"bnlab.{name}")
    else:
        raise AttributeError(f"module 'bnlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def short_mode() -> bool:
    """True when notebooks run shortened training (see :mod:`bnlab.settings`)."""
    from bnlab.settings import short_mode as setting

    return setting()
