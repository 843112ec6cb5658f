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
    shape = [None, *num.input_shape(probe.kind)]
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
            out = functions["train"]["output_shape"]
            specs = [specs[0], tf.TensorSpec(out, tf.float32)]
        concrete = probes.run(
            description,
            lambda fn=fn, specs=specs: tf.function(fn, autograph=False).get_concrete_function(*specs),
            eager=None,
        )
        graph_variables = list(concrete.graph.variables)
        captures = []
        for tensor in concrete.captured_inputs:
            if tensor.dtype == tf.resource:
                owner = next((v for v in graph_variables if v.handle is tensor), None)
                if owner is None:
                    owner = next((v for v in roles.values() if v is not None and v.handle is tensor), None)
                if owner is None:
                    fail(
                        f"{probe.where} uses a TensorFlow resource that is not a variable (a file, a table, a "
                        "dataset...): a layer computes from its input and its variables only.",
                        "by_hand",
                    )
                captures.append({"variable": index_of(owner)})
            else:
                captures.append({"constant": np.asarray(tensor.numpy()), "dtype": tensor.dtype.name})
        outputs = [t for t in concrete.outputs if t is not None]
        functions[name] = {
            "def": _encode_bytes(concrete.function_def.SerializeToString()),
            "captures": captures,
            "outputs": len(outputs),
            "output_shape": [d for d in (outputs[0].shape.as_list() if outputs else [])],
        }
        for function in concrete.graph.as_graph_def().library.function:
            library.setdefault(function.signature.name, _encode_bytes(function.SerializeToString()))
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
