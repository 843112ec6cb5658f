"""The graded checks: each calls a student's function through a probe and judges what it did.

The judging is NumPy (:mod:`bnlab.grading.numeric`), its reference gradients
:func:`~bnlab.grading.backward_probe.reference`'s. In the notebook the probe runs in the same kernel; in the
trusted re-verification the student's names are :class:`~bnlab.grading.wire.RemoteName` and the probe runs in
a worker process, so the same judging code sees the same data. Checks return None and raise
:class:`~bnlab.grading.errors.CheckFailed` with a short message: what is wrong in the judged function
(named by its own name), why it matters, what to try, and the lesson section that
explains it (:data:`~bnlab.grading.errors.LESSON`). They judge behaviour under the notebook's own calls:
Keras inference as the given ``predict`` runs it (``model(images)``, no flag, so a training flag fixed
inside a layer function shows), ``train_step`` traced and also with the run's optimizer
(:class:`bnlab.training.adam.FusedAdam`). They judge behaviour, not spelling: batch normalization before or after
the ReLU, with or without a bias, Keras layers in nested blocks, a biased or Bessel-corrected
population variance, ``tf.nn.batch_normalization`` or the formula by hand, any decay from 0.5 to MAX_MOMENTUM.
"""

from __future__ import annotations

import numpy as np

from bnlab.exercise import MAX_MOMENTUM, MIN_MOMENTUM, MOMENTUM_TOLERANCE, NUM_BATCHES
from bnlab.grading import numeric as num
from bnlab.grading.backward_probe import reference as reference_gradients
from bnlab.grading.errors import fail, flag_fixed_inside, never_moved, one_for_all, stats_named, worst_entry
from bnlab.grading.errors import judged as _judged  # (the step and backward checks import these two from here)
from bnlab.grading.errors import name_of as _name_of  # noqa: F401
from bnlab.grading.errors import per as _per


def _remote(obj):
    return getattr(obj, "remote_session", None)


def _layer_probe(layer_fn, kind, api, arg, seed):
    __tracebackhide__ = True
    if kind not in ("dense", "conv") or api not in ("keras", "nn"):
        raise ValueError("kind must be 'dense' or 'conv' and api 'keras' or 'nn'")
    session = _remote(layer_fn)
    if session is not None:
        return session.probe("layer", layer_fn, kind, api, arg, seed)
    from bnlab.grading import probes

    return probes.layer_probe(layer_fn, kind, api, arg, seed)


def _candidates(info, x, kind, arg):
    """{placement: (tensor that is normalized, ReLU applied after normalization)}."""
    lin = num.linear(x, info["kernel"], info["bias"], num.stride(kind, arg))
    return {"the linear output": (lin, True), "the linear output after ReLU": (num.relu(lin), False)}, lin


def _scale_shift(info):
    gamma = 1.0 if info["gamma"] is None else np.asarray(info["gamma"], np.float64)
    beta = 0.0 if info["beta"] is None else np.asarray(info["beta"], np.float64)
    return gamma, beta


