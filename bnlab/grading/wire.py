"""The wire format between the trusted re-verification's parent and its worker: JSON lines.

JSON, never pickle: unpickling what the worker sends could run code in the parent. Arrays travel as their
values' bytes in base64 (float32 for a float32 array, float64 for anything else), with their shape, and come back
as float64 arrays: exact, and some twenty times cheaper than a JSON list of numbers for the checks' inputs (a
64x28x28x8 batch). A :class:`RemoteName` stands for a name the student's code defined in the worker; the checks
pass it on, and the worker looks it up when a probe needs it.
"""

from __future__ import annotations

import base64
import binascii
import json

import numpy as np

MAX_LINE = 64 * 1024 * 1024
# the only dtypes an array travels in (little-endian floats): bytes are read as one of these, nothing else
DTYPES = {"f4": np.dtype("<f4"), "f8": np.dtype("<f8")}


def encode(obj):
    if isinstance(obj, RemoteName):
        return {"$name": obj.name}
    if isinstance(obj, np.ndarray) or type(obj).__module__ == "numpy":
        kind = "f4" if np.asarray(obj).dtype == np.float32 else "f8"
        array = np.asarray(obj, dtype=DTYPES[kind])
        return {"$array": base64.b64encode(array.tobytes()).decode("ascii"), "dtype": kind, "shape": list(array.shape)}
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
            return _array(obj)
        if "$dict" in obj:
            return {str(k): decode(v, resolve) for k, v in obj["$dict"]}
        if "$name" in obj and resolve is not None:
            return resolve(str(obj["$name"]))
        raise ValueError("malformed message")
    return obj


def _array(obj: dict) -> np.ndarray:
    """A float64 array from its wire form; ValueError unless the bytes are exactly the shape's values."""
    dtype, shape = DTYPES.get(obj.get("dtype")), obj.get("shape")
    if dtype is None or not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError("malformed array")
    try:
        data = base64.b64decode(obj["$array"], validate=True)
    except (binascii.Error, TypeError):
        raise ValueError("malformed array") from None
    if len(data) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ValueError("malformed array: its values do not fill its shape")
    return np.frombuffer(data, dtype=dtype).astype(np.float64).reshape(shape)


def serve(reader, writer, handle) -> None:
    """Answer each JSON line read from ``reader`` with the dict ``handle(request)`` returns, one JSON line each on
    ``writer`` (the worker's and the judge's loop). An error never stops the loop: an AssertionError (a check's
    verdict) answers ``{"fail": message}``, any other ``{"fail": "Type: message"}``."""
    for line in reader:
        try:
            answer = handle(json.loads(line))
        except AssertionError as exc:
            answer = {"fail": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - report, keep serving
            answer = {"fail": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
        writer.write((json.dumps(answer) + "\n").encode())
        writer.flush()


class RemoteName:
    """A name defined by the student's code, which lives in the worker process."""

    def __init__(self, name: str, session):
        # session: the parent's worker session (bnlab.instructor.preprocessors.remote.Session)
        self.name = name
        self.remote_session = session

    def __repr__(self):
        return self.name
