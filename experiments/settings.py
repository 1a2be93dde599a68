"""All of Preuve's configuration, in one place.

Every field reads from an environment variable prefixed with ``PREUVE_`` (nested groups
use ``__``, e.g. ``PREUVE_KAFKA__PARTITIONS``); every secret field also from the file
named by ``<VAR>_FILE`` (Docker secrets, :mod:`experiments.secrets`). Nothing else in
the code base reads ``os.environ``; entry points build one :class:`Settings` at start-up
and pass it down.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = [
    "MIN_KEY_BYTES",
    "GatewaySettings",
    "KafkaSecurity",
    "KafkaSettings",
    "PortalSettings",
    "SchedulerSettings",
    "ServerSettings",
    "Settings",
    "TopicNames",
    "WorkerSettings",
]


#: Shortest pseudonymisation key accepted: 256 bits, the output size of HMAC-SHA256's hash.
MIN_KEY_BYTES = 32


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


class KafkaSecurity(BaseModel):
    protocol: Literal["SASL_SSL", "SSL", "SASL_PLAINTEXT", "PLAINTEXT"] = Field(
        "SASL_SSL",
        description="How clients reach Kafka: SASL_SSL (SCRAM over TLS, the local broker's "
        "and compose's), SSL (client certificates), or an unsecured PLAINTEXT cluster.",
    )
    mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (SASL_SSL, SASL_PLAINTEXT)."
    )
    user: str | None = Field(
        None,
        description="SASL user of this process. Unset: each service uses its own principal "
        "(gateway, worker, enrollment, scheduler, analysis) whose password `preuve kafka up` "
        "wrote in secrets_dir.",
    )
    password: SecretStr | None = Field(None, description="SASL password of `user`.")
    ca_file: Path | None = Field(
        None,
        description="PEM file of the CA that signed the brokers' certificates. Unset: "
        "secrets_dir/ca.pem if it exists, else the system's trusted CAs.",
    )
    cert_file: Path | None = Field(
        None, description="PEM client certificate (clusters that require one)."
    )
    key_file: Path | None = Field(None, description="PEM private key of `cert_file`.")
    check_hostname: bool = Field(
        True, description="Check that the broker's certificate names the host it was reached at."
    )
    secrets_dir: Path | None = Field(
        None,
        description="Where `preuve kafka up` keeps the local CA, the broker's certificate and "
        "the services' SCRAM passwords (mode 0600). Unset: state_dir/kafka/secrets.",
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
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)


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


class ServerSettings(BaseModel):
    """How an HTTP service (gateway, portal) bounds what one client can hold."""

    max_connections: int = Field(
        200, ge=1, description="Connections and requests served at once; beyond, 503 at once "
        "(uvicorn's limit_concurrency).",
    )
    keep_alive_s: int = Field(
        5, ge=1, description="An idle kept-alive connection is closed after this long.",
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Longest time to receive a request body, from its first "
        "read; a slower body is answered 408 (a client dripping bytes holds nothing longer).",
    )
    max_form_bytes: int = Field(
        4096, ge=256, description="Largest form or small JSON body (sign-in, withdrawal), "
        "in bytes; larger is a 413 before routing.",
    )
    max_upload_bytes: int = Field(
        4 * 1_048_576, ge=1024, description="Largest file upload (an enrollment CSV), in "
        "bytes; larger is a 413 before routing.",
    )

    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="Addresses of the reverse proxies whose X-Forwarded-For "
        "names the client (comma-separated, or * inside a closed network): the portal "
        "throttles sign-ins per client address, which behind an untrusted proxy would be "
        "the proxy's for everyone.",
    )

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments of ``uvicorn.run`` for these limits.

        Examples
        --------
        >>> ServerSettings().uvicorn_options()["limit_concurrency"]
        200
        """
        return {"limit_concurrency": self.max_connections,
                "timeout_keep_alive": self.keep_alive_s,
                "h11_max_incomplete_event_size": 16 * 1024,
                "proxy_headers": True,
                "forwarded_allow_ips": self.forwarded_allow_ips}


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
    server: ServerSettings = Field(default_factory=ServerSettings)


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
    sufficiency_lead_days: int = Field(
        7,
        ge=0,
        description="Days before an interim or final analysis falls due at which the "
        "scheduler checks that the data will support it (endline scores per arm, baseline "
        "and usage coverage, the MDES the data now supports) and alerts the researcher; "
        "0 turns the checks off.",
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
    sign_in_failures: int = Field(
        5, ge=1, description="Refused sign-ins from one client address before it must wait "
        "(429) until the window ends.",
    )
    sign_in_window_s: float = Field(
        300.0, gt=0, description="Window of sign_in_failures, in seconds.",
    )
    audit_refusals_per_minute: int = Field(
        60, ge=1, description="Refused sign-ins written to the audit log per minute, at most "
        "(beyond, one warning line counts them): the log cannot be flooded.",
    )
    server: ServerSettings = Field(default_factory=ServerSettings)


class _FileSecrets(PydanticBaseSettingsSource):
    """``<VAR>_FILE`` for every secret field (:func:`experiments.secrets.file_secrets`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ gives the whole mapping

    def __call__(self) -> dict[str, Any]:
        from experiments.secrets import file_secrets

        return file_secrets(self.settings_cls)


class Settings(BaseSettings):
    """Preuve settings. Build once at start-up; tests build it explicitly."""

    model_config = SettingsConfigDict(
        env_prefix="PREUVE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments, then the environment, then ``<VAR>_FILE`` secrets."""
        return (init_settings, env_settings, _FileSecrets(settings_cls), dotenv_settings,
                file_secret_settings)

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
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL. Unset: SQLite files under state_dir. A postgresql:// URL: "
        "one schema for the registry and one per experiment.",
    )
    database_migrate: bool = Field(
        True,
        description="Migrate the registry and the stores on first use (the quick start; the "
        "services that own writes). Off: only check that the schemas are current and say "
        "to run `preuve db migrate` otherwise (roles without DDL rights). The portal never "
        "migrates.",
    )
    pseudonym_key: SecretStr | None = Field(
        None,
        description="HMAC key that re-keys learner ids per experiment, at least 32 bytes "
        "(e.g. `openssl rand -hex 32`). Unset: a random key is created once in "
        "state_dir/pseudonym.key (mode 0600).",
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

    simulated_now: datetime | None = Field(
        None,
        description="A simulated clock (RFC 3339 with offset) for demos and tests of a future "
        "school year: the gates on event dates and the enrollment window compare with it "
        "instead of the system clock. Unset in production; when set, the stream worker logs a "
        "warning at start.",
    )
    school_calendar_file: Path | None = Field(
        None,
        description="A CSV of holidays (zone,name,start,end) added to the official calendar "
        "of zones A, B and C: Corse and the overseas académies (each its own zone, set by its "
        "recteur), or a school year newer than the vacances-scolaires-france package's "
        "(experiments/protocol/calendar.py, SchoolCalendar.with_file).",
    )
    clock_skew_s: float = Field(
        300.0,
        ge=0,
        description="How far in the future an event's occurred_at may be (the sender's clock "
        "running ahead) before the gateway refuses it and the stream worker dead-letters it.",
    )

    @field_validator("simulated_now")
    @classmethod
    def _with_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("simulated_now needs a UTC offset, e.g. 2027-10-01T09:00:00+02:00")
        return value

    def now(self) -> datetime:
        """The current time: ``simulated_now`` when set, else the system clock (UTC)."""
        return self.simulated_now if self.simulated_now is not None else datetime.now(UTC)

    def today(self) -> date:
        """Today's school date (Europe/Paris) by :meth:`now`."""
        from zoneinfo import ZoneInfo

        return self.now().astimezone(ZoneInfo("Europe/Paris")).date()

    def database_dsn(self) -> str | None:
        """The database URL with its password (only the engine builders and the
        processes a command starts read it; ``database_url`` prints as ``**********``)."""
        return None if self.database_url is None else self.database_url.get_secret_value()

    @field_validator("pseudonym_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        # An empty or short key lets anyone who guesses it recompute every pseudonym.
        if key is not None and len(key.get_secret_value().encode()) < MIN_KEY_BYTES:
            raise ValueError(
                f"the pseudonymisation key must have at least {MIN_KEY_BYTES} bytes, got "
                f"{len(key.get_secret_value().encode())} (make one with `openssl rand -hex 32`)"
            )
        return key
