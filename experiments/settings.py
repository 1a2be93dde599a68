"""All of Preuve's configuration, in one place.

Every field reads from an environment variable prefixed with ``PREUVE_`` (nested groups
use ``__``, e.g. ``PREUVE_KAFKA__PARTITIONS``). Nothing else in the code base reads
``os.environ``; entry points build one :class:`Settings` at start-up and pass it down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "GatewaySettings",
    "KafkaSettings",
    "PortalSettings",
    "SchedulerSettings",
    "Settings",
    "TopicNames",
    "WorkerSettings",
]


def _xdg(var: str, fallback: str) -> Path:
    # XDG base directories: caches (jars, pip) and state (broker data, stores) stay out of the repo.
    return Path(os.environ.get(var) or Path.home() / fallback) / "preuve"


class TopicNames(BaseModel):
    events: str = Field(
        "preuve.events", description="Ingress topic of usage events, keyed by class_id."
    )
    deadletter: str = Field(
        "preuve.events.deadletter", description="Refused events with the reason and original bytes."
    )
    enrollments: str = Field(
        "preuve.enrollments",
        description="Enrollment records, keyed by class_id/resource_id, compacted "
        "(feeds the router).",
    )
    analysis_requests: str = Field(
        "preuve.analysis.requests", description="Due analysis runs published by the scheduler."
    )


class KafkaSettings(BaseModel):
    version: str = Field("4.3.1", description="Apache Kafka release run by `preuve kafka up`.")
    port: int = Field(0, description="Broker port for `preuve kafka up`; 0 picks a free port.")
    partitions: int = Field(4, description="Partitions of preuve.events and preuve.enrollments.")
    heap: str = Field("1g", description="Maximum JVM heap of the local broker.")
    ingress_retention_days: int = Field(
        30,
        description="Retention of preuve.events and the dead-letter topic, which hold what "
        "resources sent before pseudonymisation.",
    )


class WorkerSettings(BaseModel):
    group_id: str = Field(
        "preuve-router",
        description="Consumer group of the stream workers (they share the partitions "
        "of preuve.events).",
    )
    batch_size: int = Field(
        2000, description="Events fetched and written to a store in one transaction, at most."
    )
    batch_seconds: float = Field(0.5, description="Longest wait before a partial batch is written.")
    session_timeout_s: float = Field(
        10.0,
        description="Consumer-group session timeout: how fast a dead worker's partitions move.",
    )
    replay_interval_s: float = Field(
        1.0, description="How often parked events of newly enrolled classes are replayed."
    )


class GatewaySettings(BaseModel):
    host: str = Field("127.0.0.1", description="Interface `preuve gateway` listens on.")
    port: int = Field(8700, description="Port `preuve gateway` listens on.")
    max_batch_items: int = Field(
        1000, ge=1, description="Events (or xAPI statements) in one request, at most (else 413)."
    )
    max_batch_bytes: int = Field(
        1_048_576, ge=1024, description="Size of one request body in bytes, at most (else 413)."
    )
    kafka_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest wait for Kafka to durably write a batch before answering 503.",
    )
    retry_after_s: int = Field(
        5, ge=1, description="Seconds in the Retry-After header of a 503 answer."
    )
    receipt_retention_days: int = Field(
        30,
        ge=1,
        description="How long the gateway remembers an accepted event_id to answer re-sends "
        "without a second copy (the stream worker de-duplicates beyond that).",
    )
    xapi_contexts: Path | None = Field(
        None,
        description="YAML file of per-resource xAPI context mappings: where each resource's "
        "statements carry the class and the school (format: docs/xapi-mapping.md).",
    )


class SchedulerSettings(BaseModel):
    poll_interval_s: float = Field(
        60.0, gt=0, description="Seconds between two looks of `preuve scheduler` at the schedules."
    )
    catch_up: Literal["latest", "all"] = Field(
        "latest",
        description="Runs of a repeated schedule entry (every: week...) missed while the "
        "scheduler was down: publish only the latest and record the others as skipped, or "
        "publish them all. One-off runs (at: DATE) are always caught up.",
    )
    republish_after_s: float = Field(
        60.0,
        gt=0,
        description="A claimed run still unpublished after this long (its scheduler died "
        "between the claim and Kafka's ack) is published again; workers ignore copies.",
    )
    request_partitions: int = Field(
        4, ge=1, description="Partitions of preuve.analysis.requests when the scheduler creates it."
    )
    purge_expired: bool = Field(
        True,
        description="At each look, purge the row-level data of every experiment whose "
        "protocol's retention.keep_until has passed (as `preuve purge` does; audited as "
        "the scheduler). Off, expired data stays until someone runs `preuve purge`.",
    )
    worker_group_id: str = Field(
        "preuve-analysis", description="Consumer group of the analysis workers."
    )
    max_run_s: float = Field(
        1800.0,
        gt=0,
        description="Longest analysis run before Kafka gives its request to another worker.",
    )


class PortalSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Interface `preuve serve` listens on.")
    port: int = Field(8702, description="Port `preuve serve` listens on.")
    session_ttl_s: int = Field(
        8 * 3600, ge=60, description="A portal session ends this long after sign-in."
    )
    secure_cookies: bool = Field(
        False,
        description="Send the portal's cookies over HTTPS only (set it behind a TLS proxy).",
    )


class Settings(BaseSettings):
    """Preuve settings. Build once at start-up; tests build it explicitly."""

    model_config = SettingsConfigDict(
        env_prefix="PREUVE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    state_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state"),
        description="Broker data, SQLite stores, reports and logs.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"),
        description="Downloaded artifacts (Kafka jars, Maven repository).",
    )
    kafka_bootstrap: str | None = Field(
        None,
        description="An existing Kafka cluster (host:port,...). Unset: the local broker of "
        "`preuve kafka up`.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. Unset: SQLite files under state_dir. A postgresql:// URL: "
        "one schema for the registry and one per experiment.",
    )
    pseudonym_key: SecretStr | None = Field(
        None,
        description="HMAC key that re-keys learner ids per experiment. Unset: a random key is "
        "created once in state_dir/pseudonym.key (mode 0600).",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicNames = Field(default_factory=TopicNames)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    portal: PortalSettings = Field(default_factory=PortalSettings)
    log_level: str = Field("INFO", description="Log level of the long-running services.")
    programmes: list[str] = Field(
        default_factory=list,
        description="Programme names a protocol may give besides TNE, eFRAN, P2IA, "
        "France 2030 and autre (JSON list).",
    )

    @property
    def programme_names(self) -> tuple[str, ...]:
        """The built-in programmes, then the configured ones."""
        from experiments.protocol.vocabulary import PROGRAMMES

        return (*PROGRAMMES, *(p for p in self.programmes if p not in PROGRAMMES))