def _match_contract(where, info, x, out, kind, arg, mode, population=None):
    """The placement and variance kind for which ``out`` is the layer's full contract, or fail."""
    __tracebackhide__ = True
    gamma, beta = _scale_shift(info)
    eps = float(info["epsilon"])
    candidates, lin = _candidates(info, x, kind, arg)
    out = np.asarray(out, np.float64)
    if out.shape != lin.shape:
        fail(
            f"{where}: output shape {out.shape}, expected {lin.shape}. The next layer expects the shape of the layer "
            "without batch normalization: keep its size, stride and 'same' padding; normalizing never changes a "
            "shape.",
            "math",
        )
    for label, value in (("gamma", gamma), ("beta", beta)):
        if np.ndim(value) and np.shape(value) != (lin.shape[-1],):
            fail(
                f"{where}: {label} has shape {np.shape(value)}, but the layer has {lin.shape[-1]} "
                f"{'units' if kind == 'dense' else 'feature maps'}: normalize the layer's own output (one "
                f"statistic, gamma and beta per {_per(kind)}), not its input.",
                "conv" if kind == "conv" else "variables",
            )
    best = np.inf
    for name, (z, relu_after) in candidates.items():
        for unbiased in (False, True):
            mean, var = population if population is not None else num.moments(z, unbiased)
            if np.shape(mean) != (z.shape[-1],) or np.shape(var) != (z.shape[-1],):
                fail(
                    f"{where}: the statistics have shape {np.shape(mean)}, but batch normalization needs one value "
                    f"per {_per(kind)}: {z.shape[-1]} of them.",
                    "conv",
                )
            normalized = num.bn_forward(z, gamma, beta, mean, var, eps)
            expected = num.relu(normalized) if relu_after else normalized
            if num.close(out, expected):
                return name, unbiased
            best = min(best, float(np.max(np.abs(out - expected))))
            if relu_after and num.close(out, normalized):
                fail(
                    f"{where} never applies its nonlinearity: its output is the normalized linear output, with "
                    "negative values left in, so stacked layers collapse into one linear map. A layer of this network "
                    "is linear, batch normalization and a ReLU (before or after the normalization).",
                    "math",
                )
            slope = _negative_slope(out, normalized) if relu_after else None
            if slope is not None:
                fail(
                    f"{where}: its output is batch normalization with {stats_named(mode)}, but the nonlinearity "
                    f"after it is not a ReLU: negative values come out multiplied by {slope:.2g} instead of set to "
                    "zero (a LeakyReLU?). The exercise's network uses a ReLU, max(0, x), in every layer.",
                    "plain_network",
                )
            if population is None and not unbiased:
                shared = num.bn_forward(z, gamma, beta, z.mean(), z.var(), eps)
                if num.close(out, num.relu(shared) if relu_after else shared):
                    fail(one_for_all(where, kind), "conv")
            no_sqrt = (z - mean) / (var + eps) * gamma + beta
            if num.close(out, num.relu(no_sqrt) if relu_after else no_sqrt):
                fail(
                    f"{where}: in {mode} mode the output divides by the variance where the standard deviation belongs,"
                    " so the normalized values do not have variance 1. Divide by sqrt(variance + epsilon), as the "
                    "lesson's equations do (tf.nn.batch_normalization takes the variance and takes the root itself).",
                    "math",
                )
            if population is not None:
                break
    fail(
        f"{where}: in {mode} mode its output is not batch normalization with {stats_named(mode)} (then gamma and "
        f"beta, and a ReLU before or after it); it differs from that by up to {best:.3g}. Compare each step of your "
        "layer with the lesson's four equations.",
        "inference" if mode == "inference" else "math",
    )


def _negative_slope(out, normalized):
    """The slope ``a`` for which ``out`` is ``normalized`` where positive and ``a * normalized`` where negative, with
    ``0 < a < 1`` (a leaky ReLU: not the ReLU's 0, not the identity); None if there is none."""
    negative = normalized < -0.1
    if not negative.any():
        return None
    slope = float(np.median(out[negative] / normalized[negative]))
    leaky = np.where(normalized < 0, slope * normalized, normalized)
    return slope if 1e-3 < slope < 0.99 and num.close(out, leaky) else None


def _statistics_fit(probe, kind: str, api: str, arg) -> None:
    """Fail unless the population statistics (and gamma and beta) have one entry per unit or feature map."""
    __tracebackhide__ = True
    where, n = probe.where, num.units(kind, arg)
    mean, var = (np.asarray(s) for s in probe.statistics())
    info = probe.info()
    shapes = [mean.shape, var.shape] + [np.shape(info[k]) for k in ("gamma", "beta") if info[k] is not None]
    if all(shape == (n,) for shape in shapes):
        return
    found = "x".join(str(d) for d in mean.shape) or "one"
    what = "units" if kind == "dense" else "feature maps (output channels)"
    if mean.shape == num.input_shape(kind, arg)[-1:]:
        fail(
            f"{where}: its batch normalization keeps {found} statistics, one per feature of the layer's input, but "
            f"the layer has {n} {what}: it normalizes what goes into the layer. Batch normalization belongs on the "
            "layer's own output (the result of its dense or convolution step), with one mean and variance per "
            f"{_per(kind)}.",
            "math",
        )
    if api == "keras":
        fail(
            f"{where}: its BatchNormalization keeps {found} statistics, but the layer has {n} {what}. Keras' axis "
            f"names the axis that keeps its own mean and variance (the one not averaged over), so it must be the "
            f"axis of the {what}; find which axis that is in this layer's output.",
            "conv" if kind == "conv" else "variables",
        )
    fail(
        f"{where}: its statistics have shape {mean.shape}, but the layer has {n} {what}: one mean and variance per "
        + (
            "unit, taken over the batch."
            if kind == "dense"
            else "feature map, taken over every axis except the feature maps' (the batch and both spatial axes)."
        ),
        "conv" if kind == "conv" else "variables",
    )


