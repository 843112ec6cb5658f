"""The judge of the trusted re-run: runs the student's exported graph, and nothing else of theirs.

Started by :class:`bnlab.instructor.preprocessors.remote.Session` beside the worker, sandboxed, as
``python -I -m bnlab.grading.judge IN OUT`` in an empty folder: none of the student's Python is ever loaded here.
It receives the graph the worker exported (:mod:`bnlab.grading.export`), refuses it unless every operation in it
is on :data:`ALLOWED` (computation only: no Python callbacks, no files, no network, no printing to a file), and
answers the checks' probe requests (outputs, statistics, gradients) by running that graph on the inputs the checks
send, which they draw after the export. The checks' judging stays in nbgrader's process.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import sys

import numpy as np

# Operations a layer's graph may hold: arithmetic, array manipulation, neural-network kernels and their
# gradients, reading and writing its own variables, control flow and calls of the graph's own functions. An
# allow-list: an operation not named here (PyFunc, EagerPyFunc, ReadFile, WriteFile, anything new) is refused.
ALLOWED = frozenset(
    """
    Abs Add AddN AddV2 All Any ArgMax ArgMin Assert Atan2 BatchMatMul BatchMatMulV2 BatchMatMulV3 BiasAdd
    BiasAddGrad BroadcastArgs BroadcastGradientArgs BroadcastTo Cast Ceil CheckNumerics ClipByValue Concat
    ConcatOffset ConcatV2 Const Conv2D Conv2DBackpropFilter Conv2DBackpropInput Cos Cumsum DepthwiseConv2dNative
    DepthwiseConv2dNativeBackpropFilter DepthwiseConv2dNativeBackpropInput Div DivNoNan Einsum Elu EluGrad Equal Erf
    Exp ExpandDims Expm1 Fill Floor FloorDiv FloorMod FusedBatchNorm FusedBatchNormGrad FusedBatchNormGradV2
    FusedBatchNormGradV3 FusedBatchNormV2 FusedBatchNormV3 GatherV2 Greater GreaterEqual Identity IdentityN If Inv
    InvertPermutation IsFinite IsNan LeakyRelu LeakyReluGrad Less LessEqual Log Log1p LogicalAnd LogicalNot
    LogicalOr MatMul Max Maximum Mean Min Minimum Mod Mul MulNoNan Neg NoOp NotEqual OnesLike Pack Pad PadV2
    PartitionedCall Pow Prod Range Rank ReadVariableOp RealDiv Reciprocal ReciprocalGrad Relu Relu6 Relu6Grad
    ReluGrad Reshape ResourceGather Round Rsqrt RsqrtGrad Select SelectV2 Selu SeluGrad Shape ShapeN Sigmoid
    SigmoidGrad Sign Sin Size Slice Softmax Softplus SoftplusGrad Softsign Sqrt SqrtGrad Square SquaredDifference
    Squeeze StatefulPartitionedCall StatelessIf StatelessWhile StopGradient StridedSlice StridedSliceGrad Sub Sum
    Tanh TanhGrad Tile TensorListElementShape TensorListFromTensor TensorListGetItem TensorListLength
    TensorListPopBack TensorListPushBack TensorListReserve TensorListSetItem TensorListStack Transpose Unpack
    VarIsInitializedOp While Xdivy Xlogy ZerosLike AssignVariableOp AssignAddVariableOp AssignSubVariableOp
    Placeholder PreventGradient EnsureShape StringFormat ResourceApplyAdam ResourceApplyGradientDescent
    ResourceApplyMomentum ResourceApplyKerasMomentum ResourceApplyRMSProp ResourceApplyAdagradV2
    ResourceApplyAdamWithAmsgrad
    OptionalFromValue OptionalGetValue OptionalNone OptionalHasValue DynamicStitch ParallelDynamicStitch
    UnsortedSegmentSum UnsortedSegmentMax Cumprod Reverse ReverseV2 GatherNd ScatterNd TensorScatterUpdate
    TensorScatterAdd LogSoftmax SoftmaxCrossEntropyWithLogits SparseSoftmaxCrossEntropyWithLogits Sinh Cosh Rint
    L2Loss MaxPool MaxPoolGrad MaxPoolV2 MaxPoolGradV2 AvgPool AvgPoolGrad Mean Square Softsign SoftsignGrad
    Relu6Grad EluGrad SquaredDifference Squeeze Snapshot ReadVariableOp StridedSliceGrad ZerosLike OnesLike
    Igamma Lgamma Digamma Erfc Tan Asin Acos Atan Asinh Acosh Atanh Floor Ceil TruncateDiv TruncateMod BitwiseAnd
    MatrixDiag MatrixDiagPart MatrixDiagV3 MatrixDiagPartV3 MatrixBandPart MatrixSetDiagV3 Einsum BatchToSpaceND
    SpaceToBatchND DepthToSpace SpaceToDepth ResizeBilinear ResizeNearestNeighbor ResizeBilinearGrad Empty
    TensorListConcatV2 TensorListSplit TensorListResize Bincount SegmentSum SegmentMean Unique UniqueV2 Where
    StatelessRandomUniformV2 StatelessRandomNormalV2 StatelessRandomGetKeyCounter StatelessTruncatedNormalV2
    """.split()
)
# tf.print is harmless where it writes to the judge's own (discarded) output streams, not to a file
PRINT_STREAMS = frozenset({"stderr", "stdout", "log(info)", "log(warning)", "log(error)"})


class Unjudgeable(Exception):
    """The exported graph cannot be judged: it holds an operation that is not computation."""


def _register(package) -> dict:
    """Decode the package's FunctionDefs, refuse them unless they are computation only, and register them under
    names of the judge's own; returns ``{name: FunctionDef}`` of its main functions.

    The checks that build the same probe get the same graph (the worker exports it once), with fresh variables each
    time: a graph registered before is not registered again, so TensorFlow instantiates (optimizes) its functions
    once per submission, not once per check."""
    from tensorflow.core.framework import function_pb2
    from tensorflow.python.eager import context

    key = hashlib.sha256(
        json.dumps([package["library"], {n: f.get("def") for n, f in package["functions"].items()}]).encode()
    ).hexdigest()
    if key in _REGISTERED:
        return _REGISTERED[key]
    library = [function_pb2.FunctionDef.FromString(base64.b64decode(s)) for s in package["library"]]
    main = {
        name: function_pb2.FunctionDef.FromString(base64.b64decode(spec["def"]))
        for name, spec in package["functions"].items()
        if "def" in spec
    }
    why = refusal([*library, *main.values()])
    if why:
        raise Unjudgeable(why)
    _rename([*library, *main.values()], f"judged{next(_LOADS)}_")
    ctx = context.context()
    for function in [*library, *main.values()]:
        ctx.add_function_def(function)
    _REGISTERED[key] = main
    return main


# the graphs registered so far: digest of a package's FunctionDefs -> its main functions (registered)
_REGISTERED: dict = {}


def _call(function, inputs: list, captures: list):
    """Run a registered FunctionDef on ``inputs`` and the captured values; its outputs (tensors)."""
    import tensorflow as tf
    from tensorflow.core.framework import attr_value_pb2

    return tf.raw_ops.StatefulPartitionedCall(
        args=[*inputs, *captures],
        Tout=[tf.as_dtype(arg.type) for arg in function.signature.output_arg],
        f=attr_value_pb2.NameAttrList(name=function.signature.name),
    )


def _captures(spec: dict, variables: list, own: list = ()) -> list:
    """The values a function captured: ``variables`` by place, the function's ``own`` variables, constants."""
    import tensorflow as tf

    found = []
    for capture in spec["captures"]:
        if "own" in capture:
            index = int(capture["own"])
            if not 0 <= index < len(own):
                raise Unjudgeable("its graph captures a variable the judge does not have")
            found.append(own[index].handle)
        elif "variable" in capture:
            index = int(capture["variable"])
            if not 0 <= index < len(variables):
                raise Unjudgeable("its graph captures a variable the judge does not have")
            found.append(variables[index].handle)
        else:
            found.append(tf.constant(np.asarray(capture["constant"]), dtype=tf.as_dtype(capture["dtype"])))
    return found


