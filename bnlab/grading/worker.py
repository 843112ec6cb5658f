"""The worker process of the trusted re-verification: runs the student's cells and exports their computations.

Started by :class:`bnlab.instructor.preprocessors.remote.Session` as ``python -I -m bnlab.grading.worker IN OUT``
(so nothing in the submission's folder stands in for course code). It executes the notebook's cells (test cells
excluded, they run in the parent) in one namespace. For a layer, ``train_step`` or ``predict`` it answers with
the TensorFlow graphs the student's function builds (:mod:`bnlab.grading.export`), which the judge process
(:mod:`bnlab.grading.judge`) runs; it reports data itself only for the answers' values and Part 4's probe. It
judges nothing: whatever the student's code does here can change what it hands over, never the verdict of the
checks, which the parent computes from the judge's data.
"""

from __future__ import annotations

import os
import sys


def _run_cell(source: str, namespace: dict) -> None:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - plain Python then
        pass
    try:
        exec(compile(source, "<cell>", "exec"), namespace)
    except BaseException:  # noqa: BLE001 - as nbgrader does, later cells still run
        pass


def main(fd_in: int, fd_out: int) -> None:
    reader, writer = os.fdopen(fd_in, "rb"), os.fdopen(fd_out, "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from bnlab.grading import probes
    from bnlab.grading.errors import CheckFailed
    from bnlab.grading.wire import decode, encode, serve

    # started with `python -I`: the submission's folder is not on sys.path. Its own helper modules may still be
    # imported, after the course's library and the environment's packages, never instead of them
    sys.path.append(os.getcwd())

    namespace: dict = {"__name__": "__main__"}
    objects: dict = {}
    exported: dict = {}

    def resolve(name):
        if name not in namespace:
            raise CheckFailed(f"name '{name}' is not defined: run the cell that defines it.")
        return namespace[name]

    from bnlab.grading.backward_probe import BackwardProbe
    from bnlab.grading.export import export_layer, export_step

    factories = {"layer": probes.layer_probe, "step": probes.StepProbe, "backward": BackwardProbe}

    def handle(request: dict) -> dict:
        op = request["op"]
        if op == "exec":
            _run_cell(request["source"], namespace)
            result = None
        elif op == "new":
            objects[len(objects)] = factories[request["what"]](*decode(request["args"], resolve))
            result = len(objects) - 1
        elif op == "export":  # a layer probe's graph, for the judge to run (bnlab.grading.judge)
            args = decode(request["args"], resolve)
            # checks that build the same probe (same function, size and seed) get the same graph: exported once
            key = (id(args[0]), *(repr(a) for a in args[1:]))
            if key not in exported:
                exported[key] = (args[0], export_layer(probes.layer_probe(*args)))  # (keeps the function alive)
            result = exported[key][1]
        elif op == "export_step":  # train_step or predict traced on the checks' reference model
            result = export_step(*decode(request["args"], resolve))
        elif op == "call":
            target = objects[request["handle"]]
            if request["method"] == "where":
                result = target.where
            else:
                result = getattr(target, request["method"])(*decode(request["args"], resolve))
        elif op == "value":
            result = resolve(request["name"])
        else:
            raise ValueError(op)
        return {"ok": encode(result)}

    serve(reader, writer, handle)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
