"""The graded checks of the training step, the prediction and the multiple-choice answers.

Like :mod:`bnlab.grading.checks` (whose helpers they share), they call the student's function
through a probe, judge what it did with NumPy and raise :class:`~bnlab.grading.errors.CheckFailed`
with a message that names the lesson section. ``train_step`` is judged against a reference model
with plain SGD, and also run traced with the training run's optimizer (:class:`bnlab.training.adam.FusedAdam`).
"""

from __future__ import annotations

import numpy as np

from bnlab.grading import numeric as num
from bnlab.grading.checks import _remote
from bnlab.grading.errors import fail, judged, name_of

STEP_MOMENTUM = 0.9  # the momentum of the reference model's BatchNormalization (probes.StepProbe)
STEP_LEARNING_RATE = 0.1
QUESTION_SECTIONS = {
    "single_images": "batch_of_one",
    "statistics": "conv",
    "plain_network": "plain_network",
    "diagnose_memory": "moving_average",
}  # where each question's idea is taught


def _step_probe(fn, seed):
    session = _remote(fn)
    if session is not None:
        return session.probe("step", seed)
    from bnlab.grading import probes

    return probes.StepProbe(seed)


def _one_hot(n, seed):
    return np.eye(3, dtype=np.float32)[(np.arange(n) + seed) % 3]


@judged
def check_train_step(train_step, fully_connected=None, seed: int = 0) -> None:
    """``train_step`` trains in training mode: the population statistics take one moving-average step
    from the batch statistics, and the weights move along the gradient of the training-mode loss; it also
    runs, traced, with the training run's optimizer (:class:`bnlab.training.adam.FusedAdam`) and moves the weights.
    (``fully_connected`` is accepted and ignored: the check uses a reference model of its own.)"""
    __tracebackhide__ = True
    name = name_of(train_step, "train_step")
    probe = _step_probe(train_step, seed)
    x = num.batches("dense", 1, seed + 5)[0]
    report = probe.train_step(train_step, x, _one_hot(len(x), seed), STEP_LEARNING_RATE)
    if not report["returned_pair"]:
        fail(
            f"{name} must return the batch's loss and logits, as the given version does: the training loop logs both.",
            "inference",
        )
    (mean0, var0), (mean1, var1) = report["stats_before"], report["stats_after"]
    if np.allclose(mean1, mean0) and np.allclose(var1, var0):
        fail(
            f"{name} did not update the population statistics, so the model ran in inference mode: its batch "
            "normalization used the moving averages and never learned them. A Keras model runs in inference mode "
            "unless its call says otherwise: look at how the model is called inside the tape.",
            "inference",
        )
    batch_mean, batch_var = num.moments(report["z"])
    m = STEP_MOMENTUM
    if not (
        num.close(mean1, m * np.asarray(mean0) + (1 - m) * batch_mean, atol=1e-3)
        and num.close(var1, m * np.asarray(var0) + (1 - m) * batch_var, atol=1e-3)
    ):
        fail(
            f"{name} changed the population statistics, but not by one moving-average step from this batch's "
            "statistics: every training-mode call moves them, so call the model once per training step.",
            "moving_average",
        )
    delta = np.concatenate(
        [(np.asarray(a) - np.asarray(b)).ravel() for a, b in zip(report["weights_after"], report["weights_before"])]
    )
    if not np.any(np.abs(delta) > 1e-7):
        fail(
            f"{name} did not change the trainable weights: the gradients it computes are never applied with the "
            "optimizer it is given.",
            "inference",
        )
    expected = {
        mode: -STEP_LEARNING_RATE * np.concatenate([np.asarray(g).ravel() for g in report[f"grad_{mode}"]])
        for mode in ("training", "inference")
    }
    if num.close_rel(delta, expected["inference"]) and not num.close_rel(delta, expected["training"]):
        fail(
            f"{name}'s loss comes from an inference-mode pass (population statistics), so its gradients are not "
            "those of the network being trained: take the loss from the training-mode pass, inside the tape.",
            "inference",
        )
    if not num.close_rel(delta, expected["training"]):
        fail(
            f"{name}'s update is not the gradient of the training-mode loss: compute the loss from the logits of "
            "one training-mode pass inside the tape, with training.loss_fn, and apply its gradients once.",
            "inference",
        )
    if report.get("run_optimizer_error"):
        fail(
            f"{name} fails with the optimizer the training run uses (Adam from bnlab, which offers "
            f"apply_gradients and apply): {report['run_optimizer_error']}. Apply the gradients through one of "
            "those two methods.",
            "inference",
        )
    moved = report.get("run_optimizer_weights") is None or any(
        not np.allclose(np.asarray(a), np.asarray(b))
        for a, b in zip(report["run_optimizer_weights"], report["weights_before"])
    )
    if not moved or report.get("run_optimizer_steps", 1) != 1:
        fail(
            f"{name} did not take exactly one step with the optimizer it is given (the training run passes Adam "
            "from bnlab; the training loop and its learning rate act on that one): apply the gradients once, "
            "through that optimizer.",
            "inference",
        )


