"""The worker processes of the trusted re-verification: they run the student's cells and hand over what they build.

Started by :class:`bnlab.instructor.preprocessors.remote.Session` as ``python -I -m bnlab.grading.worker IN OUT``
(so nothing in the submission's folder stands in for course code). It executes the notebook's cells (test cells
excluded, they run in the parent) in one namespace. For a layer, ``train_step`` or ``predict`` it answers with
the TensorFlow graphs the student's function builds (:mod:`bnlab.grading.export`), which the judge process
(:mod:`bnlab.grading.judge`) runs; it reports data itself only for the answers' values. It judges nothing:
whatever the student's code does here can change what it hands over, never the verdict of the checks, which the
parent computes from the judge's data.

Part 4 has a process of its own, ``python -I -m bnlab.grading.worker backward IN OUT`` (:func:`main_part_4`),
started from an empty folder: it runs only the source of Part 4's answer cell, which the parent sends, where
TensorFlow and Keras cannot be imported (:data:`AUTODIFF_PACKAGES`; the sandbox also hides their folders), and
answers with what the student's ``batchnorm_backward`` returns on the arrays the parent drew, or that it ran past the
probe's time limit (:data:`bnlab.grading.backward_probe.TIME_LIMIT`, kept by this process's main thread, so the
process answers and the checks after it still run). No other cell of the submission runs there, so nothing can
replace what it runs, and no autodiff can stand in for the backward pass.
"""

from __future__ import annotations

import importlib.abc
import os
import sys

# the packages that could differentiate for a student's backward pass: Part 4's process refuses to import them, and
# the sandbox it runs in hides their folders (bnlab.instructor.preprocessors.remote)
from bnlab.grading.backward import AUTODIFF_PACKAGES, NUMPY_ONLY


def _run_cell(source: str, namespace: dict) -> str | None:
    """Run a cell's source in ``namespace``; the error that stopped it (``"Type: message"``), or None."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - plain Python then
        pass
    try:
        exec(compile(source, "<cell>", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - as nbgrader does, later cells still run
        return f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    return None


def _quiet(fd_in: int, fd_out: int):
    """The request and answer pipes; stdout and stderr go nowhere (the student's prints never reach the parent)."""
    reader, writer = os.fdopen(fd_in, "rb"), os.fdopen(fd_out, "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    return reader, writer


def main(fd_in: int, fd_out: int) -> None:
    reader, writer = _quiet(fd_in, fd_out)
    from bnlab.grading import probes
    from bnlab.grading.errors import CheckFailed
    from bnlab.grading.wire import decode, encode, serve

    # started with `python -I`: the submission's folder is not on sys.path. Its own helper modules may still be
    # imported, after the course's library and the environment's packages, never instead of them
    sys.path.append(os.getcwd())

    namespace: dict = {"__name__": "__main__"}
    exported: dict = {}

    def resolve(name):
        if name not in namespace:
            raise CheckFailed(f"name '{name}' is not defined: run the cell that defines it.")
        return namespace[name]

    from bnlab.grading.export import export_layer, export_step

    def handle(request: dict) -> dict:
        op = request["op"]
        if op == "exec":
            _run_cell(request["source"], namespace)
            result = None
        elif op == "export":  # a layer probe's graph, for the judge to run (bnlab.grading.judge)
            args = decode(request["args"], resolve)
            # checks that build the same probe (same function, size and seed) get the same graph: exported once
            key = (id(args[0]), *(repr(a) for a in args[1:]))
            if key not in exported:
                exported[key] = (args[0], export_layer(probes.layer_probe(*args)))  # (keeps the function alive)
            result = exported[key][1]
        elif op == "export_step":  # train_step or predict traced on the checks' reference model
            result = export_step(*decode(request["args"], resolve))
        elif op == "value":
            result = resolve(request["name"])
        else:
            raise ValueError(op)
        return {"ok": encode(result)}

    serve(reader, writer, handle)


class _RefuseAutodiff(importlib.abc.MetaPathFinder):
    """Refuses to import :data:`AUTODIFF_PACKAGES`, with a message that says why (in Part 4's process)."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in AUTODIFF_PACKAGES:
            raise ModuleNotFoundError(NUMPY_ONLY, name=name)
        return None


def main_part_4(fd_in: int, fd_out: int) -> None:
    """Part 4's process. ``{"op": "cell", "source"}`` runs the answer cell (once); ``{"op": "run", "name", "args"}``
    calls the function it defined, ``name(dout, x, gamma, eps)``, and answers
    :meth:`bnlab.grading.backward_probe.BackwardProbe.run`'s report (``"undefined"`` says why there is no function;
    ``"slow"`` that the call ran past the time limit)."""
    reader, writer = _quiet(fd_in, fd_out)
    from bnlab.grading.backward_probe import BackwardProbe
    from bnlab.grading.wire import decode, encode, serve

    sys.meta_path.insert(0, _RefuseAutodiff())  # before any of the student's code runs
    namespace: dict = {"__name__": "__main__"}
    cell: dict = {}

    def handle(request: dict) -> dict:
        op = request["op"]
        if op == "cell" and not cell:
            cell["error"] = _run_cell(str(request["source"]), namespace)
            return {"ok": None}
        if op == "run" and cell:
            name = str(request["name"])
            function = namespace.get(name)
            if not callable(function):
                stopped = f": the cell stopped with {cell['error']}" if cell["error"] else ""
                return {"ok": encode({"undefined": f"Part 4's answer cell does not define {name}{stopped}"})}
            report = BackwardProbe(function).run(*decode(request["args"]))  # in the main thread: time-limited
            if report["error"] and cell["error"]:  # e.g. a name the cell never got to define: say what stopped it
                report["error"] += f" (the answer cell stopped with {cell['error']})"
            return {"ok": encode(report)}
        raise ValueError(op)

    serve(reader, writer, handle)


if __name__ == "__main__":
    if sys.argv[1] == "backward":
        main_part_4(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main(int(sys.argv[1]), int(sys.argv[2]))
