"""The one exception a failing check raises, shown as its message alone; the lesson sections that the messages
point to; what an exception raised by the student's own code says, told in terms of that code; the messages several
checks share, and the wrapper (:func:`judged`) that turns a judging error on malformed data into a failed check."""

from __future__ import annotations

import functools
import re
import textwrap

import numpy as np

# the lesson's sections a failure message points to: {key: (section number, heading, sub-heading or "")}
LESSON = {
    "math": (1, "The idea and the math", ""),
    "inference": (2, "Training versus inference", ""),
    "moving_average": (2, "Training versus inference", "Population statistics as a moving average"),
    "batch_of_one": (2, "Training versus inference", "Why a batch of one needs population statistics"),
    "variables": (
        4,
        "The batch-normalized MLP of the textbook chapter",
        "The variables of a batch normalization layer",
    ),
    "by_hand": (5, "Batch normalization by hand", ""),
    "plain_network": (8, "Inside the exercise's network: why it does not learn without batch normalization", ""),
    "conv": (6, "Convolutional and recurrent networks", "ConvNets: one mean and variance per feature map"),
    "fine_tuning": (11, "Deployment: folding, fine-tuning, conventions, cost", "The fine-tuning pitfall"),
    "backward": (12, "The backward pass by hand", ""),
    "stopped_statistics": (12, "The backward pass by hand", "When the gradient skips the statistics"),
    "momentum": (
        11,
        "Deployment: folding, fine-tuning, conventions, cost",
        "Momentum conventions, and the paper's unbiased variance",
    ),
}


# the error a cell that ended the notebook's kernel gets when the notebook is graded
KERNEL_DIED = (
    "KernelDied",
    "the Python process ended while this cell ran (os._exit, sys.exit in a thread, a crash "
    "in native code, or it ran out of memory). The cell is skipped: a new kernel ran the cells before it "
    "again and the rest of the notebook was graded without it.",
)


def lesson_reference(key: str) -> str:
    """``Read: lesson, section 2, *Training versus inference*`` (with the sub-heading when there is one)."""
    number, heading, sub = LESSON[key]
    return f"Read: lesson, section {number}, *{heading}*" + (f" (*{sub}*)." if sub else ".")


class CheckFailed(AssertionError):
    """A graded check failed. A subclass of :class:`AssertionError`, so nbgrader counts it as a failure.

    IPython shows an exception through its ``_render_traceback_`` when it has one: this one shows
    only its message (what is wrong, why, what to try, where to read), with no grader frames and no
    line of the check cell.
    """

    def _render_traceback_(self) -> list:
        lines = ["\x1b[0;31mCheck failed\x1b[0m"]
        for paragraph in str(self).split("\n"):
            lines.extend(textwrap.wrap(paragraph, 110) or [""])
        return lines


def fail(message: str, lesson: str | None = None) -> None:
    """Raise :class:`CheckFailed` with ``message`` and, on its own line, the ``lesson`` section to read
    (a key of :data:`LESSON`), chained to nothing (no grader context shown)."""
    __tracebackhide__ = True
    if lesson is not None:
        message = f"{message}\n{lesson_reference(lesson)}"
    raise CheckFailed(message) from None


def first_line(exc: BaseException) -> str:
    """The sentence that says most: TensorFlow's traced errors start with "in user code:" and end with the
    cause; a repeated "ValueError: " prefix and the advice TensorFlow appends are left out."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1] if lines[0].startswith("in user code") else lines[0]
    line = re.sub(r"^(\w+(Error|Exception): )+", "", line)
    line = re.split(r"(?<=[.!?]) (?=[A-Z])", line)[0].rstrip(".")
    return line[:200]


def _keras_layer_files(exc: BaseException) -> set:
    """The Keras layer modules the error passed through ("batch_normalization", "conv2d", ...)."""
    found, tb = set(), exc.__traceback__
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        if "/keras/src/layers/" in path:
            found.add(path.rsplit("/", 1)[-1].removesuffix(".py"))
        tb = tb.tb_next
    return found


def explain(description: str, exc: BaseException) -> str:
    """What went wrong in the student's call, in terms of their code (no traceback, no grader frames)."""
    text = first_line(exc)
    who = description.split()[0].split("(")[0]
    if isinstance(exc, TypeError) and re.match(r"^\S+\(\) (takes|missing|got)", text):
        return (
            f"{description} could not be called: {text}. Check the function's signature against the one "
            "given in the exercise (the notebook's code calls it that way)."
        )
    if "batch_normalization" in _keras_layer_files(exc) or re.search(r"'batch_normalization(_\d+)?/", str(exc)):
        return (
            f"{who}: keras.layers.BatchNormalization did not accept its axis. Keras' axis names the one axis that "
            "keeps its own statistics (the units of a dense layer, the feature maps of a convolution), not the "
            "axes averaged over as in tf.nn.moments. Find which axis holds them in this layer's output."
        )
    hint = ""
    if any(word in text.lower() for word in ("shape", "incompatible", "dimension")):
        hint = (
            " A shape error usually means the statistics were taken over the wrong axes or a variable has the "
            "wrong shape (one entry per unit, or per feature map for a conv layer)."
        )
    return f"{description} raised {type(exc).__name__} in your code: {text[:160]}.{hint}"


