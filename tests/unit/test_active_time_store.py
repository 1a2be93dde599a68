"""Active time as the protocol pre-registers it, read from an experiment's store
(experiments.store.read_active_time) and written into a scheduled run's usage file
(experiments.runs.inputs): hand-built sequences of events stored as the stream worker
stores them, with the value each must give worked out by hand in its comment.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from experiments.protocol.language import parse_protocol
from experiments.runs.inputs import write_analysis_files
from experiments.settings import Settings
from experiments.store import ActiveTime, ExperimentStore, StoredEvent, read_active_time
from tests.unit.test_scheduler_inputs import EXPERIMENT, TEXT
from tests.unit.test_scheduler_inputs import setup as enroll_fluence

PARIS = ZoneInfo("Europe/Paris")
ACTIVE = frozenset({"activity_completed", "exercise_answered"})
DAY = date(2027, 10, 5)  # a Tuesday of the intervention (fluence-cp-2027)


def paris(day: date, hour: int, minute: float = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=PARIS) + timedelta(minutes=minute)


def event(learner: str, moment: datetime, duration: float | None = None,
          verb: str = "activity_completed", class_id: str = "c0",
          event_id: str | None = None) -> StoredEvent:
    return StoredEvent(event_id or str(uuid.uuid4()), moment.astimezone(UTC), "lectio", learner,
                       class_id, "0780000B", "arm", verb, "ex", duration,
                       is_usage=verb in ACTIVE, is_session=verb == "session_started")


@pytest.fixture
def store(make_settings: Callable[..., Settings]) -> ExperimentStore:
    return ExperimentStore(make_settings(), "active-time")


def active(store: ExperimentStore, timeout: float = 300, **kwargs: object) -> list[ActiveTime]:
    with store.engine.connect() as connection:
        return read_active_time(connection, ACTIVE, timeout, **kwargs)  # type: ignore[arg-type]


def seconds(store: ExperimentStore, timeout: float = 300, **kwargs: object
            ) -> dict[tuple[str, date], float]:
    return {(a.learner_key, a.day): a.seconds for a in active(store, timeout, **kwargs)}


def test_a_pause_longer_than_the_idle_timeout_ends_the_session(store: ExperimentStore) -> None:
    # 9:00, 9:02, 9:04 then 9:30: two gaps of 2 min count (240 s); the 26-minute pause
    # ends the session and 9:30 starts a new one that covers nothing by itself.
    store.write_events([event("p1", paris(DAY, 9, m)) for m in (0, 2, 4, 30)], datetime.now(UTC))
    assert seconds(store) == {("p1", DAY): 240.0}


def test_a_vendor_duration_counts_up_to_the_idle_timeout(store: ExperimentStore) -> None:
    # an activity said to last an hour counts one allowed pause (300 s), not 3600 s
    store.write_events([event("p1", paris(DAY, 10), 3600.0),
                        event("p2", paris(DAY, 10), 90.0)], datetime.now(UTC))
    assert seconds(store) == {("p1", DAY): 300.0, ("p2", DAY): 90.0}


def test_overlapping_sessions_count_once(store: ExperimentStore) -> None:
    # Two tabs: 10:00 (200 s back to 9:56:40) and 10:01 (200 s back to 9:57:40) overlap;
    # their union is 9:56:40-10:01:00 = 260 s. A third event at 10:00:30 with no duration
    # covers 10:00:00-10:00:30, already inside the union.
    store.write_events([event("p1", paris(DAY, 10), 200.0),
                        event("p1", paris(DAY, 10, 1), 200.0),
                        event("p1", paris(DAY, 10, 0.5))], datetime.now(UTC))
    assert seconds(store) == {("p1", DAY): 260.0}


def test_a_session_over_midnight_is_split_in_paris_time(store: ExperimentStore) -> None:
    # 23:58 and 00:02 Paris (22:58 and 23:02 UTC in winter, one UTC day): the 4-minute gap
    # counts, 120 s on each Paris day.
    monday = date(2027, 11, 15)
    store.write_events([event("p1", paris(monday, 23, 58)),
                        event("p1", paris(monday, 23, 62))], datetime.now(UTC))
    assert seconds(store) == {("p1", monday): 120.0, ("p1", monday + timedelta(days=1)): 120.0}
    # the days asked for are Paris days: the session's first half alone
    assert seconds(store, last_day=monday) == {("p1", monday): 120.0}
    assert seconds(store, first_day=monday + timedelta(days=1)) == {
        ("p1", monday + timedelta(days=1)): 120.0}


def test_logins_and_other_verbs_are_not_active_time(store: ExperimentStore) -> None:
    # a login between two exercises neither covers time nor bridges a pause
    store.write_events([event("p1", paris(DAY, 9)),
                        event("p1", paris(DAY, 9, 3), verb="session_started"),
                        event("p1", paris(DAY, 9, 6)),
                        event("p2", paris(DAY, 9, 1), 120.0, verb="session_started")],
                       datetime.now(UTC))
    assert seconds(store) == {}  # 9:00 → 9:06 is a 6-minute pause


def test_late_out_of_order_and_repeated_events_give_the_same_time(store: ExperimentStore
                                                                   ) -> None:
    # The same five events stored in another order, over three batches, one batch sent
    # twice (a re-delivery): the store keeps each once, and the rebuilt time is the same.
    moments = [paris(DAY, 9, m) for m in (0, 1, 3, 4, 20)]
    ids = [str(uuid.uuid4()) for _ in moments]
    events = [event("p1", m, event_id=i) for m, i in zip(moments, ids, strict=True)]
    first = datetime.now(UTC)
    store.write_events([events[4], events[2]], first)
    store.write_events([events[0], events[3]], first)
    store.write_events([events[1], events[3], events[0]], first)
    assert store.count_events() == 5
    assert seconds(store) == {("p1", DAY): 240.0}  # 9:00-9:04; 9:20 alone


def test_a_cutoff_reads_the_events_stored_by_then(store: ExperimentStore) -> None:
    # 9:02 arrived after the cut-off: without it 9:00 → 9:04 is a 4-minute gap (240 s,
    # under the 300 s pause); with a 150 s timeout that gap ends the session.
    early, late = datetime(2027, 10, 6, tzinfo=UTC), datetime(2027, 10, 8, tzinfo=UTC)
    store.write_events([event("p1", paris(DAY, 9)), event("p1", paris(DAY, 9, 4))], early)
    store.write_events([event("p1", paris(DAY, 9, 2))], late)
    assert seconds(store, cutoff=early + timedelta(days=1)) == {("p1", DAY): 240.0}
    assert seconds(store, 150, cutoff=early + timedelta(days=1)) == {}
    assert seconds(store, 150) == {("p1", DAY): 240.0}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_scheduled_usage_file_uses_the_protocols_idle_timeout(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    # fluence-cp-2027 declares active use with the default pause, written out: 300 s.
    settings = make_settings()
    engine, protocol, arms = enroll_fluence(settings)
    assert protocol.usage.idle_timeout_s == 300
    store = ExperimentStore(settings, EXPERIMENT)
    c0 = arms["c0"]
    store.write_events([
        # 20 one-minute steps then a 3600 s vendor duration: 20 min + 5 min (capped)
        *[event("l1", paris(DAY, 9, m), class_id="c0")._replace(arm=c0) for m in range(21)],
        event("l1", paris(DAY, 14), 3600.0, class_id="c0")._replace(arm=c0),
        # a pause of 6 minutes counts nothing; a login does not count
        event("l2", paris(DAY, 9), class_id="c0")._replace(arm=c0),
        event("l2", paris(DAY, 9, 6), class_id="c0")._replace(arm=c0),
        event("l2", paris(DAY, 9, 7), verb="session_started", class_id="c0")._replace(arm=c0),
        # before the intervention (it starts on 2027-09-27): not in the file
        event("l3", paris(date(2027, 9, 20), 9), 100.0, class_id="c0")._replace(arm=c0),
    ], datetime.now(UTC))
    files = write_analysis_files(settings, engine, protocol, tmp_path)
    assert rows(files.usage) == [{"learner_id": "l1", "unit_id": "c0", "week": "2027-W40",
                                  "active_minutes": "25.0"}]
    # the same with a cut-off after everything (the path of a scheduled run)
    again = tmp_path / "again"
    again.mkdir()
    cut = write_analysis_files(settings, engine, protocol, again,
                               cutoff=datetime(2028, 8, 1, tzinfo=UTC))
    assert rows(cut.usage) == rows(files.usage)
    # a protocol declaring a 4-minute pause: the 6-minute gap still counts nothing; the
    # hour-long activity counts 4 minutes
    text = TEXT.replace("usage:\n  compliance: {min_active_minutes: 300}",
                        "usage:\n  compliance: {min_active_minutes: 300}\n  metrics:\n"
                        "    - {id: connexions, kind: login, verbs: [session_started]}\n"
                        "    - {id: minutes, kind: active_use, verbs: [activity_completed], "
                        "idle_timeout_s: 240}")
    shorter = parse_protocol(text)
    assert shorter.usage.idle_timeout_s == 240
    third = tmp_path / "third"
    third.mkdir()
    assert rows(write_analysis_files(settings, engine, shorter, third).usage) == [
        {"learner_id": "l1", "unit_id": "c0", "week": "2027-W40", "active_minutes": "24.0"}]
