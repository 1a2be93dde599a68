"""No raw learner id and no direct identifier anywhere Preuve keeps data, after a real
run (gateway → Kafka → worker → store, with an enrollment published to Kafka), except in
the ingress and dead-letter topics, whose retention is bounded, configured and
documented; and after a purge, nothing row-level of the experiment is left."""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from experiments.access import issue_token
from experiments.database import registry_engine
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.publishing import kafka_publisher
from experiments.enrollment.transaction import enroll_classes
from experiments.privacy.retention import purge_experiment, store_exists
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol
from experiments.settings import Settings
from experiments.store import ExperimentStore
from ingest.gateway import create_app
from ingest.kafka import clients
from ingest.kafka.access import ensure_topics
from ingest.kafka.principals import ADMIN
from ingest.kafka.producer import enrollment_key, send_raw_events
from ingest.receipts import receipts
from tests.conftest import SettingsFactory
from tests.support.events import valid_event
from tests.support.gateway_client import AppClient
from tests.support.postgres import wait_until
from tests.support.trial import EXPERIMENT, HEADER, PROTOCOL, every_row_text
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"
CLASSES = [f"cls-{i:02d}" for i in range(6)]
#: The classes' school: their events carry it (another school's events are dead letters).
SCHOOL = "0781234T"
# Direct identifiers a careless resource might send; each must be refused or dead-lettered.
IDENTIFIERS = ("camille.martin@example.fr", "Camille Martin", "06 12 34 56 78")


def _dump_topics(settings: Settings, tag: str) -> dict[str, str]:
    """Every record (key, value, headers) of every topic of this test, as text."""
    admin = clients.admin(settings, client_id="leaks")
    try:
        topics = sorted(t for t in admin.list_topics() if tag in t)
    finally:
        admin.close()
    dumps: dict[str, str] = {}
    for topic in topics:
        consumer = clients.consumer(settings, ADMIN, topic, group_id=None,
                                    consumer_timeout_ms=3000)
        try:
            parts = [repr((m.key, m.value, m.headers)) for m in consumer]
        finally:
            consumer.close()
        dumps[topic] = "\n".join(parts)
    return dumps


def _latest_values(settings: Settings, topic: str) -> dict[bytes, bytes | None]:
    """The last value of each key of ``topic``, read from the beginning."""
    consumer = clients.consumer(settings, ADMIN, topic, group_id=None, consumer_timeout_ms=3000)
    try:
        return {m.key: m.value for m in consumer}
    finally:
        consumer.close()


def _retention_ms(settings: Settings, topic: str) -> int:
    admin = clients.admin(settings, client_id="leaks")
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=None)])
    finally:
        admin.close()
    text = repr(described)
    assert "retention.ms" in text, text[:500]
    configs = described["topic"][topic] if isinstance(described, dict) else None
    assert configs is not None, text[:500]
    entry = configs["retention.ms"]
    return int(entry["value"] if isinstance(entry, dict) else entry)


