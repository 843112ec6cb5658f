"""The one exception a failing check raises, shown as its message alone, and the lesson sections
that the messages point to."""

from __future__ import annotations

import textwrap

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


# the error a cell that ended the graded kernel gets (bnlab.instructor.preprocessors.execute), which the grading
# job reports
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
    line of the test cell, so a hidden test's code or arguments never reach a student's output.
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