@_judged
def check_structure(layer_fn, kind: str, api: str, arg=None) -> None:
    """One batch normalization with one statistic per unit (dense) or feature map (conv); gamma and
    beta trainable, population statistics not (starting at 0 and 1); the layer's output shape kept."""
    __tracebackhide__ = True
    probe = _layer_probe(layer_fn, kind, api, arg, 0)
    where, info = probe.where, probe.info()
    _statistics_fit(probe, kind, api, arg)
    (mean, var), flags = (np.asarray(s) for s in probe.statistics()), info["flags"]
    if flags["pop_mean"] or flags["pop_variance"]:
        fail(
            f"{where}: the population mean and variance are trainable, so the optimizer would change them with "
            "gradients. They are moving averages of the batch statistics, updated only by the training pass: "
            "create them as non-trainable variables.",
            "variables",
        )
    if not (flags["gamma"] and flags["beta"]):
        fail(
            f"{where}: gamma and beta are not trainable, but the network must learn the scale and shift each unit "
            "needs after normalizing.",
            "variables",
        )
    x = num.batches(kind, 1, 7, arg)[0]
    out = np.asarray(probe.call(x, False))
    moved = not all(np.allclose(a, b) for a, b in zip((mean, var), probe.statistics()))
    if not moved and not (np.allclose(mean, 0) and np.allclose(var, 1)):  # (moving at inference: another check)
        fail(
            f"{where}: before any training its population mean should be zeros and its variance ones, so that "
            "inference starts from no shift and no scaling. Check the initial values of the two variables.",
            "variables",
        )
    if info["gamma"] is None or info["beta"] is None:
        missing, option = ("gamma", "scale") if info["gamma"] is None else ("beta", "center")
        fail(
            f"{where}: its BatchNormalization has no {missing} ({option}=False). The layer's output is the normalized "
            "value scaled by gamma and shifted by beta, both learned: beta does the job of the bias the linear layer "
            "gave up, gamma sets each unit's own scale.",
            "variables",
        )
    gamma, beta = _scale_shift(info)
    if not (np.allclose(gamma, 1) and np.allclose(beta, 0)):
        fail(
            f"{where}: gamma should start at ones and beta at zeros, so that training starts from plain normalization"
            + (
                ": with gamma at zero every normalized output is beta, every ReLU outputs zero and no gradient "
                "reaches the weights, so nothing trains."
                if np.allclose(gamma, 0)
                else "."
            )
            + (" Look at gamma_initializer and beta_initializer." if api == "keras" else ""),
            "variables",
        )
    expected = (len(x),) + num.output_shape(kind, arg)
    if out.shape != expected:
        fail(
            f"{where}: output shape {out.shape}, expected {expected}. Keep the layer's size, stride and 'same' "
            "padding as in the network without batch normalization; normalizing never changes a shape.",
            "math",
        )


