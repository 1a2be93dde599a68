"""Schedules in périodes (`every: periode`, `at: fin-periode-N`) resolve per zone.

Expected dates: the périodes of 2027-2028 in vacances-scolaires-france 0.12 (ministry data):
zone A winter holidays from 19 February 2028, spring from 22 April; zone C winter from
12 February, spring from 15 April; Toussaint (23 October) and Noël (18 December) in all zones.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from experiments.cli.app import app
from experiments.protocol.language import load_protocol
from experiments.runs.scheduler import occurrences
from tests.support.protocol_files import write_variant

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"
SCHEDULE = [
    {"analysis": "monitoring", "every": "periode"},
    {"analysis": "interim", "at": "fin-periode-3"},
    {"analysis": "final", "at": date(2028, 6, 30)},
]


def test_every_periode_in_zone_c(tmp_path: Path) -> None:
    # versailles and creteil: zone C.
    protocol = load_protocol(write_variant(PROTOCOL, tmp_path, schedule=SCHEDULE))
    assert occurrences(protocol, protocol.schedule[0]) == [
        date(2027, 10, 23), date(2027, 12, 18), date(2028, 2, 12), date(2028, 4, 15)]
    assert occurrences(protocol, protocol.schedule[1]) == [date(2028, 2, 12)]


def test_a_protocol_across_zones_a_and_c_waits_for_zone_a(tmp_path: Path) -> None:
    path = write_variant(PROTOCOL, tmp_path, schedule=SCHEDULE,
                         population={"unit": "class", "levels": ["CP"],
                                     "academies": ["lyon", "versailles"],
                                     "criteria": {"education_priority": ["REP", "REP+"]}})
    protocol = load_protocol(path)
    assert occurrences(protocol, protocol.schedule[0]) == [
        date(2027, 10, 23), date(2027, 12, 18), date(2028, 2, 19), date(2028, 4, 22)]
    assert occurrences(protocol, protocol.schedule[1]) == [date(2028, 2, 19)]


def test_a_periode_without_dates_is_a_validation_problem(tmp_path: Path) -> None:
    path = write_variant(PROTOCOL, tmp_path, schedule=[
        {"analysis": "interim", "at": "fin-periode-2-2031-2032"},
        {"analysis": "final", "at": date(2028, 6, 30)},
    ])
    result = CliRunner().invoke(app, ["protocol", "validate", str(path)])
    assert result.exit_code == 2
    assert "schedule[0].at: no school calendar for 2031-2032" in result.output, result.output


def test_a_misspelt_periode_end_names_the_form(tmp_path: Path) -> None:
    path = write_variant(PROTOCOL, tmp_path, schedule=[
        {"analysis": "interim", "at": "fin-periode-7"},
        {"analysis": "final", "at": date(2028, 6, 30)},
    ])
    result = CliRunner().invoke(app, ["protocol", "validate", str(path)])
    assert result.exit_code == 2 and "fin-periode-N" in result.output, result.output


def test_a_report_of_a_schedule_in_periodes_says_which_periode_it_closes(tmp_path: Path) -> None:
    import dataclasses
    from datetime import UTC, datetime

    from analysis.report import render_report
    from analysis.report.context import ReportContext
    from experiments.runs.records import _periode_of
    from experiments.runs.scheduler import AnalysisRequest
    from tests.unit.test_report import _trial

    protocol = load_protocol(write_variant(PROTOCOL, tmp_path, schedule=SCHEDULE))
    # The interim (fin-periode-3, zone C) is due on 12 February 2028 at 06:00 Paris time.
    due = datetime(2028, 2, 12, 5, 0, tzinfo=UTC)
    request = AnalysisRequest("k", protocol.id, "interim", due, 1, "0" * 64)
    assert _periode_of(protocol, request) == (3, "2027-2028")
    weekly = dataclasses.replace(request, due_at=datetime(2028, 2, 14, 5, 0, tzinfo=UTC))
    assert _periode_of(protocol, weekly) is None
    trial = _trial(tmp_path / "trial", n_units=8, pupils_per_unit=12, effect=0.3,
                   usage_weeks=2)
    context = dataclasses.replace(trial.context or ReportContext(), periode=(3, "2027-2028"))
    french = render_report(trial.results, protocol=trial.protocol, context=context)
    english = render_report(trial.results, protocol=trial.protocol, context=context, lang="en")
    assert "Analyse de fin de période 3 de l&#39;année scolaire 2027-2028" in french
    assert "Analysis at the end of période 3 of the school year 2027-2028" in english
