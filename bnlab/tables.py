"""Fixed-width text tables for the numbers the notebooks print.

``print(tables.table(rows, columns, formats))`` prints a header line with the column names and one
line per row. A column of text is aligned left, a column of numbers right; each column is as wide
as its widest entry, and two spaces separate the columns. The module imports nothing, so any part
of the course can use it.
"""

from __future__ import annotations

from collections.abc import Sequence

GAP = "  "  # between two columns


def table(rows: Sequence[Sequence], columns: Sequence[str], formats: Sequence[str] | str = "") -> str:
    """The rows as text under a header of column names, aligned in columns.

    ``formats`` holds one format specification per column (as in ``format(value, ".3f")``; ``""``
    prints the value as ``str`` would), or a single one for every column.
    """
    columns = list(columns)
    if isinstance(formats, str):
        formats = [formats] * len(columns)
    if len(formats) != len(columns):
        raise ValueError(f"{len(columns)} columns but {len(formats)} formats")
    rows = [list(row) for row in rows]
    for number, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"row {number} has {len(row)} values for {len(columns)} columns: {row!r}")
    cells = [[format(value, spec) for value, spec in zip(row, formats)] for row in rows]
    left = [all(isinstance(row[i], str) for row in rows) for i in range(len(columns))]
    widths = [max([len(name)] + [len(texts[i]) for texts in cells]) for i, name in enumerate(columns)]

    def line(texts) -> str:
        return GAP.join(
            text.ljust(width) if is_left else text.rjust(width) for text, width, is_left in zip(texts, widths, left)
        ).rstrip()

    return "\n".join([line(columns)] + [line(texts) for texts in cells])
