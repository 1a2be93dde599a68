"""Every docstring example of the three packages runs with the tests.

They are collected by pytest's ``--doctest-modules`` (``pyproject.toml``) rather than from
hand-kept lists of modules, which had let 20 modules' examples never run.
"""

from __future__ import annotations

import pytest


def test_doctests_are_collected_from_every_package(pytestconfig: pytest.Config) -> None:
    assert "--doctest-modules" in pytestconfig.getini("addopts")
    assert {"ingest", "experiments", "analysis"} <= set(pytestconfig.getini("testpaths"))
