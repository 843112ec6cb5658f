"""Feedback without the hidden tests.

``nbgrader generate_feedback`` renders the autograded notebook as HTML, hidden test cells included,
so students would read the hidden tests (a known nbgrader issue). This preprocessor, configured in
``nbgrader_config.py``, removes every ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region
from the cell sources before rendering and leaves a one-line note in its place. Scores and the
cells' outputs (the messages of failed checks) are kept.
"""
from __future__ import annotations

from nbgrader.preprocessors import ClearHiddenTests

NOTE = "# (hidden tests ran here; their code is not shown in the feedback)"


class HideHiddenTests(ClearHiddenTests):
    """:class:`nbgrader.preprocessors.ClearHiddenTests` that leaves a note where tests were removed."""

    def _remove_hidden_test_region(self, cell) -> bool:
        indent = ""
        for line in cell.source.split("\n"):
            if self.begin_test_delimeter in line:
                indent = line[: len(line) - len(line.lstrip())]
                break
        removed = super()._remove_hidden_test_region(cell)
        if removed:
            cell.source = cell.source.rstrip("\n") + "\n" + indent + NOTE
        return removed
