"""The student's computation as a TensorFlow graph: what the trusted re-run's worker hands to its judge.

In the worker (:mod:`bnlab.grading.worker`) a probe is built from the student's layer function as today
(:mod:`bnlab.grading.probes`). Instead of running it and reporting what it did, the worker traces the probe's
computations with ``tf.function`` (training mode, inference mode as the notebook's ``predict`` runs it, an explicit
``training=False`` for Keras, the gradient reaching the weights) and exports each as a ``FunctionDef``, with the
values of the variables they read and write. The judge (:mod:`bnlab.grading.judge`), another process where no
student Python runs, loads that graph, refuses it if it holds anything but computation, and runs it on inputs it
is given after the export.

What this module reports besides the graph (which variable is the kernel, gamma, the population mean; epsilon;
the layer's name) comes from student code and is only used to *name* parts of the graph: every output the checks
judge is computed by the graph itself, in the judge.
"""

from __future__ import annotations

import base64

import numpy as np

import bnlab
from bnlab.grading import numeric as num
from bnlab.grading import probes
from bnlab.grading.errors import fail

tf = bnlab.tf
ROLES = ("kernel", "bias", "gamma", "beta", "pop_mean", "pop_variance")


def _tf_variable(variable):
    """The tf.Variable behind a Keras 3 variable (itself for a tf.Variable)."""
    if variable is None or isinstance(variable, tf.Variable):
        return variable
    value = getattr(variable, "value", None)
    return value if isinstance(value, tf.Variable) else None


def _encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _roles(probe) -> dict:
    if isinstance(probe, probes.KerasLayerProbe):
        bn = probe.bn
        found = {"gamma": bn.gamma, "beta": bn.beta, "pop_mean": bn.moving_mean, "pop_variance": bn.moving_variance}
    else:
        found = dict(probe.vars)
    found.update(kernel=probe.kernel, bias=probe.bias)
    return {role: _tf_variable(found.get(role)) for role in ROLES}


def _functions(probe) -> dict:
    """name: (python function, input specs, description of the call for messages)."""
    shape = [None, *num.input_shape(probe.kind, probe.arg)]
    x = tf.TensorSpec(shape, tf.float32)
    found = {
        "train": (lambda x: probe._forward(x, True), [x], f"{probe.where} in training mode"),
        "infer": (lambda x: probe._forward(x, False), [x], f"{probe.where} in inference mode"),
        "gradient": (probe._gradient_eager, [x, None], f"the gradient of {probe.where}"),
    }
    if isinstance(probe, probes.KerasLayerProbe):
        found["explicit"] = (lambda x: probe.model(x, training=False), [x], f"{probe.where} in inference mode")
    return found


def export_layer(probe) -> dict:
    """The probe's computations as FunctionDefs with their variables (plain data for the wire).

    Returns ``{"where", "kind", "epsilon", "variables": [{"value", "dtype", "trainable"}], "roles": {role: index},
    "functions": {name: {"def", "captures", "outputs"}}, "library": [FunctionDef, base64]}``. A capture is
    ``{"variable": index}`` or ``{"constant": array, "dtype": name}``."""
    __tracebackhide__ = True
    if not isinstance(probe, (probes.KerasLayerProbe, probes.NNLayerProbe)):
        fail(
            "the re-run could not build the graph of this layer: the code of the submission replaced the grader's "
            f"probe with a {type(probe).__name__}. Layers are judged by running the graph they build.",
            "by_hand",
        )
    roles = _roles(probe)
    variables: list = []

    def index_of(variable) -> int:
        for i, known in enumerate(variables):
            if known is variable:
                return i
        variables.append(variable)
        return len(variables) - 1

    role_index = {role: (None if v is None else index_of(v)) for role, v in roles.items()}
    functions, library = {}, {}
    for name, (fn, specs, description) in _functions(probe).items():
        if specs[-1] is None:  # the upstream gradient has the output's shape: known once the output is traced
            if "error" in functions["train"]:
                functions[name] = functions["train"]
                continue
            specs = [specs[0], tf.TensorSpec(functions["train"]["output_shape"], tf.float32)]
        try:  # a mode that cannot be traced fails the checks that call it, as in the kernel
            concrete = probes.run(description, lambda fn=fn, specs=specs: tf.function(fn).get_concrete_function(*specs))
        except AssertionError as exc:
            functions[name] = {"error": str(exc)}
            continue
        known = [*concrete.graph.variables, *(v for v in roles.values() if v is not None)]
        functions[name] = _package(
            concrete, lambda handle: {"variable": index_of(_owner(handle, known, probe.where))}, library
        )
    return {
        "where": probe.where,
        "kind": probe.kind,
        "epsilon": float(probe.epsilon),
        "variables": [
            {"value": np.asarray(v.numpy()), "dtype": v.dtype.name, "trainable": bool(v.trainable)} for v in variables
        ],
        "roles": role_index,
        "functions": functions,
        "library": list(library.values()),
    }


