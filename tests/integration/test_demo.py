"""`preuve demo`: the whole story runs end to end on the real broker."""

from __future__ import annotations

import json

import pytest

from experiments.demo import run_demo
from tests.conftest import SettingsFactory

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_from_protocol_to_report(make_settings: SettingsFactory) -> None:
    settings = make_settings(kafka=True)
    lines: list[str] = []
    result = run_demo(settings, say=lines.append)
    output = "\n".join(lines)

    assert result.stored_events > 3000, output
    assert result.dead_letters > 0, "the demo sends some invalid events"
    assert "stored" in output and "dead-letter topic" in output
    for field in ("occurred_at", "learner_id", "verb", "class_id"):
        assert f"{field}: " in output, f"no dead letter names {field}:\n{output}"
    results = json.loads(result.results_json.read_text())
    assert results["experiment"] == "fluence-cp-2027"
    primary = [e for e in results["effects"] if e["outcome"] == "fluence"]
    assert primary and isinstance(primary[0]["estimate"], float)
    html = result.report_html.read_text()
    assert "<html" in html.lower() and "fluence" in html
    assert str(result.report_html) in output, "the demo prints where the report is"
    # The final analysis went through the scheduler and an analysis worker, and is recorded.
    assert "analyses recorded; final run" in output
    assert "/reports/fluence-cp-2027/final/" in str(result.report_html)
    assert "preuve serve" in output and "http://127.0.0.1:" in output, "the portal's URL"
    # The report of the demo: every section, the summary equal to the JSON, French only.
    from analysis.report.checks import check_report

    assert check_report(html, results, "fr") == []
    assert "Usage actif semaine par semaine" in html and "<svg" in html
