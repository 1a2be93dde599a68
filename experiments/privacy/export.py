"""Data export for researchers and national studies: pseudonymised tables, a codebook,
the protocol as registered and the latest results.

``export_experiment`` writes into one directory:

- ``units`` (one row per randomised unit: arm, school, académie, status and the
  enrollment attributes), ``usage_weekly`` (active minutes per learner and ISO week of
  the intervention), ``outcomes`` (one score per learner, measure and wave) and
  ``events`` (the stored events without ``extensions`` and without the resource's
  ``event_id``, which the resource could link back to its own records), each as Parquet
  and/or CSV;
- ``usage_by_arm_week``: an aggregate (learners and active minutes per arm and week) in
  which every cell of fewer than :data:`MIN_CELL` pupils is suppressed (values empty,
  ``suppressed`` true);
- ``codebook.md`` and ``codebook.json``: each table's columns with type, meaning, unit,
  and how CSV text cells are made safe to open in a spreadsheet (:func:`spreadsheet_cell`);
- ``protocol.yaml``: the protocol version in force, byte for byte as registered, with
  its registry hash in ``export.json``;
- ``results.json``: the latest recorded analysis results, if any;
- ``export.json``: what was exported, when, from which protocol version, the files'
  SHA-256, how many withdrawn pupils were left out, and the id of the pseudonymisation
  key (:func:`ingest.pseudonym.pseudonym_key_id`, never the key).

Learners appear only under their experiment-specific pseudonym (``learner_id`` here is
the store's ``learner_key``). Pupils withdrawn on request are left out of every table
(the withdrawal record holds their pseudonym). The export itself is recorded
in the audit log: row-level data left the platform, and who took it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from analysis.suppression import MIN_CELL_PUPILS, is_suppressed
from experiments.access import record_audit
from experiments.database import registry_engine
from experiments.errors import RetentionError
from experiments.registry import registered_protocol
from experiments.runs.inputs import write_analysis_files
from experiments.settings import Settings
from experiments.store import ExperimentStore, events_table
from ingest.pseudonym import load_pseudonym_key, pseudonym_key_id

__all__ = [
    "MIN_CELL",
    "SPREADSHEET_NOTE",
    "Column",
    "Export",
    "ExportFormat",
    "export_experiment",
    "spreadsheet_cell",
]

logger = logging.getLogger(__name__)

ExportFormat = Literal["parquet", "csv"]
#: Smallest number of pupils an aggregate cell may describe (docs/architecture.md "Privacy").
MIN_CELL = MIN_CELL_PUPILS

# OWASP "CSV Injection": a spreadsheet runs a cell that begins with one of these as a
# formula (=HYPERLINK(...), +cmd|..., @SUM(...)); tab and carriage return are on the list
# because some spreadsheets skip them before looking for the formula sign.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: How the codebook tells the reader what :func:`spreadsheet_cell` did.
SPREADSHEET_NOTE = (
    "In the CSV files, a text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage "
    "return is written with a single quote (`'`) before it, so that a spreadsheet shows it "
    "as text instead of running it as a formula (OWASP, CSV injection). Remove that first "
    "quote to get the value as stored; the Parquet files hold the values unchanged."
)


@dataclass(frozen=True)
class Column:
    """One column of an exported table, as the codebook describes it."""

    name: str
    type: Literal["string", "integer", "float", "boolean", "timestamp"]
    meaning: str
    unit: str = ""


_UNITS = [
    Column("unit_id", "string", "Randomised unit: the class id (or the school's UAI when "
           "population.unit is school), as the académie enrolled it."),
    Column("arm", "string", "Arm the unit was randomised to (protocol arms[].name)."),
    Column("school_uai", "string", "School's UAI (national school id)."),
    Column("academie", "string", "Académie of the school."),
    Column("level", "string", "Niveau of the class (CP, CE1...)."),
    Column("pupils", "integer", "Pupils in the unit at enrollment, as declared.", "pupils"),
    Column("status", "string", "enrolled or withdrawn (a withdrawn unit keeps its arm: ITT)."),
]
_USAGE = [
    Column("learner_id", "string", "Pupil's pseudonym in this experiment (HMAC-SHA256 of "
           "the resource's id under the experiment key; not linkable across experiments)."),
    Column("unit_id", "string", "Unit of the pupil (see units)."),
    Column("week", "string", "ISO week of the usage (2027-W40), school days in Paris."),
    Column("active_minutes", "float", "Active time on the resource that week.", "minutes"),
]
_OUTCOMES = [
    Column("learner_id", "string", "Pupil's pseudonym in this experiment (see usage_weekly)."),
    Column("unit_id", "string", "Unit of the pupil at their first assessment."),
    Column("measure", "string", "Outcome measure (protocol outcomes[].id or baseline)."),
    Column("wave", "string", "baseline (before the intervention) or endline (after it)."),
    Column("score", "float", "Score of the pupil's assessment of the measure in the wave, "
           "from a trusted source only (an import, at its latest corrected version, else "
           "the experiment's assessor; the first one when several).", "measure's own scale"),
]
_EVENTS = [
    Column("occurred_at", "timestamp", "When the event happened (UTC).", "UTC time"),
    Column("resource_id", "string", "The EdTech resource that sent the event."),
    Column("learner_id", "string", "Pupil's pseudonym in this experiment (see usage_weekly)."),
    Column("class_id", "string", "Class id as the académie enrolled it."),
    Column("school_uai", "string", "School's UAI."),
    Column("arm", "string", "Arm of the class."),
    Column("verb", "string", "What happened (session_started, activity_completed, "
           "exercise_answered, assessment_scored...)."),
    Column("object_id", "string", "What it happened to (activity, exercise or measure id)."),
    Column("duration_s", "float", "Duration of the activity, if sent.", "seconds"),
    Column("score", "float", "Score, if sent.", "resource's own scale"),
    Column("success", "boolean", "Whether the exercise or activity succeeded, if sent."),
    Column("authority", "string", "Who wrote the event: role:scope:first 12 hex digits of "
           "the API key's SHA-256 (gateway), import:<who> (preuve outcomes import), "
           "import:legacy (imported before this was recorded), empty when unknown. Only "
           "imports and the experiment's assessor give outcomes."),
]
_AGGREGATE = [
    Column("arm", "string", "Arm."),
    Column("week", "string", "ISO week of the intervention."),
    Column("learners", "integer", f"Pupils with active use that week; empty when fewer "
           f"than {MIN_CELL} (suppressed).", "pupils"),
    Column("active_minutes", "float", "Total active minutes of those pupils; empty when "
           "suppressed.", "minutes"),
    Column("mean_active_minutes", "float", "Mean active minutes per active pupil; empty "
           "when suppressed.", "minutes"),
    Column("suppressed", "boolean", f"True when the cell counts fewer than {MIN_CELL} "
           "pupils and its values are withheld."),
]


@dataclass(frozen=True)
class Export:
    """What an export wrote."""

    directory: Path
    files: tuple[Path, ...]
    rows: dict[str, int]
    withdrawn_pupils_excluded: int


def spreadsheet_cell(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows as text and never runs as a formula.

    Values come from outside (an EdTech's ``object_id``, an académie's attributes), so a
    text cell that begins with a formula sign gets a single quote before it (OWASP, CSV
    injection). Numbers, dates and booleans are written by the exporter itself and are
    left alone; only text columns go through here.

    Examples
    --------
    >>> print(spreadsheet_cell('=HYPERLINK("http://x","clic")'))
    '=HYPERLINK("http://x","clic")
    >>> print(spreadsheet_cell("@SUM(A1)"), spreadsheet_cell("-2"), spreadsheet_cell("+cmd|x"))
    '@SUM(A1) '-2 '+cmd|x
    >>> spreadsheet_cell(chr(9) + "x") == "'" + chr(9) + "x"
    True
    >>> spreadsheet_cell("lectio-chap-1")
    'lectio-chap-1'
    """
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _typed(value: Any, kind: str) -> Any:
    if value is None or value == "":
        return None
    if kind == "integer":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "timestamp":
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return str(value)


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    return {"string": pa.string(), "integer": pa.int64(), "float": pa.float64(),
            "boolean": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC")}[kind]


def _write_table(directory: Path, name: str, columns: Sequence[Column],
                 rows: Sequence[dict[str, Any]], formats: Sequence[ExportFormat]) -> list[Path]:
    typed = [{c.name: _typed(row.get(c.name), c.type) for c in columns} for row in rows]
    written: list[Path] = []
    if "parquet" in formats:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c.name, _arrow_type(c.type)) for c in columns])
        path = directory / f"{name}.parquet"
        pq.write_table(pa.Table.from_pylist(typed, schema=schema), path)
        written.append(path)
    if "csv" in formats:
        path = directory / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([c.name for c in columns])
            for row in typed:
                writer.writerow(["" if row[c.name] is None
                                 else row[c.name].isoformat() if c.type == "timestamp"
                                 else str(row[c.name]).lower() if c.type == "boolean"
                                 else spreadsheet_cell(row[c.name]) if c.type == "string"
                                 else row[c.name] for c in columns])
        written.append(path)
    return written


