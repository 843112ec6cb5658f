"""The lesson's layer viewer (bnlab.layer_viewer) in JupyterLab: it fills while training, then a
student picks another layer and the figure changes.

A scratch notebook in the student lab's copy trains the exercise's CNN for a few batches on random
images (fast), so the check does not depend on the lesson's long cells.
"""

from __future__ import annotations

import time

import nbformat
import pytest
from labdriver import Notebook, errors

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

CODE = """
import numpy as np
from bnlab import diagnostics
from bnlab.data import Mnist, Split

rng = np.random.default_rng(0)
split = lambda n: Split(rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, size=n))
data = Mnist(split(256), split(64), split(64))
viewer = diagnostics.LayerViewer(layers=diagnostics.WEIGHT_LAYERS, title="browser check")
print("live:", viewer.show_live())
for label, model in zip(("without BN", "with BN"), diagnostics.build_exercise_twins(seed=0)):
    diagnostics.train_and_record(model, data, 4, (1, 4), batch_size=16, validation_size=32, name=label,
                                 on_snapshot=viewer.follow)
viewer.show(layers=("conv10",), step=1)
print("selected", viewer.layer, viewer.step)
"""


def test_layer_viewer_is_live_and_follows_the_dropdown(student_lab, page, tmp_path):
    base, root = student_lab
    relative = "layer_viewer_check.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CODE.strip())])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / relative)

    notebook = Notebook(page, base, root, relative)
    notebook.open()
    outputs = notebook.run(0, timeout=300)
    assert not errors(outputs), errors(outputs)
    cell = notebook.cell(0)
    assert "live: True" in cell.inner_text() and "selected conv10 1" in cell.inner_text()

    select = cell.locator(".widget-dropdown select")
    image = cell.locator("img.widget-image")
    assert select.count() == 1 and image.count() == 1, "the viewer shows a layer dropdown and a figure"
    assert select.input_value() == "conv10"
    assert cell.locator(".widget-slider, .widget-hslider").count() >= 1, "a slider picks the training step"
    before = image.get_attribute("src")
    assert before, "the figure has been drawn"

    select.select_option("dense")
    deadline = time.monotonic() + 60
    while image.get_attribute("src") == before:
        assert time.monotonic() < deadline, "choosing another layer did not redraw the figure"
        time.sleep(0.3)
