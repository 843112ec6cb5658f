"""Feedback without the hidden tests, and with failures that speak first.

``nbgrader generate_feedback`` renders the autograded notebook as HTML, hidden test cells included,
so students would read the hidden tests (a known nbgrader issue). Removing the hidden lines from the
cell sources is not enough: the traceback of a failing test cell quotes the cell's source, hidden
lines and their arguments included. This preprocessor, configured in ``nbgrader_config.py``:

- removes every ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region from the cell sources
  and leaves a one-line note (:data:`NOTE`) in its place;
- shortens the traceback of every error in a graded test cell to its last line, ``Name: message``,
  so the message is the first thing the student reads and no source line is quoted;
- replaces any output line that still contains a hidden line (for example printed by a check) with
  :data:`REDACTED`.

Scores and the messages of failed checks are kept.
"""

from __future__ import annotations

from nbgrader.preprocessors import ClearHiddenTests, GetGrades
from traitlets import List

NOTE = "# (hidden tests ran here; their code is not shown in the feedback)"
REDACTED = "(a line of the hidden tests, not shown in the feedback)"


def _is_test_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _scrub(text: str, hidden: list[str]) -> str:
    if not hidden or not isinstance(text, str):
        return text
    return "\n".join(REDACTED if any(h in line for h in hidden) else line for line in text.split("\n"))


def short_error(output: dict, hidden: list[str]) -> None:
    """Reduce an ``error`` output to ``Name: message`` (in place), hidden lines scrubbed."""
    message = _scrub(str(output.get("evalue", "")), hidden)
    output["evalue"] = message
    output["traceback"] = [f"{output.get('ename', 'Error')}: {message}"]


class HideHiddenTests(ClearHiddenTests):
    """:class:`nbgrader.preprocessors.ClearHiddenTests` that leaves a note where tests were removed,
    and keeps the hidden lines out of the outputs (tracebacks, printed text) too."""

    # nbconvert's HTMLExporter configures NbConvertBase.display_data_priority for every preprocessor;
    # nbgrader's base preprocessor redeclares the trait without config=True, so traitlets warned
    # "Config option `display_data_priority` not recognized". Configurable again, as in GetGrades.
    display_data_priority = List(GetGrades.display_data_priority.default_value).tag(config=True)

    def _hidden_lines(self, cell) -> list[str]:
        lines, inside = [], False
        for line in cell.source.split("\n"):
            if self.begin_test_delimeter in line:
                inside = True
            elif self.end_test_delimeter in line:
                inside = False
            elif inside and line.strip() and not line.strip().startswith("#"):
                lines.append(line.strip().rstrip(";").rstrip())
        return lines

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

    def preprocess_cell(self, cell, resources, cell_index):
        hidden = self._hidden_lines(cell) if cell.cell_type == "code" else []
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.cell_type != "code":
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and (_is_test_cell(cell) or hidden):
                short_error(output, hidden)
            elif output.get("output_type") == "stream":
                output["text"] = _scrub(output.get("text", ""), hidden)
            elif output.get("output_type") in ("execute_result", "display_data"):
                data = output.get("data", {})
                for mime in ("text/plain", "text/html", "text/markdown"):
                    if isinstance(data.get(mime), str):
                        data[mime] = _scrub(data[mime], hidden)
        return cell, resources
