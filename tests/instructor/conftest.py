"""The shared gradings of the slow pipeline tests: one course per route (see shared_grading.py)."""

from __future__ import annotations

import pytest
import shared_grading


@pytest.fixture(scope="session")
def grader_grading(tmp_path_factory) -> shared_grading.Graded:
    """Every registered submission graded by the course's grader (``make autograde``), two at a time."""
    return shared_grading.grade("grader", tmp_path_factory.mktemp("shared_grader"))


@pytest.fixture(scope="session")
def nbgrader_grading(tmp_path_factory) -> shared_grading.Graded:
    """Every registered submission graded by plain ``nbgrader autograde`` in the course folder."""
    return shared_grading.grade("nbgrader", tmp_path_factory.mktemp("shared_nbgrader"))