@judged
def check_predict(predict, fully_connected=None, seed: int = 0) -> None:
    """``predict`` runs the model in inference mode: it uses the population statistics, does not change
    them, and scores a batch of one like the same sample inside a bigger batch.
    (``fully_connected`` is accepted and ignored: the check uses a reference model of its own.)"""
    __tracebackhide__ = True
    name = name_of(predict, "predict")
    probe = _step_probe(predict, seed)
    probe.warm_up(num.batches("dense", 3, seed + 3))
    report = probe.predict(predict, num.batches("dense", 1, seed + 9)[0])
    if not all(np.allclose(a, b) for a, b in zip(report["stats_before"], report["stats_after"])):
        fail(
            f"{name} changed the population statistics: it ran the model in training mode. Evaluation must not "
            "change the model: run it in inference mode.",
            "inference",
        )
    logits = np.asarray(report["logits"])
    if not num.close(logits, report["inference"]):
        if num.close(logits, report["training"]):
            fail(
                f"{name} normalizes with the batch statistics, so a prediction depends on the other images in the "
                "batch: run the model in inference mode, with the population statistics.",
                "batch_of_one",
            )
        fail(f"{name}(model, images) should return the model's logits in inference mode.", "inference")
    if not num.close(report["single"], logits[:1]):
        fail(f"{name} gives a different answer for a batch of one than for the same sample in a batch.", "batch_of_one")


def _answer_value(answer):
    session = _remote(answer)
    return session.value(answer) if session is not None else answer


def _teaching(question, value, key=None) -> str:
    """What :func:`bnlab.questions.teach` says of a wrong ``value`` (the generic line where it cannot say)."""
    message = "This is not what happens. Run the experiment, compare with your prediction, and think about why."
    if question is not None:
        try:
            from bnlab.questions import teach

            message = str(teach(question, value, key))
        except Exception:  # noqa: BLE001 - the generic line then
            pass
    return message


@judged
def check_choice(answer, options, expected=None, question=None) -> None:
    """``answer`` is one of ``options`` (compared without case and surrounding spaces); with ``expected``,
    it is that one, and a wrong choice is answered with :func:`bnlab.questions.teach` for ``question``.

    For a question whose options are shown in an order drawn per student (:data:`bnlab.questions.OPTIONS`),
    ``expected`` names the right option by its key, and the letter it has for the student graded
    (:func:`bnlab.variants.student_id`) is the expected one."""
    __tracebackhide__ = True
    value = _answer_value(answer)
    allowed = [str(o).strip().lower() for o in options]
    given = value.strip().lower() if isinstance(value, str) else None
    if given not in allowed:
        fail(f"Answer with one of {', '.join(repr(str(o)) for o in options)} (a string); found {value!r}.")
    if expected is None:
        return
    from bnlab import questions

    if question in questions.OPTIONS:
        letters = {key: letter for letter, key in questions.choices(question).items()}
        if expected not in letters:
            fail(f"The test names {expected!r}, which is not an option of {question!r} ({', '.join(sorted(letters))}).")
        expected = letters[expected]
    if given != str(expected).strip().lower():
        message = _teaching(question, value)
        fail(message, None if "lesson, section" in message else QUESTION_SECTIONS.get(question))


@judged
def check_number(answer, question, expected=None, within: float = 0.0, wrong=None) -> None:
    """``answer`` is a number; with ``expected``, it is the student's right one, give or take ``within``.

    ``expected`` is either the key of the right value among :func:`bnlab.questions.candidates` of the student's
    case, or a list of the right values of each variant of ``question`` (the one drawn for the student graded,
    :func:`bnlab.variants.draw`, is expected); ``wrong`` maps what a wrong answer may claim to such a list,
    for its teaching message."""
    __tracebackhide__ = True
    value = _answer_value(answer)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        fail(f"Answer with a number, such as 12 or 0.5 (not in quotes); found {value!r}.")
    if not np.isfinite(value):
        fail(f"Answer with a finite number; found {value!r}.")
    if expected is None:
        return
    from bnlab import questions, variants

    if isinstance(expected, str):
        found = questions.candidates(question)
        right, others = found[expected], {key: v for key, v in found.items() if key != expected}
    else:
        drawn = variants.draw(question, len(expected))
        right, others = expected[drawn], {key: values[drawn] for key, values in (wrong or {}).items()}
    if abs(float(value) - right) <= within:
        return
    claimed = next((key for key, v in others.items() if abs(float(value) - v) <= within), "other")
    message = _teaching(question, value, claimed)
    fail(message, None if "lesson, section" in message else QUESTION_SECTIONS.get(question))
