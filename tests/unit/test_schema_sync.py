"""The published JSON Schema (protocols/schema/protocol.schema.json) is the models' schema.

Regenerate it with ``.venv/bin/python -m experiments.protocol.language`` after changing the models.
"""

from __future__ import annotations

import json

import jsonschema  # via schemathesis (dev extra): an independent validator of the schema

from experiments.protocol.language import SCHEMA_PATH, load_protocol, protocol_schema_text


def test_schema_file_equals_the_generated_schema() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == protocol_schema_text(), (
        "protocols/schema/protocol.schema.json is stale: "
        "run `python -m experiments.protocol.language`"
    )


def test_schema_covers_the_core_and_the_closed_lists() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    core = {
        "preuve",
        "id",
        "title",
        "resource",
        "population",
        "arms",
        "randomisation",
        "periods",
        "outcomes",
        "analysis",
        "usage",
        "power",
        "schedule",
        "retention",
    }
    assert core <= set(schema["properties"])
    population = schema["$defs"]["Population"]["properties"]
    assert "CE1" in population["levels"]["items"]["enum"]
    assert "aix-marseille" in population["academies"]["items"]["enum"]


def test_examples_satisfy_the_published_schema() -> None:
    # Independent of pydantic: validate the dump of each example with jsonschema.
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    for path in sorted(SCHEMA_PATH.parents[1].glob("*.yaml")):
        dumped = load_protocol(path).model_dump(mode="json", exclude_none=True)
        jsonschema.validate(dumped, schema, cls=jsonschema.Draft202012Validator)