# --- messages several checks share, and the wrapper that turns judging errors into one ---


def judged(check):
    """Judging errors on malformed data (shapes that do not fit) become a CheckFailed, not a crash."""

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        __tracebackhide__ = True
        try:
            return check(*args, **kwargs)
        except (ValueError, IndexError, KeyError, TypeError):
            fail(
                f"{name_of(args[0] if args else None, 'the function')}: its batch normalization's parameters or "
                "statistics do not fit the layer's output, so they cannot be applied to it. Batch normalization keeps "
                "one mean, variance, gamma and beta per unit (dense) or per feature map (conv) of the layer's own "
                "output.",
                "conv",
            )

    return wrapper


def name_of(fn, default: str) -> str:
    """The judged function's own name (a remote name's too), or ``default``."""
    name = getattr(fn, "__name__", None) or getattr(fn, "name", None)
    return name if isinstance(name, str) and name.isidentifier() else default


def per(kind):
    return "unit" if kind == "dense" else "feature map (output channel)"


def one_for_all(where: str, kind: str) -> str:
    what = "unit" if kind == "dense" else "feature map"
    return (
        f"{where}: its batch normalization uses one mean and one variance shared by every {what}: the moments were "
        f"taken over all axes, the {what}s' own axis too. Batch normalization keeps one mean and variance per "
        f"{per(kind)}: take them over every axis except the last ({'[0]' if kind == 'dense' else '[0, 1, 2]'})."
    )


def never_moved(where: str, api: str, steps: int) -> str:
    if api == "keras":
        return (
            f"{where}: the moving mean and variance of its BatchNormalization never changed during {steps} "
            "training-mode calls of the model. Keras updates them itself whenever the layer runs in training "
            "mode, so something inside the layer function keeps it from training mode (a fixed flag, a frozen "
            "layer)."
        )
    return (
        f"{where}: pop_mean and pop_variance never changed during {steps} training-mode calls, so inference would "
        "normalize with their initial values. In training mode, move both a small step towards this batch's "
        "mean and variance (a moving average with decay close to 1)."
    )


def flag_fixed_inside(where: str, effect: str, overridable: bool) -> str:
    if overridable:
        return (
            f"{where}: called as the notebook's predict calls the model (no training flag), the layer {effect}. "
            "A training flag fixed inside the layer function overrides the mode the model is called in, so at "
            "inference every image is judged by the batch around it. Let the model's call decide the mode: "
            "Keras passes it on to every layer."
        )
    return (
        f"{where}: at inference the layer {effect}, even when the model is called with training=False: its "
        "BatchNormalization runs in training mode whatever the model's mode (a training flag fixed inside the "
        "layer function, or a custom layer that does not pass its own on), so every image is judged by the "
        "batch around it. Let the model's mode reach the BatchNormalization."
    )


def stats_named(mode: str) -> str:
    return "the batch's own mean and variance" if mode == "training" else "the population mean and variance"


def worst_entry(momentum, step, kind, expected, found) -> str:
    """The moving average's entry furthest from what it should be (shapes fit: :func:`_statistics_fit`)."""
    i = int(np.argmax(np.maximum(*(np.abs(np.ravel(e) - np.ravel(f)) for e, f in zip(expected, found)))))
    (mean, var), (got_mean, got_var) = ([float(np.ravel(v)[i]) for v in pair] for pair in (expected, found))
    return (
        f"with decay {momentum:.3f}, after step {step} the mean of {per(kind)} {i} should be {mean:.3f} and its "
        f"variance {var:.3f}; found {got_mean:.3f} and {got_var:.3f}"
    )
