"""Part 4 through the trusted re-verification: the worker runs the student's batchnorm_backward on the check's
inputs (the "backward" probe) and the parent judges, with the same verdicts and messages as the kernel."""

from __future__ import annotations

from submissions import ALTERNATIVES, BUGS
from test_integrity import _by_name, combine, failed, trusted_verdicts

PART_4 = {"test_backward_dense", "test_backward_conv", "test_q_upstream_shift"}  # what these answer cells decide


def test_trusted_rerun_names_the_missing_term_of_a_wrong_backward_pass():
    cells, fails = combine(*_by_name(["bw_no_variance_path", "q_upstream_shift_wrong_option"], BUGS))
    verdicts = trusted_verdicts(cells)
    assert failed(verdicts) & PART_4 == fails, verdicts
    for test in ("test_backward_dense", "test_backward_conv"):
        assert "path through the batch variance" in verdicts[test], verdicts[test]
        assert "lesson, section 12" in verdicts[test]


def test_trusted_rerun_accepts_a_float32_backward_pass():
    cells, _ = combine(*_by_name(["alt_bw_compact_float32", "q_upstream_shift_upper_case"], ALTERNATIVES))
    assert failed(trusted_verdicts(cells)) & PART_4 == set()
