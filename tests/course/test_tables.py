"""The text tables the lesson prints (bnlab/tables.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bnlab import tables


def test_text_is_aligned_left_numbers_right_in_columns_as_wide_as_their_widest_entry():
    text = tables.table(
        [["bn1", 2.5e-7, 0.0157], ["bn2", np.float32(3.1e-9), np.float64(0.25)]],
        ["layer", "batch variance", "std"],
        ["", ".2e", ".3f"],
    )
    assert text.splitlines() == [
        "layer  batch variance    std",
        "bn1          2.50e-07  0.016",
        "bn2          3.10e-09  0.250",
    ]


def test_a_wide_entry_widens_its_column_and_integers_align_right():
    text = tables.table([[2, "a much longer label"], [128, "x"]], ["batch size", "note"])
    assert text.splitlines() == [
        "batch size  note",
        "         2  a much longer label",
        "       128  x",
    ]


def test_one_format_can_serve_every_column():
    assert tables.table([[1 / 3, 2 / 3]], ["a", "b"], ".2f").splitlines() == ["   a     b", "0.33  0.67"]


def test_a_table_without_rows_is_its_header():
    assert tables.table([], ["first", "second"]) == "first  second"


def test_rows_may_come_from_a_generator():
    assert tables.table(([n, n * n] for n in (3, 10)), ["n", "n^2"]).splitlines() == [" n  n^2", " 3    9", "10  100"]


@pytest.mark.parametrize(
    "rows,columns,formats,message",
    [
        ([[1, 2, 3]], ["a", "b"], "", "row 0 has 3 values for 2 columns"),
        ([[1, 2]], ["a", "b"], [".1f"], "2 columns but 1 formats"),
    ],
)
def test_mismatched_shapes_are_reported(rows, columns, formats, message):
    with pytest.raises(ValueError, match=message):
        tables.table(rows, columns, formats)
