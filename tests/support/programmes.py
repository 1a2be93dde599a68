"""A registry holding a portfolio: three programmes and eight closed simulated experiments
(plus one running), each with a final analysis computed by the real engine.

Each experiment is the core example protocol (``protocols/fluence-cp-2027.yaml``) under
another id, resource, programme, territory, tags, budget and decision rule. Its final run
is the engine's analysis (:func:`analysis.run.run_analysis`) of a simulated trial
(:func:`analysis.simulate.simulate_trial`, its own seed and true effect), recorded in
``analysis_runs`` with its results JSON and the JSON file's SHA-256, as a worker records
it; the store and Kafka are left out (the portfolio reads run records only).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine

from analysis.inputs import plan_from_protocol, read_outcomes, read_units, read_usage
from analysis.results import to_json_dict
from analysis.run import run_analysis
from analysis.simulate import simulate_trial
from experiments.database import registry_engine
from experiments.protocol.language import parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.runs.records import analysis_runs_table, software_versions
from experiments.runs.scheduler import due_time
from experiments.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CORE = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Trial:
    id: str
    programme: str
    resource: tuple[str, str]
    academies: tuple[str, ...]
    tags: tuple[str, ...]
    effect: float
    cost: int
    closed: bool = True
    departements: tuple[str, ...] = ()


TRIALS: tuple[Trial, ...] = (
    Trial("tne-lectio-1", "TNE", ("lectio", "Lectio"), ("versailles",), ("lecture", "cycle 2"),
          0.25, 30000, departements=("78", "92")),
    Trial("tne-lectio-2", "TNE", ("lectio", "Lectio"), ("creteil",), ("lecture", "cycle 2"),
          0.15, 28000, departements=("93",)),
    Trial("tne-lectio-3", "TNE", ("lectio", "Lectio"), ("versailles", "creteil"),
          ("lecture", "cycle 2"), 0.30, 35000, departements=("78", "93", "94")),
    Trial("tne-calcul-1", "TNE", ("calculo", "Calculo"), ("creteil",),
          ("mathématiques", "cycle 2"), 0.05, 22000),
    Trial("tne-calcul-2", "TNE", ("calculo", "Calculo"), ("versailles",),
          ("mathématiques", "cycle 2"), 0.10, 24000, closed=False),
    Trial("efran-mots-1", "eFRAN", ("motamot", "Mot à mot"), ("versailles",), ("lecture",),
          0.20, 18000),
    Trial("efran-mots-2", "eFRAN", ("motamot", "Mot à mot"), ("creteil",), ("lecture",),
          0.10, 19000),
    Trial("p2ia-maths-1", "P2IA", ("numia", "NumIA"), ("versailles",), ("mathématiques",),
          0.00, 40000),
    Trial("p2ia-maths-2", "P2IA", ("numia", "NumIA"), ("creteil", "versailles"),
          ("mathématiques",), 0.12, 42000),
)
"""Eight closed experiments in three programmes, and one TNE experiment still running.
The three Lectio trials name their départements; the others name académies only (and
enroll no class, so their départements are unknown)."""

FINAL_DAY = date(2028, 6, 30)


def protocol_text(trial: Trial) -> str:
    text = CORE.replace("id: fluence-cp-2027", f"id: {trial.id}", 1).replace(
        "resource: {id: lectio, name: Lectio}",
        f"resource: {{id: {trial.resource[0]}, name: \"{trial.resource[1]}\"}}", 1)
    assert f"id: {trial.id}" in text and trial.resource[0] in text
    tags = ", ".join(trial.tags)
    departements = ", ".join(f'"{d}"' for d in trial.departements)
    return text + (
        f"programme: {{name: {trial.programme}}}\n"
        f"territories: {{academies: [{', '.join(trial.academies)}], "
        f"departements: [{departements}]}}\n"
        f"funders:\n  - {{name: \"Banque des Territoires\", amount: {trial.cost}}}\n"
        f"tags: [{tags}]\n"
        "budget:\n  items:\n"
        f"    - {{label: \"Licences\", amount: {trial.cost}, "
        "funder: \"Banque des Territoires\"}\n"
        "  pupils: 400\n"
        "decision:\n  at: 2028-09-30\n  deciders: [\"Comité de programme\"]\n"
        "  rule: \"Extension si g ≥ 0,10 et significatif.\"\n  min_effect_size: 0.10\n"
    )


@dataclass(frozen=True)
class ProgrammeWorld:
    registry: Engine
    results: dict[str, dict[str, object]]
    """Experiment id → the results JSON of its final run."""


def build_programmes(settings: Settings, work: Path) -> ProgrammeWorld:
    """Register the :data:`TRIALS`, record each final analysis, close the closed ones."""
    registry = registry_engine(settings)
    results: dict[str, dict[str, object]] = {}
    for n, trial in enumerate(TRIALS):
        text = protocol_text(trial)
        protocol = parse_protocol(text)
        register_protocol(registry, protocol, text)
        for state in ("enrolling", "running", "analysing"):
            transition_experiment(registry, trial.id, state)  # type: ignore[arg-type]
        files = simulate_trial(work / trial.id, n_units=24, pupils_per_unit=15,
                               effect=trial.effect, seed=20270901 + n)
        plan = plan_from_protocol(protocol)
        units = read_units(files.units, plan)
        outcomes = read_outcomes(files.outcomes, units)
        usage = read_usage(files.usage, outcomes, units) if files.usage else None
        analysed = run_analysis(plan, units, outcomes, usage, analysis="final")
        payload = to_json_dict(analysed)
        json_text = json.dumps(payload, ensure_ascii=False, allow_nan=False, sort_keys=True)
        json_path = work / f"{trial.id}.json"
        json_path.write_text(json_text, encoding="utf-8")
        now = datetime.now(UTC)
        with registry.begin() as connection:
            connection.execute(analysis_runs_table.insert().values(
                run_id=f"20280630T0000Z-{n:08x}", run_key=f"{trial.id}/final/{FINAL_DAY}",
                experiment_id=trial.id, analysis="final", due_at=due_time(FINAL_DAY),
                sequence=1, status="done", reason=None, protocol_version=1,
                protocol_sha256=protocol.sha256, watermark={}, software=software_versions(),
                results_json=json_text, json_path=str(json_path),
                json_sha256=hashlib.sha256(json_text.encode()).hexdigest(), html_path=None,
                html_sha256=None, started_at=now, finished_at=now, worker="test"))
        results[trial.id] = json.loads(json_text)
        if trial.closed:
            transition_experiment(registry, trial.id, "closed",
                                  note=f"Décision du comité : {trial.id} examinée.")
    return ProgrammeWorld(registry, results)
