"""Bulk writes of an experiment's store, on SQLite and on a real PostgreSQL.

``ExperimentStore.write_events`` takes a different path per dialect (PostgreSQL: ``COPY``
then one statement whose ``INSERT … RETURNING`` feeds the usage upsert; SQLite: staged
rows, ``INSERT … RETURNING``, the repeats dropped, then the usage upsert). Whatever the
mix of new events, repeats within a call and events already stored, both must leave
exactly one row per event id (the first copy seen) and daily usage equal to a
recomputation from the stored events.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.store import (
    SCHOOL_TIMEZONE,
    ExperimentStore,
    StoredEvent,
    daily_usage_table,
    events_table,
)
from tests.conftest import SettingsFactory

pytestmark = [pytest.mark.integration]

START = datetime(2027, 10, 4, 21, 30, tzinfo=UTC)  # some events fall on the next Paris day


def _event(n: int, rng: random.Random) -> StoredEvent:
    verb = rng.choice(["session_started", "exercise_answered", "content_viewed"])
    return StoredEvent(
        event_id=f"00000000-0000-4000-8000-{n:012d}",
        occurred_at=START + timedelta(minutes=rng.randrange(0, 240)),
        resource_id="lectio",
        learner_key=f"k{rng.randrange(6)}",
        class_id="c1",
        school_uai="0750001U",
        arm="lectio",
        verb=verb,
        duration_s=float(rng.randrange(0, 300)) if rng.random() < 0.8 else None,
        extensions={"n": n} if n % 5 == 0 else None,
        is_session=verb == "session_started",
        is_usage=verb != "session_started",
    )


def _expected_usage(events: dict[str, StoredEvent]) -> dict[tuple[str, str], tuple[float, ...]]:
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for e in events.values():
        day = e.occurred_at.astimezone(SCHOOL_TIMEZONE).date().isoformat()
        row = totals[(e.learner_key, day)]
        row[0] += 1
        row[1] += int(e.is_session)
        row[2] += int(e.is_usage)
        row[3] += (e.duration_s or 0.0) if e.is_usage else 0.0
    return {key: tuple(value) for key, value in totals.items()}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_mixed_batches_store_each_event_once_and_usage_matches_the_events(
    backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest
) -> None:
    database_url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    store = ExperimentStore(make_settings(database_url=database_url), "exp-writes")
    rng = random.Random(7)
    pool = [_event(n, rng) for n in range(400)]
    first_seen: dict[str, StoredEvent] = {}
    for _ in range(12):  # batches re-cut at random, as after crashes and re-deliveries
        batch = [rng.choice(pool) for _ in range(rng.randrange(1, 120))]
        if rng.random() < 0.3:  # a different copy of an id: the first stored must win
            clone = batch[0]._replace(duration_s=9999.0, verb="content_viewed", is_usage=True)
            batch.append(clone)
        new = {e.event_id for e in batch} - set(first_seen)
        result = store.write_events(batch, START)
        assert result.inserted == len(new)
        assert result.inserted + result.duplicates == len(batch)
        for e in batch:
            first_seen.setdefault(e.event_id, e)

    with store.engine.connect() as connection:
        stored = connection.execute(
            sa.select(events_table.c.event_id, events_table.c.duration_s)
        ).all()
        usage = connection.execute(sa.select(
            daily_usage_table.c.learner_key, daily_usage_table.c.day, daily_usage_table.c.events,
            daily_usage_table.c.sessions, daily_usage_table.c.activities,
            daily_usage_table.c.active_seconds,
        )).all()
    assert Counter(event_id for event_id, _ in stored) == Counter(set(first_seen))
    with store.engine.connect() as connection:
        stored_at = set(connection.scalars(sa.select(events_table.c.stored_at)))
    assert {t.replace(tzinfo=UTC) if t.tzinfo is None else t for t in stored_at} == {START}
    assert {i: d for i, d in stored} == {i: e.duration_s for i, e in first_seen.items()}
    found = {(k, str(d)): (n, s, a, round(t, 6)) for k, d, n, s, a, t in usage}
    expected = {key: (*counts, round(seconds, 6))
                for key, (*counts, seconds) in _expected_usage(first_seen).items()}
    assert found == expected


def test_postgres_staging_table_is_emptied_by_each_commit(
    make_settings: SettingsFactory, postgres_url: str
) -> None:
    """The staging table is ``ON COMMIT DELETE ROWS``: nothing is left in it between
    batches on the same pooled connection (rows only deleted would pile up as dead
    tuples: autovacuum never visits temporary tables)."""
    store = ExperimentStore(make_settings(database_url=postgres_url), "exp-staging")
    rng = random.Random(3)
    store.write_events([_event(n, rng) for n in range(50)], START)
    with store.engine.connect() as connection:  # the pool hands back the same connection
        assert connection.scalar(sa.text("SELECT to_regclass('pg_temp.preuve_incoming')"))
        assert connection.scalar(sa.text("SELECT count(*) FROM preuve_incoming")) == 0


# Text as a resource may send it: tabs, newlines, backslashes, quotes, accents, emoji (no
# NUL: neither database stores one, and the contract refuses it).
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=40)
_JSON: Any = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9)
    | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def _stored_events(draw: st.DrawFn) -> StoredEvent:
    moment = draw(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)))
    return StoredEvent(
        event_id=str(uuid.uuid4()),
        occurred_at=moment.replace(tzinfo=UTC),  # the router stores UTC
        resource_id=draw(_TEXT), learner_key=draw(_TEXT), class_id=draw(_TEXT),
        school_uai=draw(st.text(max_size=16).filter(lambda t: "\x00" not in t)),
        arm=draw(_TEXT), verb=draw(_TEXT),
        object_id=draw(st.none() | _TEXT),
        # As the contract bounds it (0 to 86,400 s): durations are summed into daily usage,
        # and two of 1e308 overflow PostgreSQL's float8 (SQLite would give inf).
        duration_s=draw(st.none() | st.floats(0, 86_400)),
        score=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
        success=draw(st.none() | st.booleans()),
        extensions=draw(st.none() | st.dictionaries(_TEXT, _JSON, max_size=4)),
        is_session=draw(st.booleans()), is_usage=draw(st.booleans()),
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_value_reads_back_as_written(
    backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest
) -> None:
    """What the store reads back is what was written, whatever the text: PostgreSQL gets
    the rows as COPY text formatted by hand (experiments.store._copy_text), SQLite as
    bound parameters; both must give the values back unchanged."""
    database_url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    store = ExperimentStore(make_settings(database_url=database_url), "exp-values")
    columns = [c for c in events_table.c if c.name != "stored_at"]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_stored_events(), min_size=1, max_size=5))
    def written_then_read(events: list[StoredEvent]) -> None:
        assert store.write_events(events, START).inserted == len(events)
        with store.engine.connect() as connection:
            rows = {row.event_id: row for row in connection.execute(
                sa.select(*columns).where(events_table.c.event_id.in_(
                    [e.event_id for e in events])))}
        for e in events:
            row = rows[e.event_id]
            for column in columns:
                value, back = getattr(e, column.name), getattr(row, column.name)
                if column.name == "occurred_at" and back.tzinfo is None:  # SQLite: UTC
                    back = back.replace(tzinfo=UTC)
                assert back == value, (column.name, value, back)

    written_then_read()
