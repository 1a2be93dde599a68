"""docker-compose.yml, parsed (no Docker engine here to run it): only commands that exist,
Docker secrets and no default password, one database role per service, no key nor admin
URL for the portal and JupyterLab, unprivileged containers, TLS and HSTS in front."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from experiments.cli.app import app

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
SERVICES = YAML(typ="safe").load(COMPOSE.read_text())["services"]
PREUVE_COMMANDS = {
    name: spec["command"] for name, spec in SERVICES.items()
    if spec.get("command") and spec["command"][0] == "preuve"
}


def test_the_stack_has_every_service_of_the_design() -> None:
    expected = {"kafka", "postgres", "worker", "gateway", "scheduler", "portal", "jupyterlab"}
    assert expected <= set(SERVICES)
    assert all(
        port.startswith("127.0.0.1:")
        for spec in SERVICES.values() for port in spec.get("ports", [])
    ), "published ports bind 127.0.0.1 only"


@pytest.mark.parametrize("service", sorted(PREUVE_COMMANDS))
def test_each_preuve_command_and_its_options_exist(service: str) -> None:
    command = PREUVE_COMMANDS[service][1:]
    first_option = next((i for i, w in enumerate(command) if w.startswith("-")), len(command))
    subcommand = command[:first_option]  # `db roles` as well as `gateway`
    result = CliRunner().invoke(app, [*subcommand, "--help"])
    assert result.exit_code == 0, f"{service}: `preuve {' '.join(subcommand)}` does not exist"
    for option in (w for w in command if w.startswith("--")):
        assert option in result.output, f"{service}: option {option} unknown to preuve {subcommand}"


def _secrets(service: str) -> dict[str, str]:
    """The Docker secrets a service mounts: target name → source."""
    out = {}
    for entry in SERVICES[service].get("secrets", []):
        source = entry if isinstance(entry, str) else entry["source"]
        target = source if isinstance(entry, str) else entry.get("target", source)
        out[target] = source
    return out


def _environment(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def test_secrets_are_docker_secrets_never_defaults_nor_plain_text() -> None:
    text = COMPOSE.read_text()
    assert "preuve:preuve@" not in text and "POSTGRES_PASSWORD:" not in text
    declared = YAML(typ="safe").load(text)["secrets"]
    assert all(set(spec) == {"file"} and spec["file"].startswith("./secrets/")
               for spec in declared.values()), declared
    for name in SERVICES:
        for variable, value in _environment(name).items():
            assert "://" not in value or "@" not in value, f"{name}: a URL with credentials"
            secret = any(word in variable for word in ("PASSWORD", "KEY", "DATABASE_URL"))
            if secret and variable.startswith(("PREUVE_", "POSTGRES_")):
                assert variable.endswith("_FILE") and value.startswith("/run/secrets/"), (
                    f"{name}: {variable} is given in plain text, not as a Docker secret")
        for source in _secrets(name).values():
            assert source in declared, f"{name}: secret {source} is not declared"
    assert _environment("postgres")["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    script = (COMPOSE.parent / "tools" / "compose-secrets.sh").read_text()
    (loop,) = [line for line in script.splitlines() if line.startswith("for role in ")]
    made = {*re.findall(r"^new (\w+) ", script, re.MULTILINE),
            *(f"db_{role}_{kind}" for role in loop.split(" in ")[1].split(";")[0].split()
              for kind in ("password", "url"))}
    assert made == {spec["file"].removeprefix("./secrets/") for spec in declared.values()}
    assert "openssl rand" in script and "chmod 0700 secrets" in script
    assert "/secrets/" in (COMPOSE.parent / ".gitignore").read_text()


def test_one_database_role_per_service() -> None:
    roles = {name: _secrets(name).get("database_url") for name in SERVICES}
    assert roles["db-roles"] == "db_admin_url"  # the superuser: creating roles, nothing else
    assert roles["db-migrate"] == "db_owner_url"
    assert roles["worker"] == "db_worker_url"
    assert roles["gateway"] == "db_gateway_url"
    assert roles["analysis-worker"] == "db_analysis_url"
    assert roles["portal"] == "db_portal_url"
    assert roles["jupyterlab"] == "db_reader_url"
    assert [n for n, r in roles.items() if r == "db_admin_url"] == ["db-roles"]
    assert {n for n, r in roles.items() if r == "db_owner_url"} == {"db-migrate", "scheduler"}
    for name in ("gateway", "analysis-worker", "portal", "jupyterlab"):
        assert _environment(name).get("PREUVE_DATABASE_MIGRATE") == "false", name
    for name in ("worker", "gateway", "scheduler", "analysis-worker", "portal"):
        assert SERVICES[name]["depends_on"]["db-migrate"]["condition"] == (
            "service_completed_successfully"), name
    passwords = {t.removesuffix(".password") for t in _secrets("db-roles") if
                 t.endswith(".password")}
    from experiments.database_roles import OWNER, ROLES

    assert passwords == {OWNER, *(r.name for r in ROLES)}


def test_the_key_and_the_admin_urls_reach_only_the_services_that_need_them() -> None:
    for name in ("portal", "jupyterlab", "proxy", "postgres"):
        environment = _environment(name)
        assert not any("PSEUDONYM" in v for v in environment), f"{name} holds the key"
        assert "pseudonym_key" not in _secrets(name).values(), f"{name} holds the key"
        assert not {"db_admin_url", "db_owner_url"} & set(_secrets(name).values()), name
    for name in ("worker", "gateway", "scheduler", "analysis-worker"):
        assert _environment(name)["PREUVE_PSEUDONYM_KEY_FILE"] == "/run/secrets/pseudonym_key"
        assert "pseudonym_key" in _secrets(name).values(), name
    holders = {n for n in SERVICES if "pseudonym_key" in _secrets(n).values()}
    assert holders == {"worker", "gateway", "scheduler", "analysis-worker"}


def test_the_portal_is_behind_tls_with_secure_cookies_and_hsts() -> None:
    portal = SERVICES["portal"]
    assert not portal.get("ports"), "the portal is published through the TLS proxy only"
    assert portal["environment"]["PREUVE_PORTAL__SECURE_COOKIES"] == "true"
    proxy = SERVICES["proxy"]
    assert proxy["image"].split(":")[0] == "caddy"
    assert any("Strict-Transport-Security: max-age=" in word for word in proxy["command"])
    assert "https://" in " ".join(proxy["command"])


def test_kafka_is_sasl_ssl_as_locally() -> None:
    environment = _environment("kafka")
    assert environment["KAFKA_LISTENERS"].startswith("SASL_SSL://")
    assert "PLAINTEXT" not in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert environment["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert environment["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"


#: Official images that already run as an unprivileged user (their Dockerfile's USER).
NON_ROOT_IMAGES = {"apache/kafka"}


def test_every_container_runs_unprivileged() -> None:
    for name, spec in SERVICES.items():
        user = str(spec.get("user", ""))
        if "build" in spec:  # our image: its Dockerfile's USER (the next test)
            assert user in ("", "preuve") or not user.startswith("0"), name
            continue
        image = spec["image"].split(":")[0]
        assert (user and user.split(":")[0] not in ("root", "0")) or image in NON_ROOT_IMAGES, (
            f"{name}: runs as root")


def test_the_image_runs_as_an_unprivileged_user() -> None:
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    assert "--allow-root" not in COMPOSE.read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
