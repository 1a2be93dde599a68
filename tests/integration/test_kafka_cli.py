"""`preuve kafka up | down | status` against the real broker it starts."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from experiments.cli.app import app
from tests.support.events import valid_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_is_idempotent_down_stops_it_and_status_tells_the_truth(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"PREUVE_STATE_DIR": str(tmp_path), "PREUVE_KAFKA_BOOTSTRAP": ""}

    down = runner.invoke(app, ["kafka", "status"], env=env)
    assert down.exit_code == 3, down.output
    assert "down" in down.output

    first = runner.invoke(app, ["kafka", "up"], env=env)
    try:
        assert first.exit_code == 0, first.output
        pid = json.loads((tmp_path / "kafka" / "broker.json").read_text())["pid"]
        second = runner.invoke(app, ["kafka", "up"], env=env)
        assert second.exit_code == 0, second.output
        assert f"pid {pid}" in second.output, "a second `up` must reuse the running broker"

        up = runner.invoke(app, ["kafka", "status"], env=env)
        assert up.exit_code == 0, up.output
        assert "up at 127.0.0.1:" in up.output

        # Secured with nothing to configure: every command finds its credentials in the
        # state directory, kept for the owner only.
        secrets = tmp_path / "kafka" / "secrets"
        assert all(f.stat().st_mode & 0o077 == 0 for f in secrets.iterdir())
        events = tmp_path / "events.jsonl"
        events.write_text(json.dumps(valid_event(random.Random(1), "cls-1")) + "\n")
        sent = runner.invoke(app, ["events", "send", str(events)], env=env)
        assert sent.exit_code == 0 and "sent 1 events" in sent.output, sent.output
        edtech = runner.invoke(app, ["kafka", "add-edtech", "lectio"], env=env)
        assert edtech.exit_code == 0, edtech.output
        assert "user:     edtech-lectio" in edtech.output
        assert "topic:    preuve.events.lectio" in edtech.output
        direct = runner.invoke(app, ["events", "send", str(events), "--resource", "lectio"],
                               env=env)
        assert direct.exit_code == 0 and "preuve.events.lectio" in direct.output, direct.output
        # No user for that resource: one line, no traceback.
        other = runner.invoke(app, ["events", "send", str(events), "--resource", "numeris"],
                              env=env)
        assert other.exit_code == 1 and "edtech-numeris" in other.output, other.output
    finally:
        stopped = runner.invoke(app, ["kafka", "down"], env=env)
    assert stopped.exit_code == 0, stopped.output
    assert "stopped" in stopped.output
    assert not _alive(pid), "the broker process is still running after `down`"

    after = runner.invoke(app, ["kafka", "status"], env=env)
    assert after.exit_code == 3 and "down" in after.output
    again = runner.invoke(app, ["kafka", "down"], env=env)
    assert again.exit_code == 0 and "not running" in again.output


def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {"PREUVE_STATE_DIR": str(tmp_path), "PREUVE_KAFKA_BOOTSTRAP": "", "PATH": str(empty_bin)}
    result = CliRunner().invoke(app, ["kafka", "up"], env=env)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Java 17+ is needed" in lines[0] and "docker compose" in lines[0]