def _aggregate(usage: Sequence[dict[str, str]], arm_of: dict[str, str]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for row in usage:
        arm = arm_of.get(row["unit_id"], "")
        minutes = cells[(arm, row["week"])]
        minutes[row["learner_id"]] = minutes.get(row["learner_id"], 0.0) + float(
            row["active_minutes"])
    rows: list[dict[str, Any]] = []
    for (arm, week), by_learner in sorted(cells.items()):
        small = is_suppressed(len(by_learner))
        total = sum(by_learner.values())
        rows.append({
            "arm": arm, "week": week, "suppressed": small,
            "learners": None if small else len(by_learner),
            "active_minutes": None if small else total,
            "mean_active_minutes": None if small else total / len(by_learner),
        })
    return rows


def _codebook(tables: dict[str, list[Column]], manifest: dict[str, Any]) -> str:
    lines = [f"# Codebook — {manifest['experiment']}", "",
             f"Exported {manifest['exported_at']} from protocol version "
             f"{manifest['protocol']['version']} (sha256 {manifest['protocol']['sha256']}).",
             f"Pupils withdrawn on request are excluded ({manifest['withdrawn_pupils_excluded']})"
             f". Aggregate cells of fewer than {MIN_CELL} pupils are suppressed.", "",
             SPREADSHEET_NOTE, ""]
    for name, columns in tables.items():
        lines += [f"## {name}", "", "| column | type | meaning | unit |", "|---|---|---|---|"]
        lines += [f"| `{c.name}` | {c.type} | {c.meaning} | {c.unit} |" for c in columns]
        lines.append("")
    return "\n".join(lines)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_experiment(
    settings: Settings,
    experiment_id: str,
    out: Path,
    *,
    formats: Sequence[ExportFormat] = ("parquet", "csv"),
    actor: str = "researcher:cli",
) -> Export:
    """Export an experiment's pseudonymised data with its codebook, protocol and results.

    Parameters
    ----------
    settings
        Where the registry and the store are, and the pseudonymisation key.
    experiment_id
        A registered experiment with enrolled classes.
    out
        Directory to write into (created; files of an earlier export are overwritten).
    formats
        ``parquet`` and/or ``csv``.
    actor
        Who exports (audit log).

    Returns
    -------
    Export
        The files written and the row count of each table.

    Raises
    ------
    RetentionError
        An unknown format.
    RegistryError, StoreError
        The experiment is not registered, or has no enrolled class.
    """
    unknown = sorted(set(formats) - {"parquet", "csv"})
    if unknown or not formats:
        raise RetentionError(f"format: expecting one of parquet, csv; got {unknown or 'none'}",
                             field="format")
    registry = registry_engine(settings)
    registered = registered_protocol(registry, experiment_id)
    protocol = registered.protocol
    from experiments.enrollment.withdrawal import withdrawn_pupil_keys

    withdrawn = withdrawn_pupil_keys(registry_engine(settings), experiment_id)
    out.mkdir(parents=True, exist_ok=True)
    scratch = settings.state_dir / "analysis-scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="export-") as private:
        files = write_analysis_files(settings, registry, protocol, Path(private))
        units = _read_csv(files.units)
        usage = [r for r in _read_csv(files.usage) if r["learner_id"] not in withdrawn]
        outcomes = [r for r in _read_csv(files.outcomes) if r["learner_id"] not in withdrawn]
    extra = sorted({k for row in units for k in row} - {c.name for c in _UNITS})
    unit_columns = _UNITS + [Column(k, "string", "Enrollment attribute (strata, criteria, "
                                    "subgroups) as the académie declared it.") for k in extra]
    store = ExperimentStore(settings, experiment_id)
    names = [c.name for c in _EVENTS if c.name != "learner_id"]
    query = sa.select(*(events_table.c[n] for n in names), events_table.c.learner_key)
    query = query.order_by(events_table.c.occurred_at, events_table.c.event_id)
    with store.engine.connect() as connection:
        events = [{**{n: row[i] for i, n in enumerate(names)}, "learner_id": row[-1]}
                  for row in connection.execute(query)
                  if row[-1] not in withdrawn]
    arm_of = {row["unit_id"]: row["arm"] for row in units}
    tables: dict[str, tuple[list[Column], list[dict[str, Any]]]] = {
        "units": (unit_columns, list(units)),
        "usage_weekly": (_USAGE, list(usage)),
        "outcomes": (_OUTCOMES, list(outcomes)),
        "events": (_EVENTS, events),
        "usage_by_arm_week": (_AGGREGATE, _aggregate(usage, arm_of)),
    }
    written: list[Path] = []
    for name, (columns, rows) in tables.items():
        written += _write_table(out, name, columns, rows, formats)
    protocol_path = out / "protocol.yaml"
    protocol_path.write_text(registered.source_yaml, encoding="utf-8")
    written.append(protocol_path)
    runs = [run for run in _latest_results(registry, experiment_id)]
    if runs:
        results_path = out / "results.json"
        results_path.write_text(runs[0], encoding="utf-8")
        written.append(results_path)
    manifest: dict[str, Any] = {
        "experiment": experiment_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "protocol": {"version": registered.version.version, "sha256": registered.version.sha256,
                     "file": "protocol.yaml", "file_sha256": _sha256(protocol_path)},
        "withdrawn_pupils_excluded": len(withdrawn),
        # Which key made the learner pseudonyms (not the key): after a rotation, exports
        # made under the old key are told apart.
        "pseudonym_key_id": pseudonym_key_id(load_pseudonym_key(settings)),
        "min_cell": MIN_CELL,
        "rows": {name: len(rows) for name, (_, rows) in tables.items()},
        "files": {path.name: _sha256(path) for path in written},
    }
    codebook_json = out / "codebook.json"
    codebook_json.write_text(json.dumps({
        "experiment": experiment_id, "min_cell": MIN_CELL, "csv_text_cells": SPREADSHEET_NOTE,
        "tables": {name: [c.__dict__ for c in columns]
                   for name, (columns, _) in tables.items()},
    }, ensure_ascii=False, indent=2), encoding="utf-8")
    codebook_md = out / "codebook.md"
    codebook_md.write_text(_codebook({n: c for n, (c, _) in tables.items()}, manifest),
                           encoding="utf-8")
    written += [codebook_json, codebook_md]
    manifest_path = out / "export.json"
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2),
                             encoding="utf-8")
    written.append(manifest_path)
    with Session(registry) as session, session.begin():
        record_audit(session, actor, "data.export", experiment_id,
                     {"rows": manifest["rows"], "formats": list(formats),
                      "withdrawn_pupils_excluded": len(withdrawn)})
    logger.info("experiment %s: exported %d tables (%s) to %s", experiment_id, len(tables),
                "+".join(formats), out)
    return Export(out, tuple(written), manifest["rows"], len(withdrawn))


def _latest_results(registry: sa.Engine, experiment_id: str) -> list[str]:
    """The results JSON of the latest successful run, if any."""
    from experiments.runs.records import analysis_runs_table as runs

    query = (sa.select(runs.c.results_json)
             .where(runs.c.experiment_id == experiment_id, runs.c.status == "done",
                    runs.c.results_json.is_not(None))
             .order_by(runs.c.finished_at.desc()).limit(1))
    with registry.connect() as connection:
        return [str(value) for value in connection.scalars(query)]