def refusal(functions) -> str | None:
    """Why a graph of these FunctionDefs is not judgeable (the operations it should not hold), or None."""
    bad = set()
    for function in functions:
        for node in function.node_def:
            if node.op == "PrintV2":
                stream = node.attr["output_stream"].s.decode(errors="replace")
                if stream not in PRINT_STREAMS:
                    bad.add(f"PrintV2 to {stream!r}")
            elif node.op not in ALLOWED:
                bad.add(node.op)
    if not bad:
        return None
    callbacks = {"PyFunc", "PyFuncStateless", "EagerPyFunc"} & bad
    what = (
        "a Python callback (tf.numpy_function or tf.py_function), which runs Python outside the graph"
        if callbacks
        else "operations that are not computation on its inputs and variables (files, I/O, ...)"
    )
    return f"its graph holds {what}: {', '.join(sorted(bad))}"


_LOADS = itertools.count()


def _rename(functions, prefix: str) -> None:
    """Give the graph's functions names of the judge's own (so no graph can stand in for another's functions), and
    refuse one that calls a function it does not bring."""
    names = {f.signature.name: prefix + f.signature.name for f in functions}
    if len(names) != len(functions):
        raise Unjudgeable("its graph defines a function twice")

    def renamed(name):
        if name not in names:
            raise Unjudgeable(f"its graph calls a function it does not define ({name[:80]})")
        return names[name]

    for function in functions:
        function.signature.name = names[function.signature.name]
        for node in function.node_def:
            for attr in node.attr.values():
                if attr.HasField("func"):
                    attr.func.name = renamed(attr.func.name)
                if attr.HasField("list"):
                    for func in attr.list.func:
                        func.name = renamed(func.name)


