"""docker-compose.yml only runs commands that exist (no Docker engine here to run it)."""

from __future__ import annotations

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
    words = [w for w in command if not w.startswith("-")]
    subcommand = words[:1]
    result = CliRunner().invoke(app, [*subcommand, "--help"])
    assert result.exit_code == 0, f"{service}: `preuve {' '.join(subcommand)}` does not exist"
    for option in (w for w in command if w.startswith("--")):
        assert option in result.output, f"{service}: option {option} unknown to preuve {subcommand}"


def test_secrets_are_never_defaults_and_reach_only_the_services_that_need_them() -> None:
    text = COMPOSE.read_text()
    assert "preuve:preuve@" not in text and "POSTGRES_PASSWORD: preuve" not in text
    for name in ("portal", "jupyterlab"):
        environment = SERVICES[name].get("environment") or {}
        assert "PREUVE_PSEUDONYM_KEY" not in environment, f"{name} holds the key"
    for name in ("worker", "gateway", "scheduler", "analysis-worker"):
        assert "PREUVE_PSEUDONYM_KEY" in SERVICES[name]["environment"], name
    portal = SERVICES["portal"]
    assert not portal.get("ports"), "the portal is published through the TLS proxy only"
    assert portal["environment"]["PREUVE_PORTAL__SECURE_COOKIES"] == "true"
    assert any("Strict-Transport-Security" in word for word in SERVICES["proxy"]["command"])


def test_the_image_runs_as_an_unprivileged_user() -> None:
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    assert "--allow-root" not in COMPOSE.read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
