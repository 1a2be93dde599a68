"""The national aggregate (issue 19, item 6): every closed experiment the caller may see,
one row per experiment × arm × outcome × level × académie, for a national study (the
DEPP) to combine across experiments.

Rows:

- for each experiment, arm and outcome of the final analysis, one row with
  ``level = "*"`` and ``academie = "*"`` (the whole experiment): the effect of the arm
  against the control arm (ITT, the report's estimate, CI, adjusted p, Hedges' g and its
  CI), the units and pupils analysed, the usage levels of the arm (pupils with usage,
  share above the compliance threshold, mean active minutes), the cost per pupil and the
  evidence rating (padlocks, primary outcome);
- then one row per level and académie of the enrolled classes (the registry): units and
  pupils enrolled. Their effect columns are filled only where the final analysis
  estimated the académie as a subgroup and the experiment has one level (so that the
  académie's subgroup is that académie × level); ``effect_scope`` says which.

Effects are never re-estimated here: they are the final run's, as its report shows them.
**To combine effects across experiments, take the rows with** ``academie = "*"`` **and**
``level = "*"``: other rows would count an experiment several times.

Small cells: a count of pupils of 1 to 9 (:func:`analysis.suppression.is_suppressed`)
is replaced by null with ``suppressed`` true, together with what would reveal it (the
row's units, the share computed on it). Every pupil count of the output is therefore 0,
at least 10, or null.

The columns, their types and meanings (French and English) are :data:`COLUMNS`; the JSON
document's schema is :func:`json_schema` (checked in as
``docs/national-aggregate.schema.json``) and the codebook :func:`codebook_markdown`
(``docs/national-aggregate-codebook.md``); ``python -m experiments.privacy.aggregate``
writes both, and a test keeps them current.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Engine

from analysis.multiplicity import certainty
from analysis.report.rating import rate_evidence
from analysis.suppression import MIN_CELL_PUPILS, is_suppressed
from experiments.enrollment.assignments import enrolled_classes
from experiments.privacy.export import spreadsheet_cell
from experiments.protocol.language import Protocol
from experiments.registry import ExperimentRow, get_experiment, registered_protocol
from experiments.runs.records import RunRecord, list_runs

__all__ = [
    "COLUMNS",
    "FORMAT",
    "AggregateColumn",
    "aggregate_rows",
    "codebook_markdown",
    "json_schema",
    "to_csv",
    "to_json_document",
    "write_aggregate",
]

logger = logging.getLogger(__name__)

FORMAT = "preuve-national-aggregate"
VERSION = 1
ALL = "*"
_DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA_PATH = _DOCS / "national-aggregate.schema.json"
CODEBOOK_PATH = _DOCS / "national-aggregate-codebook.md"

Kind = Literal["string", "integer", "number", "boolean"]


@dataclass(frozen=True)
class AggregateColumn:
    """One column: JSON type, whether it may be null, its meaning in French and English."""

    name: str
    kind: Kind
    nullable: bool
    fr: str
    en: str
    enum: tuple[str, ...] = ()


def _c(name: str, kind: Kind, nullable: bool, fr: str, en: str,
       enum: tuple[str, ...] = ()) -> AggregateColumn:
    return AggregateColumn(name, kind, nullable, fr, en, enum)


COLUMNS: tuple[AggregateColumn, ...] = (
    _c("experiment_id", "string", False, "Identifiant de l'expérimentation (registre Preuve).",
       "Experiment id (Preuve registry)."),
    _c("protocol_version", "integer", False,
       "Version du protocole suivie par l'analyse finale.",
       "Protocol version the final analysis followed."),
    _c("protocol_sha256", "string", False, "Empreinte SHA-256 de cette version du protocole.",
       "SHA-256 of that protocol version."),
    _c("closed_at", "string", True, "Date et heure de clôture (ISO 8601, UTC).",
       "When the experiment was closed (ISO 8601, UTC)."),
    _c("final_analysis_due_at", "string", True,
       "Échéance de l'analyse finale utilisée (ISO 8601, UTC) ; vide sans analyse finale.",
       "Due time of the final analysis used (ISO 8601, UTC); empty without one."),
    _c("programme", "string", True, "Programme de financement.", "Funding programme."),
    _c("resource_id", "string", False, "Identifiant de la ressource évaluée.",
       "Id of the evaluated resource."),
    _c("resource_name", "string", False, "Nom de la ressource évaluée.",
       "Name of the evaluated resource."),
    _c("unit", "string", False, "Unité de randomisation (class, school, learner).",
       "Unit of randomisation (class, school, learner).", ("class", "school", "learner")),
    _c("arm", "string", False, "Bras (groupe) de l'expérimentation.", "Arm of the experiment."),
    _c("control", "boolean", False, "Vrai pour le bras témoin.", "True for the control arm."),
    _c("contrast", "string", True, "Comparaison estimée (« bras vs témoin ») ; vide pour le "
       "bras témoin.", "Contrast estimated (\"arm vs control\"); empty for the control arm."),
    _c("outcome", "string", False, "Mesure de résultat (identifiant du protocole).",
       "Outcome measure (protocol id)."),
    _c("outcome_role", "string", False, "Rôle de la mesure : principale ou secondaire.",
       "Role of the outcome: primary or secondary.", ("primary", "secondary")),
    _c("level", "string", False, "Niveau scolaire (CP, CE1…) ; « * » pour tous les niveaux.",
       "School level (CP, CE1…); \"*\" for all levels."),
    _c("academie", "string", False, "Académie ; « * » pour toutes les académies.",
       "Académie; \"*\" for all académies."),
    _c("effect_scope", "string", False,
       "Portée de l'effet de la ligne : experiment (toute l'expérimentation, lignes « * »), "
       "subgroup (sous-groupe académie pré-enregistré), none (pas d'effet sur cette ligne).",
       "Scope of the row's effect: experiment (whole experiment, \"*\" rows), subgroup "
       "(pre-registered académie subgroup), none (no effect on this row).",
       ("experiment", "subgroup", "none")),
    _c("estimate", "number", True, "Effet estimé (ITT, points de l'échelle de la mesure).",
       "Estimated effect (ITT, points of the outcome's scale)."),
    _c("ci_low", "number", True, "Borne basse de l'intervalle de confiance de l'effet.",
       "Lower bound of the effect's confidence interval."),
    _c("ci_high", "number", True, "Borne haute de l'intervalle de confiance de l'effet.",
       "Upper bound of the effect's confidence interval."),
    _c("p_value", "number", True, "Valeur p non ajustée.", "Unadjusted p-value."),
    _c("p_adjusted", "number", True,
       "Valeur p ajustée (comparaisons multiples ou analyse séquentielle, comme le rapport).",
       "Adjusted p-value (multiple comparisons or sequential analysis, as in the report)."),
    _c("conclusion", "string", True,
       "Conclusion du test du protocole : positive, negative, inconclusive, descriptive, none.",
       "Conclusion of the protocol's test: positive, negative, inconclusive, descriptive, "
       "none."),
    _c("hedges_g", "number", True, "Taille d'effet standardisée (g de Hedges).",
       "Standardised effect size (Hedges' g)."),
    _c("hedges_g_ci_low", "number", True, "Borne basse de l'intervalle de g.",
       "Lower bound of g's interval."),
    _c("hedges_g_ci_high", "number", True, "Borne haute de l'intervalle de g.",
       "Upper bound of g's interval."),
    _c("n_units_analysed", "integer", True,
       "Unités du bras dans l'analyse de l'effet (lignes « * » seulement).",
       "Units of the arm in the effect's analysis (\"*\" rows only)."),
    _c("n_pupils_analysed", "integer", True,
       "Élèves du bras dans l'analyse de l'effet (lignes « * » seulement).",
       "Pupils of the arm in the effect's analysis (\"*\" rows only)."),
    _c("n_units_enrolled", "integer", True,
       "Unités (classes) randomisées dans le bras, pour ce niveau et cette académie.",
       "Units (classes) randomised to the arm, for this level and académie."),
    _c("n_pupils_enrolled", "integer", True,
       "Élèves déclarés dans ces classes à l'inscription.",
       "Pupils declared in those classes at enrollment."),
    _c("usage_pupils_with_usage", "integer", True,
       "Élèves du bras ayant utilisé la ressource au moins une fois (lignes « * »).",
       "Pupils of the arm who used the resource at least once (\"*\" rows)."),
    _c("usage_share_with_usage", "number", True,
       "Part des élèves du bras ayant utilisé la ressource (0 à 1).",
       "Share of the arm's pupils who used the resource (0 to 1)."),
    _c("usage_share_compliant", "number", True,
       "Part des élèves au-dessus du seuil d'usage pré-enregistré (0 à 1).",
       "Share of pupils above the pre-registered usage threshold (0 to 1)."),
    _c("usage_mean_active_minutes", "number", True,
       "Minutes actives moyennes par élève sur la période d'intervention.",
       "Mean active minutes per pupil over the intervention period."),
    _c("compliance_min_active_minutes", "number", True,
       "Seuil d'usage pré-enregistré (minutes actives par élève).",
       "Pre-registered usage threshold (active minutes per pupil)."),
    _c("cost_per_pupil_eur", "number", True,
       "Coût par élève bénéficiaire du bras (euros, budget du protocole) ; vide pour le "
       "témoin ou sans budget.",
       "Cost per pupil receiving the arm (euros, the protocol's budget); empty for the "
       "control arm or without a budget."),
    _c("evidence_padlocks", "integer", True,
       "Note de solidité (0 à 5 cadenas, inspirée de l'EEF) de l'effet principal ; lignes "
       "« * » de la mesure principale.",
       "Evidence rating (0 to 5 padlocks, after the EEF) of the primary effect; \"*\" rows "
       "of the primary outcome."),
    _c("suppressed", "boolean", False,
       f"Vrai si une case de 1 à {MIN_CELL_PUPILS - 1} élèves a été masquée sur cette ligne.",
       f"True when a cell of 1 to {MIN_CELL_PUPILS - 1} pupils was suppressed on this row."),
)
NAMES = tuple(c.name for c in COLUMNS)
#: Counts of pupils: each is 0, at least 10, or null (suppressed).
PUPIL_COUNTS = ("n_pupils_analysed", "n_pupils_enrolled", "usage_pupils_with_usage")


# --- building the rows --------------------------------------------------------------


def _final(runs: Sequence[RunRecord]) -> RunRecord | None:
    done = [r for r in runs if r.analysis == "final" and r.status == "done" and r.results_json]
    return done[-1] if done else None


def _itt(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [e for e in results.get("effects", [])
            if e.get("estimand") == "ITT" and e.get("role") in ("primary", "secondary",
                                                                 "subgroup")]


def _arm_of(contrast: str) -> str:
    return contrast.split(" vs ", 1)[0]


def _effect_values(effect: Mapping[str, Any] | None, results: Mapping[str, Any]
                   ) -> dict[str, Any]:
    keys = ("estimate", "ci_low", "ci_high", "p_value", "hedges_g", "hedges_g_ci_low",
            "hedges_g_ci_high")
    if effect is None:
        return {k: None for k in (*keys, "p_adjusted", "conclusion")}
    c = certainty(effect, results)
    return {**{k: effect.get(k) for k in keys}, "p_adjusted": c.p, "conclusion": c.claim}


def _cost(protocol: Protocol, arm: str) -> float | None:
    budget = protocol.budget
    if budget is None:
        return None
    weights = {a.name: a.allocation for a in protocol.arms if not a.control}
    if arm not in weights:
        return None
    cost, pupils = budget.arm_cost(arm, weights[arm] / sum(weights.values()))
    return cost / pupils if pupils else budget.cost_per_pupil


def _suppress(row: dict[str, Any]) -> dict[str, Any]:
    """Null the pupil counts of 1 to 9 and what would reveal them."""
    hidden = False
    if row["n_pupils_enrolled"] is not None and is_suppressed(row["n_pupils_enrolled"]):
        row["n_pupils_enrolled"] = row["n_units_enrolled"] = None
        hidden = True
    if row["n_pupils_analysed"] is not None and is_suppressed(row["n_pupils_analysed"]):
        row["n_pupils_analysed"] = row["n_units_analysed"] = None
        hidden = True
    used = row["usage_pupils_with_usage"]
    if used is not None and is_suppressed(used):
        row["usage_pupils_with_usage"] = row["usage_share_with_usage"] = None
        hidden = True
    row["suppressed"] = row["suppressed"] or hidden
    return row


def _experiment_rows(registry: Engine, experiment_id: str) -> list[dict[str, Any]]:
    record = get_experiment(registry, experiment_id)
    closed_at = next((t.at for t in reversed(record.transitions) if t.to_state == "closed"),
                     None)
    final = _final(list_runs(registry, experiment_id, "final"))
    stored = registered_protocol(registry, experiment_id,
                                 final.protocol_version if final is not None else None)
    protocol = stored.protocol
    results: dict[str, Any] = json.loads(final.results_json or "{}") if final else {}
    effects = _itt(results)
    usage = {u.get("arm"): u for u in (results.get("usage") or {}).get("arms", [])}
    threshold = (results.get("usage") or {}).get("compliance_min_active_minutes")
    padlocks = rate_evidence(results).padlocks if results else None
    control = next(a.name for a in protocol.arms if a.control)
    classes = enrolled_classes(registry, experiment_id)
    levels = sorted({c.level for c in classes})
    base = {
        "experiment_id": experiment_id, "protocol_version": stored.version.version,
        "protocol_sha256": protocol.sha256,
        "closed_at": closed_at.astimezone(UTC).isoformat() if closed_at else None,
        "final_analysis_due_at": final.due_at.astimezone(UTC).isoformat() if final else None,
        "programme": protocol.programme.name if protocol.programme else None,
        "resource_id": protocol.resource.id, "resource_name": protocol.resource.name,
        "unit": protocol.population.unit,
    }
    rows: list[dict[str, Any]] = []
    for outcome in protocol.outcomes:
        role = "primary" if outcome.primary else "secondary"
        for arm in protocol.arms:
            contrast = None if arm.control else f"{arm.name} vs {control}"
            overall = next((e for e in effects if e.get("outcome") == outcome.id
                            and e.get("contrast") == contrast and not e.get("subgroup")), None)
            used = usage.get(arm.name) or {}
            learners = used.get("learners")
            with_usage = used.get("learners_with_usage")
            row = {
                **base, "arm": arm.name, "control": arm.control, "contrast": contrast,
                "outcome": outcome.id, "outcome_role": role, "level": ALL, "academie": ALL,
                "effect_scope": "experiment" if overall is not None else "none",
                **_effect_values(overall, results),
                "n_units_analysed": _arm_count(overall, "n_units", arm.name, effects,
                                               outcome.id),
                "n_pupils_analysed": _arm_count(overall, "n_learners", arm.name, effects,
                                                outcome.id),
                "n_units_enrolled": sum(1 for c in classes if c.arm == arm.name),
                "n_pupils_enrolled": sum(c.pupils for c in classes if c.arm == arm.name),
                "usage_pupils_with_usage": with_usage,
                "usage_share_with_usage": (with_usage / learners if learners and
                                           with_usage is not None else None),
                "usage_share_compliant": used.get("share_compliant"),
                "usage_mean_active_minutes": used.get("mean_active_minutes"),
                "compliance_min_active_minutes": threshold,
                "cost_per_pupil_eur": _cost(protocol, arm.name),
                "evidence_padlocks": padlocks if role == "primary" and not arm.control
                else None,
                "suppressed": False,
            }
            rows.append(_suppress(row))
            cells: dict[tuple[str, str], list[int]] = defaultdict(list)
            for c in classes:
                if c.arm == arm.name:
                    cells[c.level, c.academie].append(c.pupils)
            for (level, academie), pupils in sorted(cells.items()):
                subgroup = None
                if contrast is not None and len(levels) == 1:
                    subgroup = next((e for e in effects if e.get("outcome") == outcome.id
                                     and e.get("contrast") == contrast
                                     and e.get("subgroup") == f"academie={academie}"), None)
                rows.append(_suppress({
                    **row, "level": level, "academie": academie,
                    "effect_scope": "subgroup" if subgroup is not None else "none",
                    **_effect_values(subgroup, results),
                    "n_units_analysed": None, "n_pupils_analysed": None,
                    "n_units_enrolled": len(pupils), "n_pupils_enrolled": sum(pupils),
                    "usage_pupils_with_usage": None, "usage_share_with_usage": None,
                    "usage_share_compliant": None, "usage_mean_active_minutes": None,
                    "evidence_padlocks": None, "suppressed": False,
                }))
    return rows


def _arm_count(effect: Mapping[str, Any] | None, key: str, arm: str,
               effects: Sequence[Mapping[str, Any]], outcome: str) -> int | None:
    """The arm's units or pupils analysed: from its own effect, or (control arm) from
    any effect of the outcome that names it."""
    candidates = [effect] if effect is not None else [
        e for e in effects if e.get("outcome") == outcome and not e.get("subgroup")]
    for e in candidates:
        value = (e or {}).get(key, {}).get(arm)
        if value is not None:
            return int(value)
    return None


def aggregate_rows(registry: Engine, visible: Callable[[str], bool] = lambda _: True
                   ) -> list[dict[str, Any]]:
    """The rows of every closed experiment for which ``visible(experiment_id)`` is true,
    in the order of :data:`COLUMNS` (experiment id, then outcome and arm as the protocol
    lists them, then level and académie)."""
    with registry.connect() as connection:
        closed = list(connection.scalars(sa.select(ExperimentRow.id)
                                         .where(ExperimentRow.state == "closed")
                                         .order_by(ExperimentRow.id)))
    rows: list[dict[str, Any]] = []
    for experiment_id in closed:
        if not visible(experiment_id):
            continue
        rows += [{name: row[name] for name in NAMES}
                 for row in _experiment_rows(registry, experiment_id)]
    return rows


# --- formats --------------------------------------------------------------------------


def to_json_document(rows: Sequence[Mapping[str, Any]], generated_at: datetime | None = None
                     ) -> dict[str, Any]:
    """The JSON document: what it is, when it was made, the suppression rule, the rows."""
    return {
        "format": FORMAT, "version": VERSION,
        "generated_at": (generated_at or datetime.now(UTC)).isoformat(),
        "suppressed_below": MIN_CELL_PUPILS,
        "rows": [dict(r) for r in rows],
    }


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return spreadsheet_cell(str(value))


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """UTF-8 CSV with a header row, the columns of :data:`COLUMNS`; null is an empty cell,
    booleans ``true``/``false``; text cells made safe for spreadsheets
    (:func:`experiments.privacy.export.spreadsheet_cell`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(NAMES)
    for row in rows:
        writer.writerow([_csv_value(row[name]) for name in NAMES])
    return out.getvalue()


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :func:`to_json_document`'s output."""
    def column(c: AggregateColumn) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": [c.kind, "null"] if c.nullable else c.kind,
                                "description": c.en}
        if c.enum:
            spec["enum"] = [*c.enum, *([None] if c.nullable else [])]
        if c.name in PUPIL_COUNTS:
            spec["not"] = {"type": "integer", "minimum": 1, "maximum": MIN_CELL_PUPILS - 1}
        elif c.kind == "integer":
            spec["minimum"] = 0
        return spec

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://preuve.example/schemas/national-aggregate-v1.json",
        "title": "Preuve national aggregate, version 1",
        "description": "One row per closed experiment × arm × outcome × level × académie; "
                       "counts of 1 to 9 pupils are null (suppressed). Combine effects from "
                       "the rows whose level and academie are \"*\".",
        "type": "object",
        "required": ["format", "version", "generated_at", "suppressed_below", "rows"],
        "additionalProperties": False,
        "properties": {
            "format": {"const": FORMAT},
            "version": {"const": VERSION},
            "generated_at": {"type": "string", "format": "date-time"},
            "suppressed_below": {"const": MIN_CELL_PUPILS},
            "rows": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": list(NAMES),
                "properties": {c.name: column(c) for c in COLUMNS},
            }},
        },
    }