class JudgedLayer:
    """A student's layer as the probes of :mod:`bnlab.grading.probes` present it, answered by running its graph."""

    def __init__(self, package: dict):
        import tensorflow as tf
        from tensorflow.core.framework import attr_value_pb2

        self._tf, self._attr = tf, attr_value_pb2
        main = _register(package)
        self.where, self.kind = str(package["where"]), str(package["kind"])
        self.epsilon = float(package["epsilon"])
        self.variables = [
            tf.Variable(np.asarray(v["value"]), dtype=tf.as_dtype(v["dtype"]), trainable=bool(v["trainable"]))
            for v in package["variables"]
        ]
        self.roles = {role: (None if i is None else self.variables[int(i)]) for role, i in package["roles"].items()}
        self._errors = {name: str(spec["error"]) for name, spec in package["functions"].items() if "error" in spec}
        self._main = {
            name: (function, _captures(package["functions"][name], self.variables)) for name, function in main.items()
        }

    def _run(self, name, description, *inputs):
        tf = self._tf
        if name not in self._main:
            raise AssertionError(self._errors.get(name) or f"{description}: the re-run did not export this computation")
        function, captures = self._main[name]
        try:
            outputs = _call(function, [tf.constant(np.asarray(x), tf.float32) for x in inputs], captures)
        except Exception as exc:  # noqa: BLE001 - the graph can fail on the inputs it is given
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise AssertionError(f"{description} raised {type(exc).__name__} in your code: {text}") from None
        return [np.asarray(o.numpy()) for o in outputs]

    def _value(self, role):
        variable = self.roles.get(role)
        return None if variable is None else np.asarray(variable.numpy())

    # --- the probe interface the checks call (bnlab.grading.probes.LayerProbe) ---
    def call(self, x, training):
        mode = "training" if training else "inference"
        return self._run("train" if training else "infer", f"{self.where} in {mode} mode", x)[0]

    def call_explicit(self, x):
        return self._run("explicit", f"{self.where} in inference mode", x)[0]

    def kernel_gradient(self, x, upstream):
        found = self._run("gradient", f"the gradient of {self.where}", x, upstream)
        return found[0] if found else None

    def statistics(self):
        return self._value("pop_mean"), self._value("pop_variance")

    def set_statistics(self, mean, variance):
        for role, value in (("pop_mean", mean), ("pop_variance", variance)):
            variable = self.roles[role]
            variable.assign(np.asarray(value).astype(variable.dtype.as_numpy_dtype).reshape(variable.shape))

    def set_scale_shift(self, gamma, beta):
        for role, value in (("gamma", gamma), ("beta", beta)):
            variable = self.roles.get(role)
            if variable is not None and int(np.prod(variable.shape)) == np.size(value):
                variable.assign(np.asarray(value).astype(variable.dtype.as_numpy_dtype).reshape(variable.shape))

    def flags(self):
        def trainable(role, default):
            variable = self.roles.get(role)
            return default if variable is None else bool(variable.trainable)

        return {
            "gamma": trainable("gamma", True),
            "beta": trainable("beta", True),
            "pop_mean": trainable("pop_mean", False),
            "pop_variance": trainable("pop_variance", False),
        }

    def info(self) -> dict:
        return {
            "kernel": self._value("kernel"),
            "bias": self._value("bias"),
            "gamma": self._value("gamma"),
            "beta": self._value("beta"),
            "epsilon": self.epsilon,
            "flags": self.flags(),
        }


