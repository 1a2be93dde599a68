"""Migration store_0002 (events.authority) on an existing store, SQLite and PostgreSQL.

A store written before provenance existed holds imported results and the resource's own
scores without any authority. After the migration, the imported results (recognised by
their event id, derived from the experiment's pseudonyms, which nobody can forge without
its key) are ``import:legacy`` and stay outcomes; everything else is of unknown authority,
hence usage; re-importing the official file finds every result already there.
"""

from __future__ import annotations

import csv
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from experiments import database
from experiments.database import registry_engine
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol
from experiments.runs.inputs import import_outcomes, write_analysis_files
from experiments.settings import Settings
from experiments.store import ExperimentStore
from tests.conftest import SettingsFactory
from tests.support.trial import EXPERIMENT, HEADER, PROTOCOL
from tests.support.uai import uai


def _alembic(engine: sa.Engine, action: str, target: str) -> None:
    config = Config()
    config.set_main_option("script_location",
                           str(Path(database.__file__).parent / "migrations" / "store"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, target)


def _settings(backend: str, make_settings: SettingsFactory,
              request: pytest.FixtureRequest) -> Settings:
    if backend == "postgresql":
        return make_settings(database_url=request.getfixturevalue("postgres_url"))
    return make_settings()


# The columns of events as store_0001 created them (no authority).
_OLD_EVENTS = sa.table(
    "events", *(sa.column(name) for name in (
        "event_id", "occurred_at", "stored_at", "resource_id", "learner_key", "class_id",
        "school_uai", "arm", "verb", "object_id", "score")))


@pytest.mark.parametrize("backend", [
    "sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_existing_imports_stay_outcomes_and_the_rest_is_usage(
        backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    settings = _settings(backend, make_settings, request)
    registry = registry_engine(settings)
    protocol = load_protocol(PROTOCOL)
    register_protocol(registry, protocol, PROTOCOL.read_text())
    design, _ = enrollment_design(registry, EXPERIMENT)
    rows = "".join(f"c{i},{uai(f'078000{i // 2}')},CP,20,versailles,REP\n" for i in range(4))
    enroll_classes(registry, design, read_classes(HEADER + rows, design,
                                                  today=date(2027, 9, 1)), actor="test")
    official = tmp_path / "official.csv"
    with official.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["learner_id", "unit_id", "measure", "wave", "score"])
        writer.writerows([f"gar-{c}-{p}", f"c{c}", "fluence", wave, 40 + p]
                         for c in range(4) for p in range(3)
                         for wave in ("baseline", "endline"))
    assert import_outcomes(settings, registry, protocol, official).stored == 24

    store = ExperimentStore(settings, EXPERIMENT)
    _alembic(store.engine, "downgrade", "store_0001")  # as the store was before
    now = datetime.now(UTC)
    with store.engine.begin() as connection:
        learner = connection.execute(sa.select(_OLD_EVENTS.c.learner_key).limit(1)).scalar_one()
        forged = [{
            "event_id": event_id, "occurred_at": datetime(2028, 6, 1, 8, tzinfo=UTC),
            "stored_at": now, "resource_id": "lectio", "learner_key": learner,
            "class_id": "c0", "school_uai": "0780000B", "arm": "lectio",
            "verb": "assessment_scored", "object_id": "fluence", "score": 99.0,
        } for event_id in (
            str(uuid.uuid4()),
            # the derivation of another experiment: not this store's import
            str(uuid.uuid5(uuid.UUID("5f1d7c56-6a55-4c8e-9a57-0d3c2b7e4a10"),
                           f"another-trial/{learner}/fluence/endline")))]
        connection.execute(sa.insert(_OLD_EVENTS), forged)
    _alembic(store.engine, "upgrade", "heads")

    with store.engine.connect() as connection:
        authorities = dict(connection.execute(
            sa.select(sa.text("event_id"), sa.text("authority")).select_from(
                sa.text("events"))).all())
    assert Counter(authorities.values()) == {"import:legacy": 24, None: 2}
    assert all(authorities[f["event_id"]] is None for f in forged)

    files = write_analysis_files(settings, registry, protocol, tmp_path)
    outcome_rows = files.outcomes.read_text(encoding="utf-8").splitlines()[1:]
    assert len(outcome_rows) == 24 and not [r for r in outcome_rows if r.endswith(",99.0")]
    assert files.assessments_as_usage == 2
    again = import_outcomes(settings, registry, protocol, official)
    assert (again.stored, again.corrected, again.already) == (0, 0, 24)
    database.dispose_engines()
