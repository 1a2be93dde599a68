"""The scheduler's calendar and claims, on real registries (SQLite here, PostgreSQL in
``tests/integration/test_scheduler.py``); Kafka is not needed to claim runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from experiments.database import registry_engine
from experiments.errors import SchedulerError
from experiments.protocol.language import load_protocol, parse_protocol
from experiments.registry import amend_protocol, register_protocol, transition_experiment
from experiments.runs.scheduler import (
    AnalysisRequest,
    ScheduledRun,
    claim_runs,
    due_runs,
    due_time,
    occurrences,
    run_key,
    scheduled_runs_table,
)
from experiments.settings import Settings
from tests.support.decision import with_decision

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "protocols" / "fluence-cp-2027.yaml"
TEXT = with_decision(EXAMPLE.read_text(encoding="utf-8"))  # it may run (issue 19)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def running(engine: Engine, text: str = TEXT) -> None:
    register_protocol(engine, parse_protocol(text), text)
    for state in ("enrolling", "running"):
        transition_experiment(engine, "fluence-cp-2027", state)  # type: ignore[arg-type]


def backdate_version(engine: Engine, version: int, when: datetime) -> None:
    """Pretend a protocol version was recorded at ``when`` (the tests' clock is in 2028)."""
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE protocol_versions SET recorded_at = :t "
                    "WHERE experiment_id = 'fluence-cp-2027' AND version = :v"),
            {"t": when, "v": version},
        )


@pytest.fixture
def engine(make_settings: Callable[..., Settings]) -> Engine:
    return registry_engine(make_settings())


def test_calendar_of_the_design_example() -> None:
    protocol = load_protocol(EXAMPLE)
    weekly, interim, final = (occurrences(protocol, e) for e in protocol.schedule)
    # Mondays after the intervention's start (Mon 2027-09-27) up to the first Monday
    # after the follow-up's end (Fri 2028-06-16).
    assert weekly[:2] == [date(2027, 10, 4), date(2027, 10, 11)]
    assert weekly[-1] == date(2028, 6, 19)
    assert all(d.weekday() == 0 for d in weekly)
    assert interim == [date(2028, 1, 15)] and final == [date(2028, 6, 30)]
    # 06:00 in Paris: UTC+1 in winter, UTC+2 in summer.
    assert due_time(date(2028, 1, 15)) == datetime(2028, 1, 15, 5, tzinfo=UTC)
    assert due_time(date(2028, 6, 30)) == datetime(2028, 6, 30, 4, tzinfo=UTC)


def test_month_and_period_rhythms() -> None:
    text = TEXT.replace("- {analysis: monitoring, every: week}",
                        "- {analysis: monitoring, every: month}\n"
                        "  - {analysis: interim, every: period}")
    protocol = parse_protocol(text)
    monthly = occurrences(protocol, protocol.schedule[0])
    assert monthly[0] == date(2027, 10, 1) and monthly[-1] == date(2028, 7, 1)
    assert len(monthly) == 10
    assert occurrences(protocol, protocol.schedule[1]) == [
        date(2027, 9, 25), date(2028, 5, 27), date(2028, 6, 17)]


def test_only_experiments_under_way_have_runs(engine: Engine) -> None:
    register_protocol(engine, parse_protocol(TEXT), TEXT)
    assert due_runs(engine, at("2028-07-01T00:00:00+00:00")) == []
    transition_experiment(engine, "fluence-cp-2027", "enrolling")
    assert len(due_runs(engine, at("2028-07-01T00:00:00+00:00"))) == 38 + 2


def test_a_run_is_claimed_once(engine: Engine) -> None:
    running(engine)
    runs = due_runs(engine, at("2028-01-15T06:00:00+01:00"))
    assert [r.analysis for r in runs].count("interim") == 1
    first = claim_runs(engine, runs, catch_up="all")
    assert len(first) == len(runs) == 15 + 1
    assert claim_runs(engine, runs, catch_up="all") == []
    assert claim_runs(engine, due_runs(engine, at("2028-01-15T06:00:00+01:00"))) == []


def test_catch_up_publishes_one_offs_and_the_latest_repetition(engine: Engine) -> None:
    running(engine)
    claim_runs(engine, due_runs(engine, at("2027-12-01T12:00:00+01:00")))
    # Down from 2027-12-01 to 2028-02-01: the interim and the latest Monday are caught up.
    claimed = claim_runs(engine, due_runs(engine, at("2028-02-01T12:00:00+01:00")))
    assert [(r.analysis, r.due_at) for r in claimed] == [
        ("interim", at("2028-01-15T06:00:00+01:00")),
        ("monitoring", at("2028-01-31T06:00:00+01:00")),
    ]
    with engine.connect() as connection:
        statuses = dict(connection.execute(
            sa.select(scheduled_runs_table.c.status, sa.func.count())
            .group_by(scheduled_runs_table.c.status)).all())
    # Claimed on 2027-12-01: one (coalesced) monitoring run, 8 earlier skipped; then the
    # interim, the monitoring of 2028-01-31 and 8 skipped Mondays (Dec 6 ... Jan 24).
    assert statuses == {"due": 3, "skipped": 8 + 8}


def test_an_amendment_changes_future_runs_only(engine: Engine) -> None:
    running(engine)
    backdate_version(engine, 1, at("2027-06-01T00:00:00+02:00"))
    before = claim_runs(engine, due_runs(engine, at("2028-01-20T00:00:00+01:00")))
    interim = next(r for r in before if r.analysis == "interim")
    assert interim.protocol_version == 1
    amended = TEXT.replace("- {analysis: interim, at: 2028-01-15}",
                           "- {analysis: interim, at: 2028-01-10}\n"
                           "  - {analysis: interim, at: 2028-03-01}")
    amended = amended.replace("final, at: 2028-06-30", "final, at: 2028-07-03")
    amend_protocol(engine, parse_protocol(amended), amended,
                   reason="Second interim requested by the steering committee")
    backdate_version(engine, 2, at("2028-02-01T00:00:00+01:00"))
    # 2028-01-10 is before the amendment: it does not become a run (version 1 was in
    # force then, and it had no such date); 2028-01-15 stays a run of version 1.
    runs = due_runs(engine, at("2028-07-10T00:00:00+02:00"))
    one_offs = {(r.analysis, r.due_at.date(), r.protocol_version) for r in runs
                if not r.recurring}
    assert one_offs == {("interim", date(2028, 1, 15), 1), ("interim", date(2028, 3, 1), 2),
                        ("final", date(2028, 7, 3), 2)}
    monitoring = [r for r in runs if r.recurring]
    assert {r.protocol_version for r in monitoring if r.due_at < at("2028-02-01T00:00Z")} == {1}
    assert {r.protocol_version for r in monitoring if r.due_at > at("2028-02-01T00:00Z")} == {2}
    claimed = claim_runs(engine, runs)
    assert ("interim", date(2028, 1, 15)) not in {(r.analysis, r.due_at.date()) for r in claimed}


def test_request_round_trip_and_refusals() -> None:
    run = ScheduledRun("fluence-cp-2027", "final", at("2028-06-30T06:00:00+02:00"), 2,
                       "a" * 64, "at: 2028-06-30")
    request = AnalysisRequest.of(run)
    assert AnalysisRequest.from_json(request.to_json()) == request
    assert request.run_key == run_key("fluence-cp-2027", "final", run.due_at)
    with pytest.raises(SchedulerError, match="not a valid request"):
        AnalysisRequest.from_json(b"{}")
    with pytest.raises(SchedulerError, match="does not match"):
        AnalysisRequest.from_json(request.to_json().replace(b"/final/", b"/interim/"))

