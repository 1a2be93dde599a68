"""The domain vocabulary is written once: the protocol language takes the analysis options'
values, and the published JSON Schema says the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from analysis import options
from experiments.protocol.language import Analysis, Design, Population

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "protocols" / "schema" / "protocol.schema.json").read_text())


@pytest.mark.parametrize(("model", "field", "alias"), [
    (Population, "unit", options.UnitLevel),
    (Analysis, "estimand", options.Estimand),
    (Analysis, "model", options.Model),
    (Analysis, "multiple_comparisons", options.MultipleComparisons),
    (Design, "type", options.DesignType),
])
def test_the_protocol_accepts_exactly_the_analysis_options(model: type, field: str,
                                                           alias: object) -> None:
    annotation = model.model_fields[field].annotation
    assert set(get_args(annotation)) == set(get_args(alias))
    enum = SCHEMA["$defs"][model.__name__]["properties"][field]
    values = enum.get("enum") or next(v["enum"] for v in enum.get("anyOf", []) if "enum" in v)
    assert set(values) == set(get_args(alias))


def test_the_languages_are_french_first() -> None:
    assert options.LANGUAGES == ("fr", "en")
