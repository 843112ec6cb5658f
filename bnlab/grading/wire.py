"""The wire format between the trusted re-verification's parent and its worker: JSON lines.

JSON, never pickle: unpickling what the worker sends could run code in the parent. Arrays travel as
float lists with their shape. A :class:`RemoteName` stands for a name the student's code defined in
the worker; the checks pass it on, and the worker looks it up when a probe needs it.
"""

from __future__ import annotations

import numpy as np

MAX_LINE = 64 * 1024 * 1024


def encode(obj):
    if isinstance(obj, RemoteName):
        return {"$name": obj.name}
    if isinstance(obj, np.ndarray) or type(obj).__module__ == "numpy":
        array = np.asarray(obj, dtype=np.float64)
        return {"$array": array.ravel().tolist(), "shape": list(array.shape)}
    if isinstance(obj, dict):
        return {"$dict": [[str(k), encode(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot send a {type(obj).__name__}")


def decode(obj, resolve=None):
    """Inverse of :func:`encode`; ``resolve(name)`` turns a ``$name`` into a value (worker side only)."""
    if isinstance(obj, list):
        return [decode(v, resolve) for v in obj]
    if isinstance(obj, dict):
        if "$array" in obj:
            shape = tuple(int(s) for s in obj["shape"])
            return np.asarray(obj["$array"], dtype=np.float64).reshape(shape)
        if "$dict" in obj:
            return {str(k): decode(v, resolve) for k, v in obj["$dict"]}
        if "$name" in obj and resolve is not None:
            return resolve(str(obj["$name"]))
        raise ValueError("malformed message")
    return obj


class RemoteName:
    """A name defined by the student's code, which lives in the worker process."""

    def __init__(self, name: str, session):
        # session: the parent's worker session (bnlab.instructor.preprocessors.remote.Session)
        self.name = name
        self.remote_session = session

    def __repr__(self):
        return self.name
