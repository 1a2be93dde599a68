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
