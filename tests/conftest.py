"""Fixtures shared by every test: real PostgreSQL and real Kafka, started and stopped here.

Both are session-scoped (a broker costs ~20 s to start, a cluster ~2 s); tests isolate
themselves with their own database, topic names, consumer group and state directory.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from experiments.database import dispose_engines
from experiments.settings import (
    KafkaSecurity,
    KafkaSettings,
    Settings,
    TopicNames,
    WorkerSettings,
)
from ingest.kafka.broker import LocalBroker
from ingest.kafka.principals import USERS
from tests.support.postgres import PostgresCluster


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        dispose_engines()
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres_cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    home = tmp_path_factory.mktemp("kafka")
    # Secured as in production: SASL_SSL (SCRAM-SHA-512), ACLs, every service its own user.
    broker = LocalBroker(home, Settings().cache_dir, KafkaSettings().version, partitions=4,
                         users=USERS)
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture(scope="session")
def kafka_settings(kafka_broker: LocalBroker) -> KafkaSettings:
    """Kafka settings whose clients find the test broker's CA and the services' passwords."""
    return KafkaSettings(partitions=4, security=KafkaSecurity(secrets_dir=kafka_broker.secrets_dir))


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalBroker) -> str:
    state = kafka_broker.state()
    assert state is not None, "the test broker died"
    return state.bootstrap


SettingsFactory = Callable[..., Settings]
#: The simulated clock of tests (Settings.simulated_now): after the school year 2027-2028.
SIMULATED_NOW = "2028-08-31T12:00:00+02:00"


@pytest.fixture
def make_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SettingsFactory]:
    """Build Settings for one test: its own state dir, topics and consumer group.

    Kafka is only started when a test asks for it (``kafka=True``).
    """

    def build(
        *, kafka: bool = False, database_url: str | None = None, **overrides: object
    ) -> Settings:
        tag = uuid.uuid4().hex[:8]
        fields: dict[str, object] = {
            "state_dir": tmp_path / f"state-{tag}",
            "database_url": database_url,
            "pseudonym_key": "test-key-" + uuid.uuid4().hex,
            "topics": TopicNames(
                events=f"t{tag}.events",
                deadletter=f"t{tag}.events.deadletter",
                enrollments=f"t{tag}.enrollments",
                analysis_requests=f"t{tag}.analysis.requests",
            ),
            "worker": WorkerSettings(group_id=f"t{tag}-router", batch_size=500, batch_seconds=0.3),
            # The tests simulate the school year 2027-2028: their clock is at its end, so
            # that the gate on future events (ingest/gates.py) sees their events as past.
            "simulated_now": SIMULATED_NOW,
        }
        if kafka:
            broker: LocalBroker = request.getfixturevalue("kafka_broker")
            fields["kafka_bootstrap"] = request.getfixturevalue("kafka_bootstrap")
            # The services find their passwords and the CA where the test broker keeps them.
            fields["kafka"] = KafkaSettings(
                partitions=4, security=KafkaSecurity(secrets_dir=broker.secrets_dir))
        fields.update(overrides)
        return Settings(**fields)  # type: ignore[arg-type]

    yield build
    dispose_engines()
