"""Tools the instructor runs print no warning of ours: nbgrader's feedback export, installation."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

from nbconvert.exporters import HTMLExporter
from traitlets.config import Config

from bnlab.instructor.preprocessors import feedback

ROOT = Path(__file__).resolve().parents[2]


def test_feedback_preprocessor_takes_the_html_exporters_display_priority_without_a_warning(caplog):
    """`generate_feedback` warned "Config option `display_data_priority` not recognized by `HideHiddenTests`"."""
    exporter = HTMLExporter(config=Config({"HTMLExporter": {"preprocessors": [feedback.HideHiddenTests]}}))
    caplog.set_level(logging.WARNING)
    exporter.log.propagate = True
    priority = exporter.default_config.NbConvertBase.display_data_priority
    hide = next(p for p in exporter._preprocessors if isinstance(p, feedback.HideHiddenTests))
    assert hide.display_data_priority == priority
    assert [r.getMessage() for r in caplog.records if "not recognized" in r.getMessage()] == []


def test_license_is_an_spdx_expression_for_a_setuptools_that_reads_it():
    """A TOML-table license makes setuptools>=77 print a deprecation warning on every `pip install -e .`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    requires = project["build-system"]["requires"]
    assert any(
        r.replace(" ", "").startswith("setuptools>=") and int(r.split(">=")[1].split(".")[0]) >= 77 for r in requires
    ), requires
