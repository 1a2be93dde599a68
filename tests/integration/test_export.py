"""``preuve export``: pseudonymised tables in Parquet and CSV that agree, a codebook that
describes every column, the protocol as registered, the latest results, withdrawn pupils
left out and small aggregate cells suppressed."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from experiments.cli.app import app
from experiments.database import registry_engine
from experiments.enrollment.files import EnrollmentDesign
from experiments.enrollment.withdrawal import withdraw
from experiments.privacy.export import MIN_CELL, export_experiment
from experiments.protocol.language import load_protocol
from experiments.runs.records import analysis_runs_table
from ingest.pseudonym import load_pseudonym_key, pseudonym_key_id
from tests.conftest import SettingsFactory
from tests.support.trial import EXPERIMENT, PROTOCOL, build_trial
from tests.support.worker import settings_env

pytestmark = pytest.mark.integration

TABLES = ("units", "usage_weekly", "outcomes", "events", "usage_by_arm_week")


def _record_run(settings_registry: object, results: dict[str, object]) -> None:
    now = datetime(2028, 7, 1, tzinfo=UTC)
    with settings_registry.begin() as connection:  # type: ignore[attr-defined]
        connection.execute(analysis_runs_table.insert().values(
            run_id="r1", run_key=f"{EXPERIMENT}/final/2028-06-30", experiment_id=EXPERIMENT,
            analysis="final", due_at=now, sequence=1, status="done", reason=None,
            protocol_version=1, protocol_sha256="0" * 64, watermark={}, software={},
            results_json=json.dumps(results), started_at=now, finished_at=now, worker="t"))


def test_export_writes_agreeing_tables_a_codebook_the_protocol_and_results(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    trial = build_trial(settings)
    registry = registry_engine(settings)
    design = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))
    gone_class = sorted(trial.classes)[0]
    gone = trial.learners[gone_class][:2]
    for pupil in gone:
        withdraw(registry, design, gone_class, reason="parents", actor="academie:v:t",
                 learner_id=pupil, key=load_pseudonym_key(settings))
    _record_run(registry, {"experiment": EXPERIMENT, "effects": []})

    out = tmp_path / "export"
    done = export_experiment(settings, EXPERIMENT, out)
    assert done.withdrawn_pupils_excluded == 2
    codebook = json.loads((out / "codebook.json").read_text())
    for name in TABLES:
        table = pq.read_table(out / f"{name}.parquet")
        with (out / f"{name}.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert table.num_rows == len(rows) == done.rows[name], name
        documented = [c["name"] for c in codebook["tables"][name]]
        assert table.column_names == documented == list(rows[0]) if rows else True, name
        assert all(c["meaning"] for c in codebook["tables"][name])
    events = pq.read_table(out / "events.parquet").to_pylist()
    assert "extensions" not in events[0] and "event_id" not in events[0]
    kept = len(trial.event_ids) - 2 * 6
    assert len(events) == kept, "withdrawn pupils' events must be left out"

    text = "".join(p.read_text(errors="replace") for p in out.glob("*.csv"))
    text += "".join(p.read_bytes().decode("latin-1") for p in out.glob("*.parquet"))
    for pupil in gone:
        assert trial.key(pupil) not in text, "a withdrawn pupil is in the export"
    for raws in trial.learners.values():
        assert not [r for r in raws if r in text], "a raw learner id is in the export"
    stays = trial.key(trial.learners[gone_class][5])
    assert stays in text

    for cell in pq.read_table(out / "usage_by_arm_week.parquet").to_pylist():
        if cell["suppressed"]:
            assert cell["learners"] is None and cell["active_minutes"] is None
        else:
            assert cell["learners"] >= MIN_CELL

    assert (out / "protocol.yaml").read_text() == PROTOCOL.read_text()
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["protocol"]["sha256"] == load_protocol(PROTOCOL).sha256
    assert manifest["pseudonym_key_id"] == pseudonym_key_id(load_pseudonym_key(settings))
    assert manifest["protocol"]["file_sha256"] == hashlib.sha256(PROTOCOL.read_bytes()).hexdigest()
    assert json.loads((out / "results.json").read_text())["experiment"] == EXPERIMENT
    assert "| `learner_id` |" in (out / "codebook.md").read_text()
    assert "single quote" in (out / "codebook.md").read_text(), "the codebook says how"
    assert "single quote" in codebook["csv_text_cells"]


def test_cli_export_csv_only_and_a_bad_format_is_a_message(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    build_trial(settings, n_classes=2, pupils=3)
    for name, value in settings_env(settings).items():
        if name.startswith("PREUVE_"):
            monkeypatch.setenv(name, value)
    runner = CliRunner()
    result = runner.invoke(app, ["export", EXPERIMENT, "--out", str(tmp_path / "x"),
                                 "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x" / "events.csv").exists()
    assert not list((tmp_path / "x").glob("*.parquet"))
    bad = runner.invoke(app, ["export", EXPERIMENT, "--out", str(tmp_path / "y"),
                              "--format", "xlsx"])
    assert bad.exit_code == 2 and "--format" in bad.output and "Traceback" not in bad.output
    unknown = runner.invoke(app, ["export", "no-such", "--out", str(tmp_path / "z")])
    assert unknown.exit_code == 2 and "no-such" in unknown.output