@_judged
def check_population_statistics(layer_fn, kind: str, api: str, arg=None, steps: int = 4, seed: int = 0) -> None:
    """After ``steps`` training-mode calls the population statistics are the moving average of the
    batch statistics of the tensor the layer normalizes (biased or Bessel-corrected variance).

    Args:
        layer_fn: the student's layer function (in the trusted re-run, a name in the worker).
        kind, api: ``"dense"`` or ``"conv"``; ``"keras"`` (Part 1) or ``"nn"`` (Part 2).
        arg: the layer's size argument (units or depth); None for the checks' default.
        steps: training-mode calls observed.
        seed: seeds the layer's weights and the input batches.
    """
    __tracebackhide__ = True
    probe = _layer_probe(layer_fn, kind, api, arg, seed)
    where, info = probe.where, probe.info()
    _statistics_fit(probe, kind, api, arg)
    inputs = num.batches(kind, steps, seed, arg)
    records = [[np.asarray(s, np.float64) for s in probe.statistics()]]
    outputs = []
    for x in inputs:
        outputs.append(probe.call(x, True))
        records.append([np.asarray(s, np.float64) for s in probe.statistics()])
    if all(np.allclose(r[0], records[0][0]) and np.allclose(r[1], records[0][1]) for r in records):
        fail(never_moved(where, api, steps), "moving_average")
    try:
        placement = _match_contract(where, info, inputs[0], outputs[0], kind, arg, "training")[0]
    except AssertionError:
        placement = None  # the training output is wrong (another check says how): judge the statistics alone
    per_batch = [_candidates(info, x, kind, arg)[0] for x in inputs]
    _moves_per_unit_and_enough(where, kind, api, records, per_batch[0], placement)
    matched, findings = None, []
    for name in per_batch[0]:
        for unbiased in (False, True):
            stats = [num.moments(c[name][0], unbiased) for c in per_batch]
            momentum = num.infer_momentum(records[0][0], records[1][0], stats[0][0])
            if momentum is None or momentum >= 1.0:
                continue
            mean, var = records[0]
            for step, (batch_mean, batch_var) in enumerate(stats, start=1):
                mean = momentum * mean + (1 - momentum) * batch_mean
                var = momentum * var + (1 - momentum) * batch_var
                if not (num.close(mean, records[step][0], atol=1e-3) and num.close(var, records[step][1], atol=1e-3)):
                    if not unbiased:
                        findings.append(worst_entry(momentum, step, kind, (mean, var), records[step]))
                    break
            else:
                matched = (name, momentum)
                break
        if matched and (placement is None or matched[0] == placement):
            break
        if matched:
            fail(
                f"{where} normalizes {placement} but accumulates the population statistics of {matched[0]}. At "
                "inference it would then normalize one tensor with the statistics of another: take the moving "
                "averages of the very tensor you normalize.",
                "moving_average",
            )
    if matched is None:
        if api == "keras":
            fail(
                f"{where}: its moving mean and variance are not a moving average of the batch statistics of the "
                "tensor its BatchNormalization normalizes" + (": " + findings[0] if findings else "") + ". Keras "
                "keeps that average itself: let one BatchNormalization layer normalize the linear output (or its "
                "ReLU) and leave its statistics to it.",
                "moving_average",
            )
        fail(
            f"{where}: the population statistics are not a moving average of the batch statistics"
            + (": " + findings[0] if findings else "")
            + ". Keep the batch's mean and its variance (not the "
            "standard deviation), and let each step keep a fraction decay of the old value.",
            "moving_average",
        )
    if matched[1] < MIN_MOMENTUM - MOMENTUM_TOLERANCE:
        if api == "keras":
            fail(
                f"{where}: its moving averages keep only {matched[1]:.3f} of their old value per batch, so the last "
                "batch counts more than the whole history. Keras' momentum is the weight of the old average (close "
                "to 1), PyTorch's the weight of the new batch.",
                "momentum",
            )
        fail(
            f"{where}: the population statistics are a moving average with decay {matched[1]:.3f}, so each batch "
            "counts more than the whole history. The decay is applied the wrong way round: the old value should "
            "keep the larger share, decay close to 1.",
            "moving_average",
        )


