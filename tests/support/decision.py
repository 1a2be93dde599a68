"""The post-experiment step for tests (issue 19): a ``decision:`` section, its addition
by amendment, and a recorded, acknowledged decision.

The core example protocol (``protocols/fluence-cp-2027.yaml``) has no ``decision:``
section and cannot reach ``running`` without one: tests that run it either register it
with :func:`with_decision` (when the test is not about amendments) or add it as a real
user would, by amendment (:func:`add_decision`). Tests that close an experiment record
the researcher's decision and the officer's acknowledgement (:func:`decide_and_acknowledge`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from experiments.closing import DecisionRecord, acknowledge_decision, record_decision
from experiments.protocol.language import parse_protocol
from experiments.registry import Registration, amend_protocol, registered_protocol

__all__ = ["DECISION_YAML", "add_decision", "decide_and_acknowledge", "record_final_run",
           "with_decision"]

DECISION_YAML = (
    "decision:\n"
    "  at: 2028-09-30\n"
    "  deciders: [\"Comité de pilotage du programme\"]\n"
    "  rule: \"Généraliser si l'effet sur la fluence est positif et d'au moins 0,10 écart-type.\"\n"
    "  min_effect_size: 0.10\n"
)


def with_decision(text: str, at: str = "2028-09-30") -> str:
    """A protocol's YAML with the test decision section appended (it has none); ``at``
    is the decision's date (after the final analysis)."""
    assert "\ndecision:" not in text, "the protocol already declares a decision"
    return text.rstrip("\n") + "\n" + DECISION_YAML.replace("2028-09-30", at)


def add_decision(engine: Engine, experiment_id: str, actor: str = "researcher:test"
                 ) -> Registration:
    """Amend the protocol in force with the test decision section (before ``running``)."""
    text = with_decision(registered_protocol(engine, experiment_id).source_yaml)
    return amend_protocol(engine, parse_protocol(text), text,
                          reason="Règle de décision ajoutée avant le début de l'intervention",
                          actor=actor)


def decide_and_acknowledge(engine: Engine, experiment_id: str, decision: str = "generaliser",
                           reason: str = "Effet établi et usage suffisant dans les classes.",
                           ) -> DecisionRecord:
    """The researcher's decision and the officer's acknowledgement (state ``analysing``)."""
    record = record_decision(engine, experiment_id, decision, reason, "researcher:*:test")
    return acknowledge_decision(engine, experiment_id, "officer:*:test", record.id)


def record_final_run(registry: Engine, experiment_id: str, work: Path, *, effect: float,
                     seed: int, n_units: int = 24, pupils_per_unit: int = 15,
                     version: int | None = None) -> dict[str, Any]:
    """Simulate a trial under the protocol in force, analyse it, and record its final run
    as a worker does (results JSON in ``analysis_runs``, the file's SHA-256); returns the
    results. The store and Kafka are left out."""
    from analysis.inputs import plan_from_protocol, read_outcomes, read_units, read_usage
    from analysis.results import to_json_dict
    from analysis.run import run_analysis
    from analysis.simulate import simulate_trial
    from experiments.runs.records import analysis_runs_table, software_versions
    from experiments.runs.scheduler import due_time

    stored = registered_protocol(registry, experiment_id, version)
    protocol = stored.protocol
    files = simulate_trial(work / experiment_id, n_units=n_units,
                           pupils_per_unit=pupils_per_unit, effect=effect, seed=seed)
    plan = plan_from_protocol(protocol)
    units = read_units(files.units, plan)
    outcomes = read_outcomes(files.outcomes, units)
    usage = read_usage(files.usage, outcomes, units) if files.usage else None
    payload = to_json_dict(run_analysis(plan, units, outcomes, usage, analysis="final"))
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, sort_keys=True)
    path = work / f"{experiment_id}.json"
    path.write_text(text, encoding="utf-8")
    now = datetime.now(UTC)
    with registry.begin() as connection:
        connection.execute(analysis_runs_table.insert().values(
            run_id=f"20280630T0000Z-{seed:08x}", run_key=f"{experiment_id}/final/2028-06-30",
            experiment_id=experiment_id, analysis="final", due_at=due_time(date(2028, 6, 30)),
            sequence=1, status="done", reason=None,
            protocol_version=stored.version.version, protocol_sha256=protocol.sha256,
            watermark={}, software=software_versions(), results_json=text,
            json_path=str(path), json_sha256=hashlib.sha256(text.encode()).hexdigest(),
            html_path=None, html_sha256=None, started_at=now, finished_at=now,
            worker="test"))
    result: dict[str, Any] = json.loads(text)
    return result
