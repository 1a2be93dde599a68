"""Issue 19, item 1: what a registered protocol pre-registers about usage is explicit.

The canonical JSON (what the hash covers and the registry stores) carries the usage
section with its defaults written out, the idle timeout of active use included even when
the file leaves it out; active time is one measure, so its active_use metrics agree on
one pause. (The pre-registration document: tests/unit/test_registry.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from experiments.cli.protocol import app
from experiments.protocol.language import parse_protocol

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
USAGE = "usage:\n  compliance: {min_active_minutes: 300}"


def with_metrics(*metrics: str) -> str:
    return TEXT.replace(USAGE, USAGE + "\n  metrics:\n" + "".join(
        f"    - {m}\n" for m in metrics), 1)


def usage_in_canonical_json(text: str) -> dict[str, object]:
    usage: dict[str, object] = json.loads(parse_protocol(text).canonical_json())["usage"]
    return usage


def test_the_defaults_of_usage_are_in_the_registered_canonical_json() -> None:
    # fluence-cp-2027 writes only its compliance rule
    usage = usage_in_canonical_json(TEXT)
    assert usage["compliance"] == {"min_active_minutes": 300}
    assert usage["metrics"] == [
        {"id": "logins", "kind": "login", "verbs": ["session_started"],
         "idle_timeout_s": None, "description": None},
        {"id": "active_minutes", "kind": "active_use",
         "verbs": ["activity_completed", "exercise_answered", "assessment_scored"],
         "idle_timeout_s": 300, "description": None},
    ]


def test_an_active_use_metric_without_a_pause_gets_the_default_written_out() -> None:
    text = with_metrics("{id: connexions, kind: login, verbs: [session_started]}",
                        "{id: actif, kind: active_use, verbs: [exercise_answered]}")
    usage = usage_in_canonical_json(text)
    assert usage["metrics"][1]["idle_timeout_s"] == 300  # type: ignore[index]
    protocol = parse_protocol(text)
    assert protocol.usage.idle_timeout_s == 300
    assert protocol.usage.active_verbs == {"exercise_answered"}
    assert protocol.usage.login_verbs == {"session_started"}
    # written or left out, the same pre-registration: the same hash
    explicit = with_metrics("{id: connexions, kind: login, verbs: [session_started]}",
                            "{id: actif, kind: active_use, verbs: [exercise_answered], "
                            "idle_timeout_s: 300}")
    assert parse_protocol(explicit).sha256 == protocol.sha256


def test_active_use_metrics_declaring_two_pauses_are_refused(tmp_path: Path) -> None:
    text = with_metrics("{id: connexions, kind: login, verbs: [session_started]}",
                        "{id: exercices, kind: active_use, verbs: [exercise_answered], "
                        "idle_timeout_s: 180}",
                        "{id: lectures, kind: active_use, verbs: [activity_completed], "
                        "idle_timeout_s: 600}")
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "usage.metrics[2].idle_timeout_s: active time is rebuilt with one maximum pause" \
        in result.output


@pytest.mark.parametrize("seconds", [180, 240])
def test_the_declared_pause_is_the_rule(seconds: int) -> None:
    text = with_metrics("{id: connexions, kind: login, verbs: [session_started]}",
                        f"{{id: actif, kind: active_use, verbs: [exercise_answered], "
                        f"idle_timeout_s: {seconds}}}")
    assert parse_protocol(text).usage.idle_timeout_s == seconds
