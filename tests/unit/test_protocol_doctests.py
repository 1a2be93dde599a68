"""The examples in the docstrings of the protocol, registry, power, enrollment, access,
retention, scheduler and event-contract modules run (a stale example misleads the next
reader more than a missing one)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "analysis.power",
    "experiments.access",
    "experiments.enrollment.classes",
    "experiments.enrollment.files",
    "experiments.enrollment.pupils",
    "experiments.protocol.language",
    "experiments.protocol.vocabulary",
    "experiments.protocol.source",
    "experiments.registry",
    "experiments.privacy.retention",
    "experiments.runs.scheduler",
    "ingest.contract",
    "ingest.kafka.principals",
    "ingest.kafka.producer",
    "ingest.kafka.topics",
    "ingest.pseudonym",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # examples name files relative to the repository
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
