"""Protocol schedules may use cron expressions; the scheduler runs them on their days."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from ruamel.yaml import YAML

from experiments.protocol.language import load_protocol
from experiments.runs.scheduler import occurrences
from tests.support.protocol_files import write_variant

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"


def test_cron_days_fall_within_the_intervention_and_follow_up(tmp_path: Path) -> None:
    path = write_variant(PROTOCOL, tmp_path, schedule=[
        {"analysis": "monitoring", "cron": "0 6 1,15 * *"},
        {"analysis": "final", "at": date(2028, 6, 30)},
    ])
    protocol = load_protocol(path)
    days = occurrences(protocol, protocol.schedule[0])
    # 1st and 15th of each month from October 2027 to the end of the follow-up (16 June 2028).
    assert days[0] == date(2027, 10, 1) and days[-1] == date(2028, 6, 15)
    assert all(day.day in (1, 15) for day in days) and len(days) == 18


def test_a_bad_cron_expression_names_the_field(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from experiments.cli.app import app

    path = write_variant(PROTOCOL, tmp_path, schedule=[
        {"analysis": "monitoring", "cron": "every monday"},
        {"analysis": "final", "at": date(2028, 6, 30)},
    ])
    result = CliRunner().invoke(app, ["protocol", "validate", str(path)])
    assert result.exit_code == 2
    assert "schedule[0].cron: not a cron expression" in result.output, result.output


def test_one_of_at_every_cron(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from experiments.cli.app import app

    path = write_variant(PROTOCOL, tmp_path, schedule=[
        {"analysis": "monitoring", "cron": "0 6 * * 1", "every": "week"},
        {"analysis": "final", "at": date(2028, 6, 30)},
    ])
    result = CliRunner().invoke(app, ["protocol", "validate", str(path)])
    assert result.exit_code == 2 and "give exactly one of" in result.output


def test_yaml_loader_keeps_cron_text(tmp_path: Path) -> None:
    path = write_variant(PROTOCOL, tmp_path, schedule=[
        {"analysis": "monitoring", "cron": "30 7 * * 1-5"},
        {"analysis": "final", "at": date(2028, 6, 30)},
    ])
    assert YAML(typ="safe").load(path.read_text())["schedule"][0]["cron"] == "30 7 * * 1-5"
    assert load_protocol(path).schedule[0].cron == "30 7 * * 1-5"
