"""Who may do what on Kafka: the ACLs of each principal, and an EdTech's credentials.

The brokers run the StandardAuthorizer with ``allow.everyone.if.no.acl.found=false``:
a principal can do exactly what is granted here and nothing else (the admin is a super
user). Each service gets only what its code does (see :mod:`ingest.kafka.clients` for the
list of principals); an EdTech producing directly may write its own topic
``preuve.events.<resource>`` and nothing else, with a *literal* binding: a prefixed one on
``preuve.events.lectio`` would also cover the topic of a resource named ``lectio-maths``.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from experiments.settings import Settings
from ingest.errors import BrokerError
from ingest.kafka import clients
from ingest.kafka.topics import TopicSpec, resource_topic, resource_topic_spec, topic_specs

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

__all__ = ["EdtechCredentials", "Grant", "add_edtech", "edtech_grants", "ensure_topics",
           "grant_service_acls", "service_grants", "write_secret"]

logger = logging.getLogger(__name__)

Operation = Literal["READ", "WRITE", "DESCRIBE"]


@dataclass(frozen=True)
class Grant:
    """One ACL binding: ``principal`` may ``operation`` on a topic or group."""

    principal: str
    resource: Literal["TOPIC", "GROUP"]
    name: str
    operation: Operation
    prefixed: bool = False


def _topic(principal: str, name: str, *operations: Operation, prefixed: bool = False
           ) -> list[Grant]:
    return [Grant(principal, "TOPIC", name, op, prefixed) for op in operations]


def service_grants(settings: Settings) -> list[Grant]:
    """Every service's ACLs, for the topic and group names of ``settings``."""
    topics = settings.topics
    return [
        *_topic(clients.GATEWAY, topics.events, "WRITE", "DESCRIBE"),
        # The worker reads preuve.events and every resource's preuve.events.<resource>.
        *_topic(clients.WORKER, topics.events, "READ", "DESCRIBE"),
        *_topic(clients.WORKER, topics.events + ".", "READ", "DESCRIBE", prefixed=True),
        *_topic(clients.WORKER, topics.deadletter, "WRITE", "DESCRIBE"),
        *_topic(clients.WORKER, topics.enrollments, "READ", "DESCRIBE"),
        Grant(clients.WORKER, "GROUP", settings.worker.group_id, "READ"),
        *_topic(clients.ENROLLMENT, topics.enrollments, "WRITE", "DESCRIBE"),
        *_topic(clients.SCHEDULER, topics.analysis_requests, "WRITE", "DESCRIBE"),
        *_topic(clients.ANALYSIS, topics.analysis_requests, "READ", "DESCRIBE"),
        Grant(clients.ANALYSIS, "GROUP", settings.scheduler.worker_group_id, "READ"),
        # The run's watermark: the stream workers' committed offsets on preuve.events.
        *_topic(clients.ANALYSIS, topics.events, "DESCRIBE"),
        Grant(clients.ANALYSIS, "GROUP", settings.worker.group_id, "DESCRIBE"),
    ]


def edtech_grants(settings: Settings, resource_id: str) -> list[Grant]:
    """An EdTech's ACLs: write (and describe) its own topic, nothing else."""
    return _topic(clients.edtech_principal(resource_id), resource_topic(settings, resource_id),
                  "WRITE", "DESCRIBE")


def _create(admin: KafkaAdminClient, grants: list[Grant]) -> None:
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    acls = [
        ACL(principal=f"User:{grant.principal}", host="*",
            operation=ACLOperation[grant.operation], permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                ResourceType[grant.resource], grant.name,
                ACLResourcePatternType.PREFIXED if grant.prefixed
                else ACLResourcePatternType.LITERAL))
        for grant in grants
    ]
    result = admin.create_acls(acls)
    failed = result.get("failed", []) if isinstance(result, dict) else []
    if failed:
        raise BrokerError(f"Kafka refused ACLs: {failed}")
    _wait_until_visible(admin, acls)


def _binding(acl: Any) -> tuple[Any, ...]:
    pattern = acl.resource_pattern
    return (acl.principal, int(acl.operation), int(pattern.resource_type),
            pattern.resource_name, int(pattern.pattern_type))


