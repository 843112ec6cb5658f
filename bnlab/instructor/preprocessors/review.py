"""nbgrader preprocessors that keep a submission gradable and tell the instructor what needs a look.

- :class:`RestoreMissingCells` (a sanitizing preprocessor, in place of nbgrader's ``OverwriteCells``)
  is nbgrader's own ``OverwriteCells`` with ``add_missing_cells``: a graded cell the student deleted
  (a check cell, a written answer) is put back from the gradebook, with nbgrader's note at its top, so
  it is graded and the feedback shows it. nbgrader places a restored cell after the previous *graded*
  cell of the source and fails when that one is not in the submission either (a check cell after a
  markdown heading); here it goes after the nearest earlier source cell that the submission still has.
- :class:`FlagForReview` (after ``SaveAutoGrades``) flags the submitted notebook in the gradebook, so
  the formgrader marks it, when grading had to work around the submission: a restored cell, a cell that
  ended the kernel, or a check the trusted re-run did not confirm. It logs why.
"""

from __future__ import annotations

from nbgrader import utils
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor, OverwriteCells
from traitlets import Bool

from bnlab.grading.errors import KERNEL_DIED
from bnlab.instructor.autograde.record import gradebook

RESTORED = "was missing from the submission"  # in nbgrader's note at the top of a restored cell


class RestoreMissingCells(OverwriteCells):
    """nbgrader's ``OverwriteCells`` that also puts deleted graded cells back (``add_missing_cells``)."""

    add_missing_cells = Bool(True, help="Put graded cells the student deleted back, from the gradebook.").tag(
        config=True
    )

    def add_missing_grade_cells(self, nb, resources):
        source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        order = [cell.name for cell in source.source_cells]
        solutions = {cell.name for cell in source.solution_cells}
        present = {cell.metadata.get("nbgrader", {}).get("grade_id") for cell in nb.cells}
        for grade_cell in sorted(source.grade_cells, key=lambda c: order.index(c.name) if c.name in order else -1):
            if grade_cell.name in present or grade_cell.name not in order:
                continue
            self.log.warning("Missing grade cell %s encountered, adding it back to the notebook", grade_cell.name)
            index = order.index(grade_cell.name)
            cell = self.missing_cell_transform(
                source.source_cells[index], grade_cell.max_score, is_solution=grade_cell.name in solutions
            )
            nb.cells.insert(_after_nearest(nb, order[:index]), cell)
            present.add(grade_cell.name)
        return nb, resources


def _after_nearest(nb, earlier: list[str]) -> int:
    """The index just after the last cell of ``nb`` whose grade_id is the nearest of ``earlier`` (0 if none)."""
    positions = {cell.metadata.get("nbgrader", {}).get("grade_id"): i for i, cell in enumerate(nb.cells)}
    for name in reversed(earlier):
        if name in positions:
            return positions[name] + 1
    return 0


def review_reasons(nb) -> list[str]:
    """What in the autograded notebook ``nb`` needs the instructor's look, one phrase each."""
    restored, died, unconfirmed, unjudgeable = [], [], [], []
    for cell in nb.cells:
        name = cell.metadata.get("nbgrader", {}).get("grade_id") or "an ungraded cell"
        if utils.is_grade(cell) and RESTORED in cell.source.split("\n", 1)[0]:
            restored.append(name)
        if any(out.get("ename") == KERNEL_DIED[0] for out in cell.get("outputs", [])):
            died.append(name)
        if cell.metadata.get("bnlab", {}).get("verification") == "tampered":
            unconfirmed.append(name)
        if cell.metadata.get("bnlab", {}).get("verification") == "unjudgeable":
            unjudgeable.append(name)
    reasons = []
    if restored:
        reasons.append("graded cells deleted in the submission were put back and graded: " + ", ".join(restored))
    if died:
        reasons.append("the kernel died in " + ", ".join(died) + " (skipped, the rest graded)")
    if unconfirmed:
        reasons.append("checks the trusted re-run did not confirm: " + ", ".join(unconfirmed))
    if unjudgeable:
        reasons.append("checks whose graphs the trusted re-run's judge refused: " + ", ".join(unjudgeable))
    return reasons


class FlagForReview(NbGraderPreprocessor):
    """Flag the submitted notebook in the gradebook when :func:`review_reasons` finds something."""

    def preprocess(self, nb, resources):
        reasons = review_reasons(nb)
        if not reasons:
            return nb, resources
        info = resources["nbgrader"]
        with gradebook(info["db_url"]) as gb:
            try:
                notebook = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            except MissingEntry:
                return nb, resources
            notebook.flagged = True
            gb.db.commit()
        self.log.warning("FLAGGED for review: student %s: %s", info["student"], "; ".join(reasons))
        return nb, resources
