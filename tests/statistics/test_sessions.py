"""Active time rebuilt with the idle timeout (analysis.sessions), on hand-built sequences
and against an independent computation.

The reference marks every covered second of every pupil in a set (one second at a time,
from the rule's words), with integer-second event times so that it is exact; the module
computes unions of intervals with numpy. They must agree to 1e-9 s.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.sessions import active_seconds_by_day

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2027, 10, 4, 8, 0, tzinfo=PARIS)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_pause_longer_than_the_timeout_ends_the_session() -> None:
    # 0, 3, 6 min: two gaps of 3 min count; 20 min: a 14-minute pause, not counted
    got = active_seconds_by_day(["a"] * 4, [at(0), at(3), at(6), at(20)], [None] * 4,
                                idle_timeout_s=240)
    assert got == {("a", date(2027, 10, 4)): 360.0}


def test_a_gap_equal_to_the_timeout_still_counts() -> None:
    got = active_seconds_by_day(["a"] * 2, [at(0), at(4)], [None] * 2, idle_timeout_s=240)
    assert got == {("a", date(2027, 10, 4)): 240.0}


def test_a_vendor_duration_counts_up_to_the_timeout() -> None:
    # one activity said to last an hour counts one allowed pause (4 min)
    got = active_seconds_by_day(["a"], [at(60)], [3600.0], idle_timeout_s=240)
    assert got == {("a", date(2027, 10, 4)): 240.0}


def test_overlapping_periods_count_once() -> None:
    # a duration reaching back over earlier events, and a second tab's events
    times = [at(0), at(2), at(3), at(2.5)]
    got = active_seconds_by_day(["a"] * 4, times, [None, None, 180.0, None], idle_timeout_s=240)
    assert got == {("a", date(2027, 10, 4)): 180.0}


def test_pupils_are_separate() -> None:
    got = active_seconds_by_day(["a", "b", "a", "b"], [at(0), at(1), at(2), at(9)],
                                [None] * 4, idle_timeout_s=240)
    assert got == {("a", date(2027, 10, 4)): 120.0}


def test_time_is_split_at_paris_midnight() -> None:
    late = datetime(2027, 10, 4, 23, 58, tzinfo=PARIS)
    got = active_seconds_by_day(["a"] * 2, [late, late + timedelta(minutes=4)], [None] * 2,
                                idle_timeout_s=300)
    assert got == {("a", date(2027, 10, 4)): 120.0, ("a", date(2027, 10, 5)): 120.0}


def test_paris_days_not_utc_days() -> None:
    # 00:30 in Paris is still the previous day in UTC
    moment = datetime(2027, 10, 5, 0, 30, tzinfo=PARIS).astimezone(UTC)
    got = active_seconds_by_day(["a"], [moment], [60.0], idle_timeout_s=300)
    assert got == {("a", date(2027, 10, 5)): 60.0}


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_timeout_s"):
        active_seconds_by_day(["a"], [at(0)], [None], idle_timeout_s=0)


def reference(learners: list[str], seconds: list[int], durations: list[int | None],
              timeout: int) -> dict[tuple[str, date], float]:
    """The rule, second by second: each event marks the seconds it covers."""
    covered: dict[str, set[int]] = defaultdict(set)
    events = sorted(zip(learners, seconds, durations, strict=True), key=lambda e: (e[0], e[1]))
    previous: dict[str, int] = {}
    for learner, t, duration in events:
        if duration is not None:
            covered[learner].update(range(t - min(duration, timeout), t))
        elif learner in previous and t - previous[learner] <= timeout:
            covered[learner].update(range(previous[learner], t))
        previous[learner] = t
    out: dict[tuple[str, date], float] = defaultdict(float)
    base = int(T0.timestamp())
    for learner, marked in covered.items():
        for s in marked:
            day = datetime.fromtimestamp(base + s, PARIS).date()
            out[(learner, day)] += 1.0
    return dict(out)


events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 3 * 86_400),
              st.one_of(st.none(), st.integers(0, 900))),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(1, 1_200))
def test_equals_the_second_by_second_reference(rows: list[tuple[str, int, int | None]],
                                               timeout: int) -> None:
    learners = [r[0] for r in rows]
    seconds = [r[1] for r in rows]
    durations = [r[2] for r in rows]
    base = int(T0.timestamp())
    moments = [datetime.fromtimestamp(base + s, UTC) for s in seconds]
    got = active_seconds_by_day(learners, moments,
                                [None if d is None else float(d) for d in durations],
                                idle_timeout_s=timeout)
    expected = reference(learners, seconds, durations, timeout)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
