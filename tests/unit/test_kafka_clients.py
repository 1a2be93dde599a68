"""The one module that builds Kafka clients applies the `kafka.security` settings to all of
them: each service's own credentials from the secrets directory, or one explicit user."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from experiments.settings import KafkaSecurity, KafkaSettings, Settings
from ingest.errors import BrokerError
from ingest.kafka import clients
from ingest.kafka.access import service_grants, write_secret
from ingest.kafka.principals import GATEWAY, SERVICES, WORKER


def _settings(tmp_path: Path, **security: object) -> Settings:
    return Settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:9",
                    kafka=KafkaSettings(security=KafkaSecurity(**security)))  # type: ignore[arg-type]


def test_each_service_signs_in_with_its_own_password_from_the_state_directory(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    secrets = tmp_path / "kafka" / "secrets"
    assert clients.secrets_dir(settings) == secrets
    write_secret(secrets / "gateway.password", "gw-secret\n")
    write_secret(secrets / "worker.password", "wk-secret\n")
    gateway = clients.security_options(settings, GATEWAY)
    worker = clients.security_options(settings, WORKER)
    assert (gateway["sasl_plain_username"], gateway["sasl_plain_password"]) == (
        "gateway", "gw-secret")
    assert (worker["sasl_plain_username"], worker["sasl_plain_password"]) == (
        "worker", "wk-secret")
    assert gateway["security_protocol"] == "SASL_SSL"
    assert gateway["sasl_mechanism"] == "SCRAM-SHA-512"
    context = gateway["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert (secrets / "gateway.password").stat().st_mode & 0o077 == 0


def test_a_missing_password_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match=r"'scheduler'.*scheduler\.password.*preuve kafka up"):
        clients.security_options(_settings(tmp_path), "scheduler")
    assert not clients.has_credentials(_settings(tmp_path), "scheduler")


def test_an_explicit_user_is_every_principal_of_the_process(tmp_path: Path) -> None:
    settings = _settings(tmp_path, user="preuve-prod", password="s3cret",
                         mechanism="SCRAM-SHA-256")
    options = clients.security_options(settings, WORKER)
    assert options["sasl_plain_username"] == "preuve-prod"
    assert options["sasl_plain_password"] == "s3cret"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert "s3cret" not in repr(settings)  # a SecretStr
    with pytest.raises(BrokerError, match="PASSWORD"):
        clients.security_options(_settings(tmp_path, user="u"), WORKER)


def test_plaintext_carries_no_credentials(tmp_path: Path) -> None:
    options = clients.security_options(_settings(tmp_path, protocol="PLAINTEXT"), GATEWAY)
    assert options == {"security_protocol": "PLAINTEXT"}


def test_a_child_process_gets_the_same_security_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path, user="u", password="p", ca_file=tmp_path / "ca.pem")
    env = clients.security_env(settings)
    assert env["PREUVE_KAFKA__SECURITY__SECRETS_DIR"] == str(tmp_path / "kafka" / "secrets")
    assert env["PREUVE_KAFKA__SECURITY__CA_FILE"] == str(tmp_path / "ca.pem")
    assert (env["PREUVE_KAFKA__SECURITY__USER"], env["PREUVE_KAFKA__SECURITY__PASSWORD"]) == (
        "u", "p")


def test_every_service_has_grants_and_only_the_worker_reads_a_prefix(tmp_path: Path) -> None:
    grants = service_grants(_settings(tmp_path))
    assert {g.principal for g in grants} == set(SERVICES)
    assert [g for g in grants if g.prefixed] == [
        g for g in grants if g.principal == WORKER and g.prefixed]
    assert all(g.operation != "WRITE" or not g.prefixed for g in grants)