def codebook_markdown() -> str:
    """The codebook, French then English, from :data:`COLUMNS`."""
    lines = [
        "# Agrégat national / National aggregate — codebook",
        "",
        "Generated by `python -m experiments.privacy.aggregate` from "
        "`experiments/privacy/aggregate.py`; do not edit by hand.",
        "",
        "## Français",
        "",
        "`preuve export --aggregate` (et `GET /api/agregat` du portail, pour les chargés de "
        "programme et les chercheurs) : une ligne par expérimentation close × bras × mesure × "
        "niveau × académie, en CSV (UTF-8) et en JSON (schéma : "
        "`docs/national-aggregate.schema.json`). Une case de 1 à "
        f"{MIN_CELL_PUPILS - 1} élèves est vide (masquée) et la ligne porte "
        "`suppressed = true`. Les effets sont ceux de l'analyse finale, sur toute "
        "l'expérimentation : pour combiner des expérimentations, prendre les lignes où "
        "`level` et `academie` valent « * ».",
        "",
        "| colonne | type | signification |",
        "|---|---|---|",
        *[f"| `{c.name}` | {c.kind}{' ou vide' if c.nullable else ''} | {c.fr} |"
          for c in COLUMNS],
        "",
        "## English",
        "",
        "`preuve export --aggregate` (and the portal's `GET /api/agregat`, for programme "
        "officers and researchers): one row per closed experiment × arm × outcome × level × "
        "académie, as CSV (UTF-8) and JSON (schema: `docs/national-aggregate.schema.json`). "
        f"A cell of 1 to {MIN_CELL_PUPILS - 1} pupils is empty (suppressed) and the row has "
        "`suppressed = true`. Effects are the final analysis', over the whole experiment: to "
        "combine experiments, take the rows whose `level` and `academie` are \"*\".",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
        *[f"| `{c.name}` | {c.kind}{' or empty' if c.nullable else ''} | {c.en} |"
          for c in COLUMNS],
        "",
    ]
    return "\n".join(lines)


def write_aggregate(rows: Sequence[Mapping[str, Any]], out: Path,
                    formats: Sequence[str] = ("csv", "json")) -> list[Path]:
    """Write the aggregate (CSV and/or JSON), its schema and its codebook into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "csv" in formats:
        path = out / "national-aggregate.csv"
        path.write_text(to_csv(rows), encoding="utf-8")
        written.append(path)
    if "json" in formats:
        path = out / "national-aggregate.json"
        path.write_text(json.dumps(to_json_document(rows), ensure_ascii=False, indent=1,
                                   allow_nan=False), encoding="utf-8")
        written.append(path)
    for path, text in ((out / "national-aggregate.schema.json", _schema_text()),
                       (out / "national-aggregate-codebook.md", codebook_markdown())):
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _schema_text() -> str:
    return json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(_schema_text(), encoding="utf-8")
    CODEBOOK_PATH.write_text(codebook_markdown(), encoding="utf-8")
    print(f"{SCHEMA_PATH} and {CODEBOOK_PATH} regenerated")