def judged_step(seed: int):
    """The checks' reference model for ``train_step`` and ``predict`` (:class:`bnlab.grading.probes.StepProbe`, the
    course's code, built here), whose methods take the student's exported graph in place of their function."""
    from bnlab.grading import export, probes

    class JudgedStep(probes.StepProbe):
        def _student(self, package, name):
            spec = package["functions"].get(name, {})
            if "error" in spec:
                raise RuntimeError(spec["error"])
            if name not in self._graphs:
                raise AssertionError(f"the re-run did not export {name.replace('sgd', 'train_step')}")
            return self._graphs[name]

        def _load(self, package):
            import tensorflow as tf

            self._graphs = _register(package)
            self._package = package
            self._own = [
                tf.Variable(np.asarray(v["value"]), dtype=tf.as_dtype(v["dtype"]), trainable=False)
                for v in package.get("own", [])
            ]

        def train_step(self, package, x, y, learning_rate):
            self._load(package)

            def step(model, optimizer, images, labels):
                name = "sgd" if isinstance(optimizer, self._tf_keras_sgd) else "adam"
                function = self._student(self._package, name)
                variables = export.step_variables(model, optimizer)
                captured = _captures(self._package["functions"][name], variables, self._own)
                return list(_call(function, [images, labels], captured))

            self._tf_keras_sgd = probes.keras.optimizers.SGD
            return super().train_step(step, x, y, learning_rate)

        def _with_run_optimizer(self, train_step, x, y, report, learning_rate) -> dict:
            error = self._package["functions"].get("adam", {}).get("error")
            if error:
                return {"run_optimizer_error": error, "run_optimizer_weights": None, "run_optimizer_steps": 0}
            return super()._with_run_optimizer(train_step, x, y, report, learning_rate)

        def predict(self, package, x):
            self._load(package)
            function = self._student(package, "predict")

            def predict(model, images):
                variables = export.step_variables(model, None)
                return _call(function, [images], _captures(package["functions"]["predict"], variables, self._own))[0]

            return super().predict(predict, x)

    return JudgedStep(seed)


METHODS = frozenset(
    {"call", "call_explicit", "kernel_gradient", "statistics", "set_statistics", "set_scale_shift", "info", "where"}
    | {"train_step", "predict", "warm_up"}
)


def main(fd_in: int, fd_out: int) -> None:
    reader, writer = os.fdopen(fd_in, "rb"), os.fdopen(fd_out, "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import bnlab

    bnlab.tf  # noqa: B018 - import TensorFlow now, while the kernel and the worker start
    from bnlab.grading.wire import decode, encode, serve

    layers: dict = {}

    def handle(request: dict) -> dict:
        op = request["op"]
        try:
            if op == "load":
                layers[len(layers)] = JudgedLayer(decode(request["package"]))
                return {"ok": len(layers) - 1}
            if op == "step":
                layers[len(layers)] = judged_step(int(request["seed"]))
                return {"ok": len(layers) - 1}
            if op == "call":
                layer, method = layers[int(request["handle"])], str(request["method"])
                if method not in METHODS:
                    raise ValueError(f"no probe method {method!r}")
                result = layer.where if method == "where" else getattr(layer, method)(*decode(request["args"]))
                return {"ok": encode(result)}
        except Unjudgeable as exc:
            return {"unjudgeable": str(exc)[:1000]}
        raise ValueError(op)

    serve(reader, writer, handle)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