def _wait_until_visible(admin: KafkaAdminClient, acls: list[Any], timeout_s: float = 15.0
                        ) -> None:
    """Wait until the broker's authorizer holds the new bindings: they reach it through
    the metadata log a moment after CreateAcls returns, and a client that writes at once
    would be refused (TopicAuthorizationFailedError is not retried)."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    every = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                      permission_type=ACLPermissionType.ANY,
                      resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                             ACLResourcePatternType.ANY))
    wanted = {_binding(acl) for acl in acls}
    deadline = time.monotonic() + timeout_s
    while True:
        found, _error = admin.describe_acls(every)
        if wanted <= {_binding(acl) for acl in found}:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"the broker did not apply {len(wanted)} new ACLs within "
                              f"{timeout_s:.0f}s")
        time.sleep(0.1)


def grant_service_acls(settings: Settings, admin: KafkaAdminClient) -> None:
    """Grant the services their ACLs (creating an existing binding is a no-op)."""
    from kafka.errors import ClusterAuthorizationFailedError, SecurityDisabledError

    try:
        _create(admin, service_grants(settings))
    except (ClusterAuthorizationFailedError, SecurityDisabledError) as exc:
        logger.warning("ACLs not granted (%s): grant them with `preuve kafka setup`",
                       type(exc).__name__)


def write_secret(path: Path, text: str) -> None:
    """Write a secret readable by its owner only (0600 from its creation on)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


@dataclass(frozen=True)
class EdtechCredentials:
    """What an EdTech needs to produce directly: its user, password and topic."""

    resource_id: str
    user: str
    password: str
    topic: str
    password_file: Path


def add_edtech(settings: Settings, resource_id: str) -> EdtechCredentials:
    """Create (or renew) an EdTech's SCRAM user, its topic and its ACLs.

    The password is new at each call (a renewal invalidates the old one); it is written to
    ``<secrets_dir>/edtech-<resource>.password`` (0600) for ``preuve events send
    --resource`` on this machine, and returned to be handed over.
    """
    from kafka.admin import UserScramCredentialUpsertion


    if not settings.kafka.security.protocol.startswith("SASL_"):
        raise BrokerError("kafka.security.protocol is not SASL: there are no users to create")
    topic = resource_topic(settings, resource_id)
    user = clients.edtech_principal(resource_id)
    password = secrets.token_urlsafe(24)
    ensure_topics(settings, [resource_topic_spec(settings, resource_id)])
    admin = clients.admin(settings)
    try:
        errors = admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(user, settings.kafka.security.mechanism, password)
        ])
        if errors.get(user):
            raise BrokerError(f"Kafka refused the SCRAM user {user}: {errors[user]}")
        _create(admin, edtech_grants(settings, resource_id))
    finally:
        admin.close()
    path = clients.password_file(settings, user)
    write_secret(path, password)
    logger.info("EdTech %s: user %s may write %s", resource_id, user, topic)
    return EdtechCredentials(resource_id, user, password, topic, path)


def ensure_topics(settings: Settings, specs: Sequence[TopicSpec] | None = None) -> None:
    """Create the topics that do not exist yet and grant the services their ACLs.

    Runs as the admin principal (:func:`ingest.kafka.clients.admin`): on the local broker
    its credentials are in the secrets directory, on an existing cluster an operator runs
    ``preuve kafka setup`` with them once. A process whose user may not create topics
    logs what is missing and carries on: its clients then say which topic they lack.
    """
    from kafka.admin import NewTopic
    from kafka.errors import (
        ClusterAuthorizationFailedError,
        TopicAlreadyExistsError,
        TopicAuthorizationFailedError,
    )

    from ingest.kafka import clients

    wanted = list(specs) if specs is not None else topic_specs(settings)
    if not clients.has_credentials(settings, clients.ADMIN):
        logger.info("no Kafka admin credentials here: topics are not created by this process")
        return
    admin = clients.admin(settings)
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in wanted if spec.name not in existing]
        if missing:
            try:
                admin.create_topics([
                    NewTopic(spec.name, spec.partitions, 1, topic_configs=dict(spec.config))
                    for spec in missing
                ])
                logger.info("created topics %s", ", ".join(spec.name for spec in missing))
            except TopicAlreadyExistsError:
                pass  # another process created them in between: what we wanted
            except (ClusterAuthorizationFailedError, TopicAuthorizationFailedError):
                logger.warning(
                    "Kafka user %s may not create topics %s: an operator creates them with "
                    "`preuve kafka setup`", clients.user_of(settings, clients.ADMIN),
                    ", ".join(spec.name for spec in missing))
                return
        if specs is None and settings.kafka.security.protocol.startswith("SASL_"):
            grant_service_acls(settings, admin)
    finally:
        admin.close()
