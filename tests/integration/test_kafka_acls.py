"""The ACL matrix on the real (secured) broker: every principal × topic × operation is
allowed or refused exactly as ``ingest/kafka/access.py`` designs it; anonymous clients,
plain TLS without SASL and a wrong password are refused.

One producer and one consumer per principal; each cell is one real produce (acks=all) or
one real fetch from the beginning of the topic's partition 0.
"""

from __future__ import annotations

import time

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError

from experiments.settings import KafkaSecurity, Settings
from ingest.kafka import clients
from ingest.kafka.access import add_edtech, ensure_topics
from ingest.kafka.broker import LocalBroker, broker_answers
from ingest.kafka.principals import ADMIN, ANALYSIS, ENROLLMENT, GATEWAY, SCHEDULER, WORKER
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.integration

EDTECH = "edtech-lectio"
OTHER_EDTECH = "edtech-lectio-maths"  # a resource id that extends "lectio": a prefix trap
PRINCIPALS = (GATEWAY, WORKER, ENROLLMENT, SCHEDULER, ANALYSIS, EDTECH, OTHER_EDTECH)


def _topics(settings: Settings) -> dict[str, str]:
    t = settings.topics
    return {"events": t.events, "deadletter": t.deadletter, "enrollments": t.enrollments,
            "requests": t.analysis_requests, "events.lectio": f"{t.events}.lectio",
            "events.lectio-maths": f"{t.events}.lectio-maths"}


#: (principal, topic) pairs allowed to write; every other pair must be refused.
WRITES = {
    (GATEWAY, "events"), (WORKER, "deadletter"), (ENROLLMENT, "enrollments"),
    (SCHEDULER, "requests"), (EDTECH, "events.lectio"), (OTHER_EDTECH, "events.lectio-maths"),
}
#: (principal, topic) pairs allowed to read. The worker reads every preuve.events.* topic
#: (a prefixed ACL, which also covers the dead-letter topic it writes).
READS = {
    (WORKER, "events"), (WORKER, "events.lectio"), (WORKER, "events.lectio-maths"),
    (WORKER, "deadletter"), (WORKER, "enrollments"), (ANALYSIS, "requests"),
}


def _can_write(settings: Settings, principal: str, topic: str) -> bool:
    producer = clients.producer(settings, principal, max_block_ms=10_000,
                                delivery_timeout_ms=15_000, request_timeout_ms=10_000)
    try:
        producer.send(topic, key=b"acl", value=b"{}", partition=0).get(timeout=20)
        return True
    except KafkaError:
        return False
    finally:
        producer.close(timeout=5)


def _can_read(settings: Settings, principal: str, topic: str) -> bool:
    """Whether ``principal`` gets the record the admin wrote at the start of ``topic``.

    A refusal shows as an error at the fetch (no READ) or as no data at all (no DESCRIBE:
    kafka-python then only logs that the topic is not authorized), so a read counts only
    when a record actually arrives.
    """
    consumer = clients.consumer(settings, principal, group_id=None, request_timeout_ms=10_000)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            if consumer.poll(timeout_ms=500).get(partition):
                return True
        return False
    except KafkaError:
        return False
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def acl_settings(
    kafka_bootstrap: str, kafka_broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    import uuid

    from experiments.settings import KafkaSettings, TopicNames

    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("acls"), kafka_bootstrap=kafka_bootstrap,
        kafka=KafkaSettings(partitions=1,
                            security=KafkaSecurity(secrets_dir=kafka_broker.secrets_dir)),
        topics=TopicNames(events=f"a{tag}.events", deadletter=f"a{tag}.events.deadletter",
                          enrollments=f"a{tag}.enrollments",
                          analysis_requests=f"a{tag}.analysis.requests"),
    )
    ensure_topics(settings)
    for resource in ("lectio", "lectio-maths"):
        credentials = add_edtech(settings, resource)
        assert credentials.password_file.stat().st_mode & 0o077 == 0
    # Something to read in every topic (as the admin, a super user).
    for topic in _topics(settings).values():
        assert _can_write(settings, ADMIN, topic)
    return settings


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_each_principal_writes_only_its_own_topics(acl_settings: Settings, principal: str
                                                   ) -> None:
    got = {name for name, topic in _topics(acl_settings).items()
           if _can_write(acl_settings, principal, topic)}
    assert got == {name for p, name in WRITES if p == principal}


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_each_principal_reads_only_what_it_consumes(acl_settings: Settings, principal: str
                                                   ) -> None:
    got = {name for name, topic in _topics(acl_settings).items()
           if _can_read(acl_settings, principal, topic)}
    assert got == {name for p, name in READS if p == principal}


def test_a_consumer_group_is_open_only_to_its_service(acl_settings: Settings) -> None:
    def joins(principal: str, group: str) -> bool:
        consumer = clients.consumer(acl_settings, principal, acl_settings.topics.events,
                                    group_id=group, request_timeout_ms=10_000,
                                    session_timeout_ms=6000, heartbeat_interval_ms=1000)
        try:
            consumer.poll(timeout_ms=8000)
            consumer.poll(timeout_ms=1000)
            return bool(consumer.assignment())
        except KafkaError:
            return False
        finally:
            consumer.close()

    assert joins(WORKER, acl_settings.worker.group_id)
    assert not joins(WORKER, "another-group")
    assert not joins(GATEWAY, acl_settings.worker.group_id)
    assert not joins(EDTECH, acl_settings.worker.group_id)


def test_anonymous_plain_tls_and_wrong_passwords_are_refused(
    acl_settings: Settings, kafka_broker: LocalBroker
) -> None:
    bootstrap = acl_settings.kafka_bootstrap
    assert bootstrap is not None
    admin_options = clients.security_options(acl_settings, ADMIN)
    assert broker_answers(bootstrap, timeout_s=5, **admin_options)  # the control
    assert not broker_answers(bootstrap, timeout_s=5)  # PLAINTEXT, no credentials
    tls_only = {"security_protocol": "SSL", "ssl_context": admin_options["ssl_context"]}
    assert not broker_answers(bootstrap, timeout_s=5, **tls_only)
    wrong = {**admin_options, "sasl_plain_password": "not-the-password"}
    assert not broker_answers(bootstrap, timeout_s=5, **wrong)
    unknown = {**admin_options, "sasl_plain_username": "nobody"}
    assert not broker_answers(bootstrap, timeout_s=5, **unknown)


def test_the_secrets_are_the_owners_only(kafka_broker: LocalBroker) -> None:
    directory = kafka_broker.secrets_dir
    assert directory.stat().st_mode & 0o077 == 0
    files = list(directory.iterdir())
    assert {"ca.pem", "ca.key", "broker.pem", "admin.password", "worker.password"} <= {
        f.name for f in files}
    assert all(f.stat().st_mode & 0o077 == 0 for f in files), [
        (f.name, oct(f.stat().st_mode)) for f in files if f.stat().st_mode & 0o077]
    properties = kafka_broker.home / "server.properties"  # holds the admin's password
    assert properties.stat().st_mode & 0o077 == 0


def test_an_edtech_topic_for_a_reserved_name_is_refused(make_settings: SettingsFactory) -> None:
    from ingest.errors import BrokerError
    from ingest.kafka.topics import resource_topic

    settings = make_settings()
    with pytest.raises(BrokerError, match="dead-letter"):
        resource_topic(settings.model_copy(update={"topics": settings.topics.model_copy(
            update={"deadletter": settings.topics.events + ".deadletter"})}), "deadletter")
    with pytest.raises(BrokerError, match="slug"):
        resource_topic(settings, "Lectio.Admin")
