"""Receipts are keyed by (resource_id, event_id): an event id is one resource's
idempotency key, so another resource cannot claim it ahead (its events refused 409) nor
learn from a 409 that it was used; the registry migration keeps existing receipts."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from experiments.access import issue_token
from experiments.database import dispose_engines, registry_engine
from experiments.settings import Settings
from ingest.gateway import create_app
from ingest.receipts import receipts
from tests.conftest import SIMULATED_NOW
from tests.support.events import valid_event

REGISTRY_MIGRATIONS = Path(__file__).resolve().parents[2] / "experiments/migrations/registry"


class _Sent:
    def get(self, timeout: float | None = None) -> None:
        return None


class RecordingProducer:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> Any:
        assert value is not None
        self.values.append(value)
        return _Sent()

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    yield Settings(state_dir=tmp_path, simulated_now=SIMULATED_NOW)  # events of 2027-2028
    dispose_engines()


def _post(app: Any, key: str, event: dict[str, object]) -> httpx.Response:
    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gateway") as client:
            return await client.post("/v1/events", json=event, headers={"X-API-Key": key})

    return anyio.run(post)


def test_two_resources_may_use_one_event_id(settings: Settings) -> None:
    engine = registry_engine(settings)
    lectio, other = (issue_token(engine, "edtech", r) for r in ("lectio", "calculo"))
    producer = RecordingProducer()
    app = create_app(settings, producer=producer, engine=engine)
    first = valid_event(random.Random(7), "c1", resource_id="lectio")
    squat = {**valid_event(random.Random(8), "c2", resource_id="calculo"),
             "event_id": first["event_id"]}
    assert _post(app, other, squat).status_code == 202
    answer = _post(app, lectio, first)
    assert answer.status_code == 202, answer.text
    assert answer.json()["duplicates"] == 0, "another resource's receipt counted"
    assert _post(app, lectio, first).json()["duplicates"] == 1
    assert [json.loads(v)["resource_id"] for v in producer.values] == ["calculo", "lectio"]
    with engine.connect() as connection:
        rows = connection.execute(sa.select(receipts.c.resource_id, receipts.c.event_id)).all()
    assert sorted(rows) == [("calculo", first["event_id"]), ("lectio", first["event_id"])]


def test_the_migration_keeps_the_receipts_of_the_previous_layout(settings: Settings) -> None:
    engine = sa.create_engine(f"sqlite:///{settings.state_dir / 'old.sqlite'}")
    config = Config()
    config.set_main_option("script_location", str(REGISTRY_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "gateway_0001")
        connection.execute(sa.text(
            "INSERT INTO gateway_receipts VALUES ('e1', 'd', 'lectio', 'confirmed', "
            "'2028-01-01 00:00:00')"))
        command.upgrade(config, "heads")
    inspector = sa.inspect(engine)
    assert inspector.get_pk_constraint("gateway_receipts")["constrained_columns"] == [
        "resource_id", "event_id"]
    with engine.connect() as connection:
        assert connection.execute(sa.text(
            "SELECT resource_id, event_id, state FROM gateway_receipts")).all() == [
            ("lectio", "e1", "confirmed")]


def test_every_registry_revision_fits_alembic_version() -> None:
    # alembic_version.version_num is VARCHAR(32) on PostgreSQL: a longer id fails there only.
    for path in (REGISTRY_MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision = text.split('\nrevision = "', 1)[1].split('"', 1)[0]
        assert len(revision) <= 32, (path.name, revision)