def _moves_per_unit_and_enough(where, kind, api, records, candidates, placement) -> None:
    """Fail when the population statistics move as one number shared by every unit (moments over all axes), or so
    little per batch (a decay of the normalized tensor's statistics, or of any candidate's, above MAX_MOMENTUM) that
    the exercise's run would leave them near their initial values."""
    __tracebackhide__ = True
    (mean, var), n = records[-1], np.size(records[-1][0])
    if n > 1 and np.allclose(mean, np.ravel(mean)[0], atol=1e-6) and np.allclose(var, np.ravel(var)[0], atol=1e-6):
        fail(one_for_all(where, kind), "conv")
    moves = [num.infer_momentum(records[0][0], records[1][0], num.moments(candidates[k][0])[0]) for k in candidates]
    decays = [m for k, m in zip(candidates, moves) if m is not None and 0 <= m < 1 and placement in (None, k)]
    if decays and min(decays) > MAX_MOMENTUM + MOMENTUM_TOLERANCE:
        m, word = min(decays), "momentum" if api == "keras" else "decay"
        fail(
            f"{where}: its population statistics barely move: each training batch moves them {1 - m:.2g} of the way "
            f"to the batch's statistics ({word} {m:.5f}), so after the exercise's {NUM_BATCHES} training batches their "
            f"initial zeros and ones still weigh {m**NUM_BATCHES:.0%} and inference would normalize with about those. "
            f"Choose a {word} that lets the start fade within the run (it weighs {word}^n after n batches).",
            "moving_average",
        )


def _random_scale_shift(probe, kind, arg, seed):
    rng = np.random.default_rng(seed + 101)
    n = num.units(kind, arg)
    probe.set_scale_shift(rng.uniform(0.5, 2.0, n), rng.uniform(-1.0, 1.0, n))


@_judged
def check_training_output(layer_fn, kind: str, api: str, arg=None, seed: int = 0) -> None:
    """Training mode: the output is the full contract (linear, batch normalization with the batch's
    statistics, ReLU before or after), and the gradient reaches the weights through the batch statistics.

    Args:
        layer_fn: the student's layer function (in the trusted re-run, a name in the worker).
        kind, api: ``"dense"`` or ``"conv"``; ``"keras"`` (Part 1) or ``"nn"`` (Part 2).
        arg: the layer's size argument (units or depth); None for the checks' default.
        seed: seeds the layer's weights, gamma and beta, the input and the upstream gradient.
    """
    __tracebackhide__ = True
    probe = _layer_probe(layer_fn, kind, api, arg, seed)
    _statistics_fit(probe, kind, api, arg)
    start = probe.info()
    _random_scale_shift(probe, kind, arg, seed)
    where, info = probe.where, probe.info()
    x = num.batches(kind, 1, seed + 11, arg)[0]
    out = np.asarray(probe.call(x, True))
    placement, unbiased = _match_contract(where, info, x, out, kind, arg, "training")
    upstream = np.random.default_rng(seed + 13).standard_normal(out.shape)
    grad = probe.kernel_gradient(x, upstream)
    if grad is None:
        fail(
            f"{where}: no gradient reaches the layer's weights in training mode, so training cannot change them. "
            "Compute the output from the weights with TensorFlow operations only (nothing that stops or bypasses "
            "the gradient).",
            "backward",
        )
    gamma, beta = _scale_shift(info)
    eps = float(info["epsilon"])
    z, relu_after = _candidates(info, x, kind, arg)[0][placement]
    lin = num.linear(x, info["kernel"], info["bias"], num.stride(kind, arg))

    def reference(unbiased, through_stats):
        mean, var = num.moments(z, unbiased)
        g = upstream * (num.bn_forward(z, gamma, beta, mean, var, eps) > 0) if relu_after else upstream
        if not through_stats:
            dz = g * gamma / np.sqrt(var + eps)
        else:  # autodiff (the grader's NumPy reference in nbgrader's process): no backward pass is shipped (Part 4)
            dz = reference_gradients(g, z, gamma, eps, "bessel" if unbiased else "correct")["dx"]
        return num.kernel_gradient(x, info["kernel"], dz if relu_after else dz * (lin > 0), num.stride(kind, arg))

    # the variance kind the forward pass matched first, then the other (they differ little in the forward pass)
    if any(num.close_rel(grad, reference(u, True)) for u in (unbiased, not unbiased)):
        return _learns_from_the_start(probe, where, start, x, upstream, grad)
    if any(num.close_rel(grad, reference(u, False)) for u in (unbiased, not unbiased)):
        fail(
            f"{where}: the gradient does not flow through the batch mean and variance (were they wrapped in "
            "tf.stop_gradient, or taken from outside the computation?). Batch normalization's backward pass goes "
            "through them; without it this network does not learn.",
            "stopped_statistics",
        )
    fail(
        f"{where}: in training mode the gradient of the output with respect to the weights is not that of batch "
        "normalization. Compute the output with TensorFlow operations from the statistics of this very batch.",
        "backward",
    )


