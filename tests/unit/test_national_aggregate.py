"""The national aggregate (issue 19, item 6): three simulated closed experiments (and one
still running, which stays out), checked against their final results and their reports'
own numbers, with no pupil count of 1 to 9; the CSV and JSON agree, the JSON validates
against the checked-in schema, and the codebook is current in French and English."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from analysis.report.document import report_summary
from experiments.cli.app import app
from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.assignments import enrolled_classes
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.portal.app import create_portal
from experiments.privacy.aggregate import (
    CODEBOOK_PATH,
    COLUMNS,
    PUPIL_COUNTS,
    SCHEMA_PATH,
    aggregate_rows,
    codebook_markdown,
    json_schema,
    to_csv,
    to_json_document,
)
from experiments.protocol.language import parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.settings import Settings
from tests.support.decision import decide_and_acknowledge, record_final_run, with_decision
from tests.support.portal import NOW, PortalClient
from tests.support.uai import uai

ROOT = Path(__file__).resolve().parents[2]
CORE = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
HEADER = "class_id,school_uai,level,pupils,academie,education_priority\n"

#: id → (levels, effect, classes: (level, académie, pupils)); the last class of the first
#: trial is alone in its level and académie (6 pupils): its cell must be suppressed.
TRIALS: dict[str, tuple[str, float, list[tuple[str, str, int]]]] = {
    "agg-lecture-1": ("[CP, CE1]", 0.35, [("CP", "versailles", 22)] * 6
                      + [("CP", "creteil", 20)] * 5 + [("CE1", "creteil", 6)]),
    "agg-lecture-2": ("[CP, CE1]", 0.10, [("CP", "versailles", 24)] * 4
                      + [("CE1", "versailles", 25)] * 4 + [("CE1", "creteil", 23)] * 4),
    "agg-lecture-3": ("[CP]", 0.0, [("CP", "creteil", 21)] * 8),
    "agg-running": ("[CP]", 0.2, [("CP", "versailles", 20)] * 4),
}
CLOSED = ("agg-lecture-1", "agg-lecture-2", "agg-lecture-3")


def _text(experiment_id: str, levels: str) -> str:
    text = CORE.replace("id: fluence-cp-2027", f"id: {experiment_id}", 1).replace(
        "levels: [CP]", f"levels: {levels}", 1)
    return with_decision(text) + (
        "programme: {name: TNE}\n"
        "budget:\n  items:\n"
        "    - {label: \"Licences\", amount: 24000, funder: \"Banque des Territoires\"}\n"
        "  pupils: 400\n")


def _build(settings: Settings, work: Path) -> tuple[Engine, dict[str, dict[str, Any]]]:
    registry = registry_engine(settings)
    results: dict[str, dict[str, Any]] = {}
    departements = {"versailles": "78", "creteil": "93"}
    for n, (experiment_id, (levels, effect, classes)) in enumerate(TRIALS.items()):
        text = _text(experiment_id, levels)
        register_protocol(registry, parse_protocol(text), text)
        transition_experiment(registry, experiment_id, "enrolling")
        design, _ = enrollment_design(registry, experiment_id)
        rows = HEADER + "".join(
            f"{experiment_id}-c{i},{uai(f'0{departements[a]}{n}{i:03d}')},"
            f"{level},{pupils},{a},REP\n" for i, (level, a, pupils) in enumerate(classes))
        enroll_classes(registry, design, read_classes(rows, design, today=date(2027, 9, 1)),
                       actor="test")
        for state in ("running", "analysing"):
            transition_experiment(registry, experiment_id, state)  # type: ignore[arg-type]
        results[experiment_id] = record_final_run(registry, experiment_id, work,
                                                  effect=effect, seed=300 + n)
        if experiment_id in CLOSED:
            decide_and_acknowledge(registry, experiment_id)
            transition_experiment(registry, experiment_id, "closed")
    return registry, results


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Settings, Engine, dict[str, dict[str, Any]]]]:
    from tests.conftest import SIMULATED_NOW

    settings = Settings(state_dir=tmp_path_factory.mktemp("aggregate"),
                        pseudonym_key="aggregate-key" * 3, simulated_now=SIMULATED_NOW)
    registry, results = _build(settings, tmp_path_factory.mktemp("runs"))
    try:
        yield settings, registry, results
    finally:
        dispose_engines()


def _primary_itt(results: dict[str, Any], contrast: str) -> dict[str, Any]:
    return next(e for e in results["effects"] if e["outcome"] == "fluence"
                and e["estimand"] == "ITT" and e["contrast"] == contrast
                and not e.get("subgroup"))


def test_rows_match_the_final_results_and_reports(
        world: tuple[Settings, Engine, dict[str, dict[str, Any]]]) -> None:
    _, registry, results = world
    rows = aggregate_rows(registry)
    assert {r["experiment_id"] for r in rows} == set(CLOSED)  # the running one stays out
    assert all(list(r) == [c.name for c in COLUMNS] for r in rows)
    for experiment_id in CLOSED:
        data = results[experiment_id]
        mine = [r for r in rows if r["experiment_id"] == experiment_id]
        overall = {(r["arm"], r["outcome"]): r for r in mine
                   if r["academie"] == "*" and r["level"] == "*"}
        assert set(overall) == {("lectio", "fluence"), ("usual", "fluence")}
        treated, control = overall["lectio", "fluence"], overall["usual", "fluence"]
        effect = _primary_itt(data, "lectio vs usual")
        for key in ("estimate", "ci_low", "ci_high", "p_value", "hedges_g",
                    "hedges_g_ci_low", "hedges_g_ci_high"):
            assert treated[key] == effect[key], key
        assert treated["contrast"] == "lectio vs usual" and control["contrast"] is None
        assert control["estimate"] is None and control["effect_scope"] == "none"
        assert treated["n_pupils_analysed"] == effect["n_learners"]["lectio"]
        assert control["n_pupils_analysed"] == effect["n_learners"]["usual"]
        assert treated["n_units_analysed"] == effect["n_units"]["lectio"]
        # The report's own rating and conclusion.
        summary = report_summary(data, lang="fr")
        assert treated["evidence_padlocks"] == summary["padlocks"]
        usage = {u["arm"]: u for u in data["usage"]["arms"]}
        assert treated["usage_share_compliant"] == usage["lectio"]["share_compliant"]
        assert treated["usage_pupils_with_usage"] == usage["lectio"]["learners_with_usage"]
        assert control["usage_pupils_with_usage"] == 0  # 0 is a number, never suppressed
        assert treated["cost_per_pupil_eur"] == pytest.approx(24000 / 400)
        assert control["cost_per_pupil_eur"] is None
        assert treated["closed_at"] is not None and treated["programme"] == "TNE"
        # Enrolled units and pupils per arm × level × académie, as the registry has them.
        classes = enrolled_classes(registry, experiment_id)
        for r in mine:
            if r["academie"] == "*":
                cell = [c for c in classes if c.arm == r["arm"]]
            else:
                cell = [c for c in classes if c.arm == r["arm"] and c.level == r["level"]
                        and c.academie == r["academie"]]
                assert r["estimate"] is None and r["effect_scope"] == "none"
            pupils = sum(c.pupils for c in cell)
            if 0 < pupils < 10:
                assert r["suppressed"] and r["n_pupils_enrolled"] is None
                assert r["n_units_enrolled"] is None
            else:
                assert (r["n_units_enrolled"], r["n_pupils_enrolled"]) == (len(cell), pupils)
    levels = {(r["experiment_id"], r["level"]) for r in rows if r["level"] != "*"}
    assert ("agg-lecture-2", "CE1") in levels and ("agg-lecture-2", "CP") in levels
    assert any(r["suppressed"] for r in rows), "the 6-pupil class's cell is suppressed"


def test_no_pupil_count_between_one_and_nine(
        world: tuple[Settings, Engine, dict[str, dict[str, Any]]]) -> None:
    _, registry, _ = world
    rows = aggregate_rows(registry)
    for row in rows:
        for name in PUPIL_COUNTS:
            value = row[name]
            assert value is None or value == 0 or value >= 10, (row["experiment_id"], name,
                                                                 value)


def test_json_validates_and_csv_agrees(
        world: tuple[Settings, Engine, dict[str, dict[str, Any]]]) -> None:
    _, registry, _ = world
    rows = aggregate_rows(registry)
    document = to_json_document(rows)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema == json_schema(), "run `.venv/bin/python -m experiments.privacy.aggregate`"
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(json.loads(json.dumps(document)))
    # A count of 5 pupils is refused by the schema itself.
    bad = json.loads(json.dumps(document))
    bad["rows"][0]["n_pupils_enrolled"] = 5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert len(table) == len(rows)
    for line, row in zip(table, rows, strict=True):
        assert line["experiment_id"] == row["experiment_id"]
        assert line["n_pupils_enrolled"] == ("" if row["n_pupils_enrolled"] is None
                                             else str(row["n_pupils_enrolled"]))
        if row["estimate"] is not None:
            assert float(line["estimate"]) == row["estimate"]


def test_codebook_is_current_in_french_and_english() -> None:
    text = CODEBOOK_PATH.read_text(encoding="utf-8")
    assert text == codebook_markdown(), "run `.venv/bin/python -m experiments.privacy.aggregate`"
    french, english = text.split("## English")
    for column in COLUMNS:
        assert f"`{column.name}`" in french and f"`{column.name}`" in english


def test_cli_export_aggregate(world: tuple[Settings, Engine, dict[str, dict[str, Any]]],
                              tmp_path: Path) -> None:
    settings, registry, _ = world
    env = {"PREUVE_STATE_DIR": str(settings.state_dir)}
    out = tmp_path / "national"
    result = CliRunner().invoke(app, ["export", "--aggregate", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["national-aggregate-codebook.md", "national-aggregate.csv",
                     "national-aggregate.json", "national-aggregate.schema.json"]
    document = json.loads((out / "national-aggregate.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(json_schema()).validate(document)
    assert document["rows"] == aggregate_rows(registry)
    refused = CliRunner().invoke(app, ["export", "agg-lecture-1", "--aggregate", "--out",
                                       str(out)], env=env)
    assert refused.exit_code == 2 and "give no experiment id" in refused.output


def test_api_reads_the_callers_scope(
        world: tuple[Settings, Engine, dict[str, dict[str, Any]]]) -> None:
    from experiments.access import issue_token

    settings, registry, _ = world
    client = PortalClient(create_portal(settings, registry=registry, clock=lambda: NOW))
    try:
        officer = client.sign_in(issue_token(registry, "officer", "*", "agg"))
        researcher = client.sign_in(issue_token(registry, "researcher", "agg-lecture-2", "agg"))
        academie = client.sign_in(issue_token(registry, "academie", "versailles", "agg"))
        every = client.request("GET", "/api/agregat", officer).json()
        assert {r["experiment_id"] for r in every["rows"]} == set(CLOSED)
        assert every["suppressed_below"] == 10
        own = client.request("GET", "/api/agregat", researcher).json()
        assert {r["experiment_id"] for r in own["rows"]} == {"agg-lecture-2"}
        as_csv = client.request("GET", "/api/agregat.csv", researcher)
        assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith(
            "text/csv")
        assert len(list(csv.DictReader(io.StringIO(as_csv.text)))) == len(own["rows"])
        assert client.request("GET", "/api/agregat", academie).status_code == 403
        assert client.request("GET", "/api/agregat", {}).status_code == 401
    finally:
        client.close()
