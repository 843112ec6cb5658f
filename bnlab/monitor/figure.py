"""The monitor's chart: loss and accuracy curves of every run, rendered off-screen to PNG.

Legend labels are kept short enough to fit beside the plots without losing what tells runs
apart (:func:`legend_labels`): the part every name shares goes to the legend's title, and a
label still too long is shortened in the middle, so that names that differ at their end (the
lesson's ``"…, no BN"`` / ``"…, with BN"``) stay different.
"""

from __future__ import annotations

import io
import os

__all__ = ["ChartFigure", "legend_labels", "shorten_middle", "LEGEND_WIDTH"]

#: Characters of a legend label (at font size 8 they fill the space right of the plots); the
#: legend's title, which has no line in front of it, may be a few characters longer.
LEGEND_WIDTH = 28
TITLE_EXTRA = 4
ELLIPSIS = "…"


def shorten_middle(text: str, width: int = LEGEND_WIDTH) -> str:
    """``text`` itself when it fits in ``width`` characters, else its start and its (longer) end
    joined by an ellipsis: ``"lr=1, sigmoid, normal-0.001, with BN"`` -> ``"lr=1, sigm…01, with BN"``."""
    if width < 3:
        raise ValueError(f"width must be at least 3 characters, not {width}")
    if len(text) <= width:
        return text
    tail = (width - 1) // 2 + (width - 1) % 2
    head = width - 1 - tail
    return text[:head].rstrip() + ELLIPSIS + text[len(text) - tail :].lstrip()


def _shared_start(names: list[str]) -> str:
    """The longest start all ``names`` share that ends after a separator (``", "`` or ``" "``)
    and leaves every name a rest; ``""`` for fewer than two names."""
    if len(names) < 2:
        return ""
    common = os.path.commonprefix(names)
    common = common[: common.rfind(" ") + 1]  # "" when there is no separator
    if any(len(name) == len(common) for name in names):
        return ""
    return common


def legend_labels(names: list[str], width: int = LEGEND_WIDTH) -> tuple[str, list[str]]:
    """``(title, labels)`` for a legend of runs called ``names``, each label at most ``width`` long
    (the title at most ``width + TITLE_EXTRA``).

    Names that all fit are kept whole (no title). Otherwise the start they share becomes the
    title and the rests are shortened in the middle; labels that still coincide are numbered
    (``"1: …"``) in the order of ``names``, so distinct runs always get distinct labels.
    """
    if all(len(name) <= width for name in names):
        return "", list(names)
    shared = _shared_start(names)
    title = shorten_middle(shared.rstrip(" ,;:"), width + TITLE_EXTRA) if shared else ""
    labels = [shorten_middle(name[len(shared) :], width) for name in names]
    if len(set(labels)) < len(labels):
        labels = [shorten_middle(f"{i}: {name[len(shared) :]}", width) for i, name in enumerate(names, 1)]
    return title, labels


class ChartFigure:
    """An off-screen matplotlib figure (Agg, no pyplot) with a loss and an accuracy axis.

    Args:
        title: the figure's title.
        caption: a small line under the title (the monitor puts the training device there), so that
            the static PNG left at close still says where the curves come from.
        width, height: the figure's size in inches.
        dpi: pixels per inch of the rendered PNG.
    """

    def __init__(self, title: str, caption: str = "", width: float = 9.5, height: float = 3.5, dpi: int = 80):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D

        self.figure = Figure(figsize=(width, height), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        self.figure.subplots_adjust(left=0.085, right=0.75, bottom=0.14, top=0.84, wspace=0.25)
        self.ax_loss, self.ax_acc = self.figure.subplots(1, 2)
        self.figure.suptitle(title, fontsize=11, y=0.985)
        if caption:
            self.figure.text(0.5, 0.915, caption, ha="center", va="center", fontsize=8, color="0.35")
        for ax, label in ((self.ax_loss, "loss"), (self.ax_acc, "accuracy")):
            ax.set_xlabel("batch")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        self._lines: dict[str, dict[str, object]] = {}
        self._style_handles = [
            Line2D([], [], color="0.3", linestyle="-", label="train"),
            Line2D([], [], color="0.3", linestyle="--", marker="o", markersize=4, label="validation"),
        ]

    def legend_texts(self) -> list[str]:
        """The legend's title (if any) and labels as drawn, for checks."""
        legend = self.ax_acc.get_legend()
        if legend is None:
            return []
        title = legend.get_title().get_text()
        return ([title] if title else []) + [text.get_text() for text in legend.get_texts()]

    def _lines_for(self, run) -> dict[str, object]:
        lines = self._lines.get(run.name)
        if lines is None:
            lines = {}
            for key, ax in (("loss", self.ax_loss), ("acc", self.ax_acc)):
                (lines[f"train_{key}"],) = ax.plot(
                    [], [], color=run.color, linestyle="-", linewidth=1.4, marker="o", markersize=2, markevery=[-1]
                )
                (lines[f"val_{key}"],) = ax.plot(
                    [], [], color=run.color, linestyle="--", marker="o", markersize=4, linewidth=1.2
                )
            self._lines[run.name] = lines
            self._update_legend()
        return lines

    def _update_legend(self) -> None:
        title, labels = legend_labels(list(self._lines))
        handles = [lines["train_acc"] for lines in self._lines.values()]
        for handle, label in zip(handles, labels):
            handle.set_label(label)
        # beside the plots, so that it never hides a curve
        self.ax_acc.legend(
            handles=handles + self._style_handles,
            title=title or None,
            fontsize=8,
            title_fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
        )

    def render(self, runs) -> bytes:
        """Update the curves of ``runs`` and return the figure as PNG bytes."""
        for run in runs:
            lines = self._lines_for(run)
            for split, points in (("train", run.train), ("val", run.validation)):
                batches = [p[0] for p in points]
                lines[f"{split}_loss"].set_data(batches, [p[1] for p in points])
                lines[f"{split}_acc"].set_data(batches, [p[2] for p in points])
        for ax in (self.ax_loss, self.ax_acc):
            ax.relim()
            ax.autoscale_view()
        buffer = io.BytesIO()
        self.canvas.print_png(buffer, pil_kwargs={"compress_level": 1})
        return buffer.getvalue()