def test_no_raw_id_outside_the_bounded_ingress_topics_and_nothing_after_a_purge(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(kafka=True)
    tag = settings.topics.events.split(".")[0]
    ensure_topics(settings)
    registry = registry_engine(settings)
    protocol = load_protocol(PROTOCOL)
    register_protocol(registry, protocol, PROTOCOL.read_text(), actor="researcher:test")
    design = EnrollmentDesign.from_protocol(protocol)
    rows = "".join(f"{c},{SCHOOL},CP,25,versailles,REP\n" for c in CLASSES)
    outcome = enroll_classes(registry, design, read_classes(HEADER + rows, design),
                             actor="academie:versailles:test", publish=kafka_publisher(settings))
    assert outcome.pending == 0, outcome.publish_error
    key = issue_token(registry, "edtech", "lectio", label="leaks")

    log_file = tmp_path / "gateway.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    rng = random.Random(5)
    accepted: set[str] = set()
    raw_ids: set[str] = set()
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        with AppClient(create_app(settings)) as client:
            auth = {"Authorization": f"Bearer {key}"}
            for _ in range(20):
                batch = [valid_event(rng, rng.choice(CLASSES), school_uai=SCHOOL)
                         for _ in range(15)]
                answer = client.post("/v1/events", json=batch, headers=auth)
                assert answer.status_code == 202, answer.text
                accepted.update(str(e["event_id"]) for e in batch)
                raw_ids.update(str(e["learner_id"]) for e in batch)
            # Direct identifiers through the gateway: refused, never written.
            for bad in ({"learner_id": IDENTIFIERS[0]}, {"name": IDENTIFIERS[1]},
                        {"extensions": {"teacher_phone": IDENTIFIERS[2]}}):
                event = {**valid_event(rng, CLASSES[0], school_uai=SCHOOL), **bad}
                answer = client.post("/v1/events", json=[event], headers=auth)
                assert answer.status_code == 422, answer.text
        # The same straight to Kafka (a resource using the producer path): dead-lettered.
        bad_lines = [json.dumps({**valid_event(rng, CLASSES[1], school_uai=SCHOOL), **bad})
                     .encode() for bad in
                     ({"learner_id": IDENTIFIERS[0]}, {"name": IDENTIFIERS[1]},
                      {"extensions": {"teacher_phone": IDENTIFIERS[2]}})]
        send_raw_events(settings, bad_lines)
        store = ExperimentStore(settings, EXPERIMENT)
        assert wait_until(lambda: store.event_ids() >= accepted, 120), "events not stored"
        time.sleep(2.0)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()
        assert worker.stop() == 0
    assert store.event_ids() == accepted

    dumps = _dump_topics(settings, tag)
    ingress = {settings.topics.events, settings.topics.deadletter}
    assert set(dumps) >= ingress | {settings.topics.enrollments}
    places = {f"topic {t}": text for t, text in dumps.items() if t not in ingress}
    places["registry and store"] = every_row_text(settings, [registry, store.engine])
    for log in (tmp_path / "worker.log", log_file):
        places[f"log {log.name}"] = log.read_text(errors="replace")
    sqlite_bytes = "".join(p.read_bytes().decode("latin-1")
                           for p in settings.state_dir.rglob("*.sqlite*"))
    places["SQLite files"] = sqlite_bytes
    needles = sorted(raw_ids) + list(IDENTIFIERS)
    leaks = {where: [n for n in needles if n in text] for where, text in places.items()}
    assert {w: n for w, n in leaks.items() if n} == {}, "raw ids or identifiers leaked"
    # The exception: what the resource sent, for a bounded, configured, documented time.
    assert any(raw in dumps[settings.topics.events] for raw in raw_ids)
    assert IDENTIFIERS[0] in dumps[settings.topics.deadletter]
    bound = settings.kafka.ingress_retention_days * 24 * 3600 * 1000
    for topic in sorted(ingress):
        assert 0 < _retention_ms(settings, topic) <= bound, topic
    kafka_section = README.read_text().split("## Kafka", 1)[1].split("\n## ", 1)[0]
    assert "retention" in kafka_section and "INGRESS_RETENTION_DAYS" in kafka_section

    purged = purge_experiment(settings, EXPERIMENT, actor="admin:*:test", force=True,
                              reason="leak test")
    assert not store_exists(settings, EXPERIMENT)
    # The enrollments leave the compacted topic too: the last record of each is a tombstone.
    assert purged.removed["enrollment_tombstones"] == len(CLASSES)
    latest = _latest_values(settings, settings.topics.enrollments)
    assert {c: latest[enrollment_key(c, "lectio")] for c in CLASSES} == dict.fromkeys(CLASSES)
    from ingest.pseudonym import load_pseudonym_key, pseudonymise

    secret = load_pseudonym_key(settings)
    keys = {pseudonymise(secret, EXPERIMENT, raw) for raw in raw_ids}
    after = every_row_text(settings, [registry]) + "".join(
        p.read_bytes().decode("latin-1") for p in settings.state_dir.rglob("*.sqlite*"))
    assert not [k for k in keys if k in after], "a pseudonym survived the purge"
    assert not [e for e in accepted if e in after], "an event id survived the purge"
    with registry.connect() as connection:
        assert connection.execute(receipts.select()).first() is None
