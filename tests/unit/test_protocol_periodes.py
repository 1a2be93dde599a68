"""Periods written in school périodes (issue 21): « intervention période 2 à période 4 de
2027-2028 », resolved per holiday zone, kept as written, and spoken so in the
pre-registration and the report."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from analysis.inputs import plan_from_protocol, read_outcomes, read_units, read_usage
from analysis.report import render_report
from analysis.run import run_analysis
from analysis.simulate import simulate_trial
from experiments.database import dispose_engines, registry_engine
from experiments.errors import ProtocolError
from experiments.protocol.calendar import official_calendar
from experiments.protocol.language import Protocol, parse_protocol
from experiments.protocol.preregistration import preregistration_markdown
from experiments.registry import get_experiment, register_protocol
from experiments.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CORE = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
DATES = "intervention: {start: 2027-09-27, end: 2028-05-26}"
IN_PERIODES = "intervention: {periodes: 2-4, school_year: 2027-2028}"


def _with(intervention: str, academies: str = "[versailles, creteil]") -> str:
    return CORE.replace(DATES, intervention).replace("academies: [versailles, creteil]",
                                                     f"academies: {academies}")


def test_an_intervention_in_periodes_takes_the_dates_of_its_zone() -> None:
    # Versailles and Créteil are both in zone C: la Toussaint 2027 ends on Sunday 7
    # November, the spring holidays of 2028 begin on Saturday 15 April (the ministry's
    # calendar, through vacances-scolaires-france).
    protocol = parse_protocol(_with(IN_PERIODES))
    intervention = protocol.periods.intervention
    assert (intervention.start, intervention.end) == (date(2027, 11, 8), date(2028, 4, 14))
    calendar = official_calendar()
    assert intervention.start == calendar.periode("2027-2028", 2, "C").start
    assert intervention.end == calendar.periode("2027-2028", 4, "C").end
    assert intervention.describe("fr") == (
        "périodes 2 à 4 de 2027-2028 (du 2027-11-08 au 2028-04-14)")
    assert intervention.describe("en") == (
        "périodes 2 to 4 of 2027-2028 (from 2027-11-08 to 2028-04-14)")


def test_across_zones_the_span_covers_every_class() -> None:
    # Lyon is in zone A, Paris in zone C: the intervention starts on the earliest first
    # day of période 2 and ends on the latest last day of période 4.
    protocol = parse_protocol(_with("intervention: {periodes: 2-4, school_year: 2027-2028}",
                                    "[lyon, paris]"))
    calendar = official_calendar()
    starts = [calendar.periode("2027-2028", 2, z).start for z in ("A", "C")]
    ends = [calendar.periode("2027-2028", 4, z).end for z in ("A", "C")]
    intervention = protocol.periods.intervention
    assert (intervention.start, intervention.end) == (min(starts), max(ends))
    assert ends[0] != ends[1]  # the zones do differ, so the rule matters


def test_a_single_periode() -> None:
    protocol = parse_protocol(_with("intervention: {periodes: '3', school_year: 2027-2028}"))
    periode = official_calendar().periode("2027-2028", 3, "C")
    assert (protocol.periods.intervention.start, protocol.periods.intervention.end) == (
        periode.start, periode.end)
    assert protocol.periods.intervention.describe("fr").startswith("période 3 de 2027-2028")


def test_the_registered_form_keeps_periodes_and_dates_and_reads_back_unchanged() -> None:
    protocol = parse_protocol(_with(IN_PERIODES))
    stored = json.loads(protocol.canonical_json())
    assert stored["periods"]["intervention"] == {
        "start": "2027-11-08", "end": "2028-04-14", "periodes": "2-4",
        "school_year": "2027-2028"}
    # Read back (the registry compares stored versions as today's language reads them):
    # the dates resolved at registration stay, whatever a later calendar says.
    again = Protocol.model_validate(stored)
    assert again == protocol and again.canonical_json() == protocol.canonical_json()


def test_protocols_written_in_dates_keep_their_hash() -> None:
    protocol = parse_protocol(CORE)
    assert "periodes" not in protocol.canonical_json()
    assert "school_year" not in protocol.canonical_json()


@pytest.mark.parametrize(("intervention", "message"), [
    ("intervention: {periodes: 2-4}", "periodes (e.g. 2-4) and school_year"),
    ("intervention: {periodes: 2-7, school_year: 2027-2028}",
     "a school year has périodes 1 to 5, got 7"),
    ("intervention: {periodes: 2-4, school_year: 2031-2032}",
     "no school calendar for 2031-2032 in zone C"),
    ("intervention: {periodes: 2-4, school_year: 2027-2028, start: 2027-09-27}",
     "start 2027-09-27 is not the start of périodes 2-4 of 2027-2028 (2027-11-08)"),
])
def test_errors_name_the_file_line_and_field(intervention: str, message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_protocol(_with(intervention), "p.yaml")
    [problem] = raised.value.problems
    assert str(problem).startswith("p.yaml:18:3: periods.intervention: ")
    assert message in str(problem)


def test_preregistration_and_report_speak_in_periodes(tmp_path: Path) -> None:
    text = _with(IN_PERIODES)
    protocol = parse_protocol(text)
    registry = registry_engine(Settings(state_dir=tmp_path / "state",
                                        pseudonym_key="k" * 32))
    register_protocol(registry, protocol, text)
    markdown = preregistration_markdown(protocol, get_experiment(registry, protocol.id), text)
    dispose_engines()
    assert "- Période `intervention` : périodes 2 à 4 de 2027-2028 (du 2027-11-08 au " \
           "2028-04-14)." in markdown
    files = simulate_trial(tmp_path, n_units=12, pupils_per_unit=12, usage_weeks=2)
    plan = plan_from_protocol(protocol)
    units = read_units(files.units, plan)
    outcomes = read_outcomes(files.outcomes, units)
    assert files.usage is not None
    results = run_analysis(plan, units, outcomes, read_usage(files.usage, outcomes, units))
    french = render_report(results, protocol=protocol)
    english = render_report(results, protocol=protocol, lang="en")
    assert "intervention : périodes 2 à 4 de 2027-2028 (du 2027-11-08 au 2028-04-14)" in french
    assert "intervention: périodes 2 to 4 of 2027-2028 (from 2027-11-08 to 2028-04-14)" \
        in english
    dated = render_report(results, protocol=parse_protocol(CORE))
    assert "écrites en périodes scolaires" not in dated


def test_corse_periodes_come_from_the_deployments_calendar_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Corse is its own zone: its recteur sets its dates, which the package does not carry.
    # A deployment loads them from a file named by PREUVE_SCHOOL_CALENDAR_FILE.
    text = _with(IN_PERIODES, "[corse]")
    with pytest.raises(ProtocolError, match="no school calendar for zone 'corse'"):
        parse_protocol(text, "p.yaml")
    holidays = tmp_path / "corse.csv"
    holidays.write_text(
        "zone,name,start,end\n"
        "corse,Vacances d'été,2027-07-04,2027-08-31\n"
        "corse,Vacances de la Toussaint,2027-10-23,2027-11-07\n"
        "corse,Vacances de Noël,2027-12-18,2028-01-02\n"
        "corse,Vacances d'hiver,2028-02-19,2028-03-05\n"
        "corse,Vacances de printemps,2028-04-15,2028-05-01\n"
        "corse,Vacances d'été,2028-07-04,2028-08-31\n", encoding="utf-8")
    monkeypatch.setenv("PREUVE_SCHOOL_CALENDAR_FILE", str(holidays))
    intervention = parse_protocol(text).periods.intervention
    assert (intervention.start, intervention.end) == (date(2027, 11, 8), date(2028, 4, 14))
