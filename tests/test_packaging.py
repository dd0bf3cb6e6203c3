"""pyproject.toml in the current form: setuptools reads it without a deprecation warning (PEP 639 licence)."""

from __future__ import annotations

import warnings

import pytest


def test_setuptools_reads_pyproject_without_warnings(repo):
    pytest.importorskip("setuptools", minversion="77")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "`project.license` as a TOML table is deprecated"
        dist = apply_configuration(Distribution(), repo / "pyproject.toml")
    assert dist.metadata.license_expression == "Apache-2.0"
    assert dist.metadata.name == "busforge"