def _owner(handle, variables, where):
    """The variable among ``variables`` whose handle a graph captured; anything else is not a layer's business."""
    owner = next((v for v in variables if v is not None and v.handle is handle), None)
    if owner is None:
        fail(
            f"{where} uses a TensorFlow resource that is not one of its variables (a file, a table, a dataset, a "
            "variable of another object...): it should compute from its input and its own variables only.",
            "by_hand",
        )
    return owner


def _package(concrete, variable_capture, library: dict) -> dict:
    """One traced function as data: its FunctionDef, what it captures (``variable_capture(handle)`` for a variable, a
    constant's value), its outputs; the functions it calls go into ``library``."""
    captures = []
    for tensor in concrete.captured_inputs:
        if tensor.dtype == tf.resource:
            captures.append(variable_capture(tensor))
        else:
            captures.append({"constant": np.asarray(tensor.numpy()), "dtype": tensor.dtype.name})
    outputs = [t for t in concrete.outputs if t is not None]
    for function in concrete.graph.as_graph_def().library.function:
        library.setdefault(function.signature.name, _encode_bytes(function.SerializeToString()))
    return {
        "def": _encode_bytes(concrete.function_def.SerializeToString()),
        "captures": captures,
        "outputs": len(outputs),
        "output_shape": outputs[0].shape.as_list() if outputs else [],
    }


def step_variables(model, optimizer) -> list:
    """The variables a training step may touch, in an order both processes derive from the course's own model and
    optimizer: the model's, then the optimizer's."""
    from bnlab.training.adam import FusedAdam

    found = [_tf_variable(v) for v in model.variables]
    if isinstance(optimizer, FusedAdam):  # (tf.Module's order of its slots follows their ids: not the same in two
        found += [optimizer.learning_rate, optimizer.iterations]  # processes)
        for variable in optimizer._built:
            found += optimizer._slots[id(_tf_variable(variable))][1:]
    elif optimizer is not None:
        found += [_tf_variable(v) for v in optimizer.variables]  # Keras: in the order it created them
    return found


def step_optimizers(model, learning_rate: float) -> dict:
    """The two optimizers the checks run ``train_step`` with (:meth:`bnlab.grading.probes.StepProbe.train_step`),
    built as it builds them: plain SGD, and the training run's Adam."""
    from bnlab.training.adam import FusedAdam

    sgd = tf.keras.optimizers.SGD(learning_rate)
    sgd.build(model.trainable_variables)
    adam = FusedAdam(learning_rate)
    adam.build(model.trainable_variables)
    return {"sgd": sgd, "adam": adam}


def export_step(function, seed: int, learning_rate: float | None = None) -> dict:
    """The student's ``train_step`` (with ``learning_rate``) or ``predict`` (without) traced on the checks' reference
    model (:class:`bnlab.grading.probes.StepProbe`) as FunctionDefs; captures index :func:`step_variables`.

    A trace that fails with the run's Adam is reported as ``{"error": message}`` for that function, as the check
    reports it."""
    __tracebackhide__ = True
    probe = probes.StepProbe(seed)
    model = probe.model
    x = tf.TensorSpec([None, num.DENSE_FEATURES], tf.float32)
    y = tf.TensorSpec([None, 3], tf.float32)
    sample = (tf.zeros([2, num.DENSE_FEATURES]), tf.zeros([2, 3]))
    functions, library, own = {}, {}, []
    graph_variables: list = []

    def capture(handle, known) -> dict:
        """The reference model's and the given optimizer's variables by their place; any other variable the function
        keeps (an optimizer of its own, a counter) by its value, as its own."""
        for i, variable in enumerate(known):
            if variable.handle is handle:
                return {"variable": i}
        variable = _owner(handle, graph_variables, "the function")
        for i, known_own in enumerate(own):
            if known_own is variable:
                return {"own": i}
        own.append(variable)
        return {"own": len(own) - 1}

    if learning_rate is None:
        known = step_variables(model, None)
        concrete = probes.run(
            "predict(model, images)",
            lambda x_: tf.function(function).get_concrete_function(model, x),
            sample[0],
            eager=lambda x_: function(model, x_),
        )
        graph_variables[:] = list(concrete.graph.variables)
        functions["predict"] = _package(concrete, lambda h: capture(h, known), library)
    else:
        for name, optimizer in step_optimizers(model, learning_rate).items():
            known = step_variables(model, optimizer)

            def trace(x_, y_, optimizer=optimizer):
                return tf.function(function).get_concrete_function(model, optimizer, x, y)

            if name == "sgd":
                concrete = probes.run(
                    "train_step(model, optimizer, images, labels)",
                    trace,
                    *sample,
                    eager=lambda x_, y_, optimizer=optimizer: function(model, optimizer, x_, y_),
                )
            else:  # as the check reports a failure with the run's optimizer
                try:
                    concrete = trace(*sample)
                except Exception as exc:  # noqa: BLE001 - student code can raise anything
                    functions[name] = {"error": f"{type(exc).__name__}: {probes._first_line(exc)[:160]}"}
                    continue
            graph_variables[:] = list(concrete.graph.variables)
            functions[name] = _package(concrete, lambda h, known=known: capture(h, known), library)
    return {
        "functions": functions,
        "library": list(library.values()),
        "own": [{"value": np.asarray(v.numpy()), "dtype": v.dtype.name} for v in own],
    }
