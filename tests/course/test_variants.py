"""bnlab.variants: whose questions a notebook shows, and draws that are stable per id and spread over ids."""

from __future__ import annotations

import nbformat
import pytest

from bnlab import variants


@pytest.fixture(autouse=True)
def no_id(monkeypatch):
    """No id from the environment or an earlier ``use``, unless a test sets one."""
    monkeypatch.delenv(variants.STUDENT_VARIABLE, raising=False)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.setattr(variants, "_entered", None)


def test_without_an_id_the_message_says_what_to_enter():
    with pytest.raises(variants.MissingStudentId, match=r"STUDENT_ID = \"12345\".*LMS.*users/12345"):
        variants.use("  ")


def test_the_entered_id_is_used_where_nothing_else_says(capsys):
    assert variants.use(" 12345 ") == "12345" == variants.student_id()
    assert "drawn for student '12345'" in capsys.readouterr().out


def test_the_hub_user_wins_over_an_entered_id_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("JUPYTERHUB_USER", "ann")
    assert variants.use("12345") == "ann"
    out = capsys.readouterr().out
    assert "drawn for student 'ann'" in out and "STUDENT_ID = '12345' is not used here" in out


def test_the_graded_id_wins_over_the_hub_and_the_entered_id(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "instructor")
    monkeypatch.setenv(variants.STUDENT_VARIABLE, "bob")
    assert variants.student_id("12345") == "bob"
    with variants.graded_as("carol"):  # the trusted re-run: nbgrader's id, whatever the process's environment
        assert variants.student_id("12345") == "carol"
    assert variants.student_id() == "bob"


def test_draws_are_stable_per_id_differ_by_assignment_and_spread_over_ids():
    assert variants.draw("q", 4, "ann") == variants.draw("q", 4, "ann")
    counts = [0] * 4
    for i in range(800):
        counts[variants.draw("q", 4, f"s{i}")] += 1
    assert all(160 < c < 240 for c in counts), counts
    differ = sum(
        variants.draw("q", 4, f"s{i}") != variants.draw("q", 4, f"s{i}", assignment="other") for i in range(200)
    )
    assert differ > 100
    orders = {tuple(variants.order("q", "wxyz", f"s{i}")) for i in range(400)}
    assert len(orders) == 24  # every permutation occurs
    assert sorted(variants.order("q", "wxyz", "ann")) == list("wxyz")


def test_a_notebook_says_whom_it_was_answered_for_by_its_id_cell_and_its_outputs():
    shown = nbformat.v4.new_code_cell("variants.use(STUDENT_ID)")
    shown.outputs = [
        nbformat.v4.new_output("stream", text="The questions of this notebook are drawn for student 'x1'.\n")
    ]
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell('STUDENT_ID = "12345"   # my id'),
            shown,
            nbformat.v4.new_markdown_cell("STUDENT_ID = 'no'"),
        ]
    )
    assert variants.entered_in(nb) == {"12345", "x1"}
    nb.cells[0].source = 'STUDENT_ID = ""'
    nb.cells[1].outputs = []
    assert variants.entered_in(nb) == set()
    nb.cells[0].source = "STUDENT_ID = input()"  # not a literal: nothing is run to find out
    assert variants.entered_in(nb) == set()
