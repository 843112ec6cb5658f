"""A viewer for :class:`bnlab.diagnostics.LayerRecord`: pick a layer and a training step.

In a live Jupyter kernel with ipywidgets the viewer is a layer dropdown, a step slider and a PNG
of an off-screen Agg figure that redraws on every change (and while training adds snapshots). Its
display bundle also carries a PNG of the current figure, so a notebook opened where widgets do not
render (nbconvert, GitHub) still shows a picture. Without a live kernel (a script, a test)
:meth:`LayerViewer.show` draws a static figure instead, the way :mod:`bnlab.monitor` degrades.
"""

from __future__ import annotations

import io

import numpy as np

COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")


def live_kernel() -> bool:
    """True inside a Jupyter kernel (a ZMQ-connected IPython) with ipywidgets importable."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except Exception:
        return False
    shell = get_ipython()
    return shell is not None and (
        type(shell).__name__ == "ZMQInteractiveShell" or getattr(shell, "kernel", None) is not None
    )


class LayerViewer:
    """Pre-activation histograms, their spread layer by layer, and gradient norms, for several records.

    ``records`` are :class:`bnlab.diagnostics.LayerRecord` objects (e.g. the network without and with
    batch normalization); they may still be filling up, call :meth:`refresh` after each snapshot.
    """

    def __init__(self, records=(), layers=None, title: str = "Inside the 20-layer network", dpi: int = 72):
        self.records = list(records)
        if layers is None and not self.records:
            raise ValueError("give the layer names (layers=...) or at least one record")
        self.layers = list(layers if layers is not None else self.records[0].layers)
        self.title = title
        self.dpi = dpi
        self.layer = self.layers[0]
        self.step = 1
        self._widgets = None
        self._syncing = False
        self._handle = None

    # -- state ----------------------------------------------------------------------------------
    def steps(self) -> list[int]:
        """Batches with a snapshot in at least one record."""
        return sorted({s for record in self.records for s in record.snapshot_steps})

    def follow(self, record) -> None:
        """Add ``record`` if it is new, then show its latest snapshot (pass as ``on_snapshot``)."""
        if all(record is not known for known in self.records):
            self.records.append(record)
        self.refresh()

    def select(self, layer: str | None = None, step: int | None = None) -> None:
        """Choose what the figure shows; unknown layers are rejected with the valid names."""
        if layer is not None:
            if layer not in self.layers:
                raise ValueError(f"unknown layer {layer!r}; choose one of {self.layers}")
            self.layer = layer
        if step is not None:
            self.step = int(step)
        if self._widgets is not None:
            self._sync_widgets()

    # -- drawing --------------------------------------------------------------------------------
    def figure(self, layer: str | None = None, step: int | None = None):
        """A matplotlib ``Figure`` (Agg, not managed by pyplot) for ``layer`` at batch ``step``."""
        from matplotlib.figure import Figure

        layer = self.layer if layer is None else layer
        step = self.step if step is None else step
        index = self.layers.index(layer)
        fig = Figure(figsize=(11, 6), dpi=self.dpi)
        axes = fig.subplots(2, 3)
        positions = np.arange(1, len(self.layers) + 1)
        for color, record, ax in zip(COLORS, self.records, axes[0, :2]):
            if not record.snapshot_steps or record.snapshot_steps[0] > step:
                ax.set_title(f"{record.name}: no snapshot yet", fontsize=9)
                continue
            k = record.snapshot(step)
            values = record.samples[k][index]
            ax.hist(values, bins=50, color=color, alpha=0.8)
            ax.set_title(
                f"{record.name}: {layer} at batch {record.snapshot_steps[k]}\n"
                f"std {record.preact_std[k][index]:.3g}, "
                f"{100 * record.active_fraction[k][index]:.0f}% positive",
                fontsize=9,
            )
            ax.set_xlabel("pre-activation value (ReLU input)", fontsize=8)
        ax_time = axes[0, 2]
        for color, record in zip(COLORS, self.records):
            norms = np.array([n[index] for n in record.grad_norms])
            ax_time.semilogy(record.grad_steps, np.maximum(norms, 1e-30), color=color, label=record.name)
        ax_time.axvline(step, color="gray", linestyle=":")
        ax_time.set_title(f"gradient norm of {layer}'s kernel over training", fontsize=9)
        ax_time.set_xlabel("batch", fontsize=8)
        ax_std, ax_grad, ax_active = axes[1]
        for color, record in zip(COLORS, self.records):
            if not record.snapshot_steps or record.snapshot_steps[0] > step:
                continue
            k = record.snapshot(step)
            ax_std.semilogy(
                positions, np.maximum(record.preact_std[k], 1e-30), "o-", color=color, ms=3, label=record.name
            )
            g = record.grad_steps.index(record.snapshot_steps[k])
            ax_grad.semilogy(positions, np.maximum(record.grad_norms[g], 1e-30), "o-", color=color, ms=3)
            ax_active.plot(positions, 100 * record.active_fraction[k], "o-", color=color, ms=3)
        for ax, text in (
            (ax_std, "std of pre-activations"),
            (ax_grad, "kernel-gradient norm"),
            (ax_active, "% of pre-activations > 0"),
        ):
            ax.axvline(index + 1, color="gray", linestyle=":")
            ax.set_title(f"{text}\nlayer by layer, at batch {step}", fontsize=9)
            ax.set_xticks(positions[::2])
            ax.set_xticklabels([n.replace("conv", "c") for n in self.layers[::2]], fontsize=7)
        ax_active.set_ylim(-5, 105)
        if self.records:
            ax_std.legend(fontsize=8)
        fig.suptitle(self.title, fontsize=11)
        fig.tight_layout()
        return fig

    def png(self, layer: str | None = None, step: int | None = None) -> bytes:
        """The figure as PNG bytes."""
        buffer = io.BytesIO()
        self.figure(layer, step).savefig(buffer, format="png")
        return buffer.getvalue()

    # -- display --------------------------------------------------------------------------------
    def widget(self):
        """The ipywidgets panel (built once): layer dropdown, step slider, figure."""
        if self._widgets is None:
            import ipywidgets as widgets

            steps = self.steps() or [1]
            self.step = self.step if self.step in steps else steps[-1]
            layer = widgets.Dropdown(options=self.layers, value=self.layer, description="layer")
            step = widgets.SelectionSlider(
                options=steps,
                value=self.step,
                description="batch",
                continuous_update=False,
                layout=widgets.Layout(width="420px"),
            )
            image = widgets.Image(format="png", value=self.png() if self.steps() else b"")
            layer.observe(lambda change: self.select(layer=change["new"]), names="value")
            step.observe(lambda change: self.select(step=change["new"]), names="value")
            self._widgets = (layer, step, image, widgets.VBox([widgets.HBox([layer, step]), image]))
        return self._widgets[3]

    def _sync_widgets(self) -> None:
        layer, step, image, _ = self._widgets
        steps = self.steps()
        if not steps or self._syncing:
            return
        self._syncing = True  # the value changes below call back into select(); draw once
        try:
            wanted_layer, wanted_step = self.layer, self.step if self.step in steps else steps[-1]
            if list(step.options) != steps:
                step.options = steps  # may move the slider's value (and call back): set it again below
            layer.value, step.value = wanted_layer, wanted_step
            self.layer, self.step = wanted_layer, wanted_step
            image.value = self.png()
        finally:
            self._syncing = False

    def refresh(self) -> None:
        """Follow new snapshots: show the latest batch (called while training)."""
        steps = self.steps()
        if steps and self._widgets is not None:
            self.step = steps[-1]
            self._sync_widgets()

    def show_live(self) -> bool:
        """Display the widget now if a live kernel can show it (it then fills while training); returns that."""
        if not live_kernel():
            return False
        from IPython.display import display

        self._handle = display(self, display_id=True)
        return True

    def show(self, layers: tuple[str, ...] | None = None, step: int | None = None) -> None:
        """After training: select ``layers[0]`` at ``step`` in the widget, or draw static figures.

        In a live kernel the widget shown by :meth:`show_live` is updated in place (its display then
        also carries a PNG of the figure, for viewers without widgets), or displayed now if it was
        not shown; elsewhere one static figure per layer in ``layers`` is displayed.
        """
        from IPython.display import Image, display

        layers = tuple(layers or (self.layer,))
        if live_kernel():
            self.select(layer=layers[0], step=step)
            if self._handle is not None:
                self._handle.update(self)
            else:
                self._handle = display(self, display_id=True)
            return
        for layer in layers:
            display(Image(self.png(layer, step)))

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude) or {}
        if self.steps():
            import base64

            bundle["image/png"] = base64.b64encode(self.png()).decode("ascii")
        return bundle