def _learns_from_the_start(probe, where, start, x, upstream, grad) -> None:
    """Fail when, with gamma and beta at their initial values, (almost) no gradient reaches the layer's weights:
    the network could not start to learn."""
    __tracebackhide__ = True
    gamma, beta = _scale_shift(start)
    probe.set_scale_shift(gamma, beta)
    initial = probe.kernel_gradient(x, upstream)
    share = 0.0 if initial is None else float(np.linalg.norm(initial) / max(np.linalg.norm(grad), 1e-30))
    if share < 1e-3:
        fail(
            f"{where}: with its initial gamma and beta almost no gradient reaches its weights in training mode "
            f"(its size is {share:.1g} of that with other values), so the network cannot start to learn"
            + (
                ": gamma starts at zero, so every normalized output is beta and every ReLU outputs zero."
                if np.allclose(gamma, 0)
                else "."
            )
            + " Batch normalization starts from gamma = 1 and beta = 0.",
            "variables",
        )


def _explicit_flag_works(probe, x, stats) -> bool:
    """Whether an explicit ``model(x, training=False)`` (which overrides a flag fixed inside the layers) leaves
    the statistics alone and scores a batch of one like the same sample in the batch; starts from ``stats``."""
    probe.set_statistics(*stats)
    out = np.asarray(probe.call_explicit(x))
    moved = not all(np.allclose(a, b) for a, b in zip(stats, probe.statistics()))
    single = np.asarray(probe.call_explicit(x[:1]))
    probe.set_statistics(*stats)
    return not moved and num.close(single, out[:1])


@_judged
def check_inference_output(layer_fn, kind: str, api: str, arg=None, seed: int = 0) -> None:
    """Inference mode, as the notebook's ``predict`` runs it (for Keras ``model(images)``, with no flag):
    the output is normalized with the population statistics (a batch of one gives the same output as that
    sample inside a bigger batch) and the statistics do not move.

    Args:
        layer_fn: the student's layer function (in the trusted re-run, a name in the worker).
        kind, api: ``"dense"`` or ``"conv"``; ``"keras"`` (Part 1) or ``"nn"`` (Part 2).
        arg: the layer's size argument (units or depth); None for the checks' default.
        seed: seeds the layer's weights, gamma and beta, and the inputs.
    """
    __tracebackhide__ = True
    probe = _layer_probe(layer_fn, kind, api, arg, seed)
    _statistics_fit(probe, kind, api, arg)
    for x in num.batches(kind, 3, seed, arg):
        probe.call(x, True)
    _random_scale_shift(probe, kind, arg, seed)
    where, info = probe.where, probe.info()
    before = [np.asarray(s, np.float64) for s in probe.statistics()]
    x = num.batches(kind, 1, seed + 23, arg)[0]
    out = probe.call(x, False)
    after = [np.asarray(s, np.float64) for s in probe.statistics()]
    if not all(a.shape == b.shape and np.allclose(a, b) for a, b in zip(before, after)):
        if api == "keras":
            fail(
                flag_fixed_inside(where, "moves its moving mean and variance", _explicit_flag_works(probe, x, before)),
                "inference",
            )
        fail(
            f"{where}: the population statistics changed in inference mode, so a prediction would depend on what "
            "was evaluated before. Update them only when training; at inference just use them.",
            "inference",
        )
    single = np.concatenate([np.asarray(probe.call(x[i : i + 1], False)) for i in range(2)])
    if not num.close(single, np.asarray(out)[:2]):
        if api == "keras":
            fail(
                flag_fixed_inside(
                    where, "normalizes with the batch's own statistics", _explicit_flag_works(probe, x, before)
                ),
                "batch_of_one",
            )
        fail(
            f"{where}: in inference mode a batch of one gives a different output than the same sample inside a "
            "bigger batch, so inference still depends on the batch: when not training, normalize with the "
            "population statistics.",
            "batch_of_one",
        )
    _match_contract(where, info, x, out, kind, arg, "inference", population=before)
