"""Issue 19, item 3: the three levels of use and the GAR funnel in a scheduled run's
report, on a simulated trial, checked against counts recomputed from the store.

The trial: fluence-cp-2027 (threshold lowered to 10 active minutes), four classes of 30
pupils, each pupil drawn (seeded) to be assigned, to activate a licence, to log in and to
work for a while, the control arm less often (its exposure is shown too); some pupils
open the resource without a licence, so that nesting matters. The test reads the report's
table and compares it with the nested counts it computes itself from the store's events,
with its own reading of the active-time rule (one pupil at a time, in plain Python).
"""

from __future__ import annotations

import html
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import sqlalchemy as sa

from analysis.report.text import Text
from analysis.report.usage_levels import levels_section
from analysis.usage import usage_levels
from experiments.registry import transition_experiment
from experiments.runs.records import perform_run
from experiments.runs.scheduler import AnalysisRequest, ScheduledRun, due_time
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent, events_table
from tests.unit.test_scheduler_inputs import EXPERIMENT, TEXT
from tests.unit.test_scheduler_inputs import setup as enroll_fluence

PARIS = ZoneInfo("Europe/Paris")
THRESHOLD = 10  # minutes
IDLE = 300  # fluence-cp-2027's pause (the default, written out)
PUPILS = 30
ACTIVE_VERBS = ("activity_completed", "exercise_answered", "assessment_scored")


class _Table(HTMLParser):
    """The cells of the table ``data-role="usage-levels"``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._inside = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("data-role") == "usage-levels":
            self._inside = True
        elif self._inside and tag == "tr":
            self.rows.append([])
        elif self._inside and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._inside = False
        elif self._inside and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def paris(day: date, hour: int, minute: float) -> datetime:
    return (datetime(day.year, day.month, day.day, hour, tzinfo=PARIS)
            + timedelta(minutes=minute)).astimezone(UTC)


def simulate(arms: dict[str, str], control: str) -> list[StoredEvent]:
    rng = np.random.default_rng(19)
    events = []

    def add(learner: str, class_id: str, arm: str, verb: str, moment: datetime,
            duration: float | None = None, **extra: object) -> None:
        events.append(StoredEvent(str(uuid.uuid4()), moment, "lectio", learner, class_id,
                                  "0780000B", arm, verb, "ex", duration,
                                  is_usage=verb in ACTIVE_VERBS,
                                  is_session=verb == "session_started", **extra))  # type: ignore[arg-type]

    for class_id, arm in sorted(arms.items()):
        odds = 0.4 if arm == control else 1.0
        for k in range(PUPILS):
            learner = f"{class_id}-{k}"
            score = dict(authority="import:admin:*:test")
            add(learner, class_id, arm, "assessment_scored",
                paris(date(2027, 9, 10), 9, 0), None, score=40.0 + k, **score)
            add(learner, class_id, arm, "assessment_scored",
                paris(date(2028, 6, 1), 9, 0), None, score=50.0 + k, **score)
            if rng.random() < 0.9 * odds:
                add(learner, class_id, arm, "resource_assigned", paris(date(2027, 9, 20), 8, 0))
            if rng.random() < 0.8 * odds:
                add(learner, class_id, arm, "licence_activated", paris(date(2027, 9, 21), 8, 0))
            if rng.random() < 0.75 * odds:
                add(learner, class_id, arm, "session_started", paris(date(2027, 10, 4), 9, 0))
            # work: a few sittings of exercises, pauses of 1 to 8 minutes, some durations
            for sitting in range(int(rng.integers(0, 4 if arm != control else 2))):
                day = date(2027, 10, 4) + timedelta(days=7 * sitting)
                minute = 0.0
                for _ in range(int(rng.integers(1, 12))):
                    minute += float(rng.integers(1, 9))
                    duration = float(rng.integers(30, 900)) if rng.random() < 0.3 else None
                    add(learner, class_id, arm, "exercise_answered", paris(day, 10, minute),
                        duration)
    return events


def active_minutes_reference(rows: list[tuple[str, datetime, float | None]]
                             ) -> dict[str, float]:
    """The rule read in plain words, a pupil at a time: each event covers the time since
    the previous one when it is at most the pause, or its duration up to the pause; the
    covered time is the union of those stretches, by whole seconds."""
    by_pupil: dict[str, list[tuple[datetime, float | None]]] = defaultdict(list)
    for learner, moment, duration in rows:
        by_pupil[learner].append((moment, duration))
    out = {}
    for learner, seq in by_pupil.items():
        seq.sort(key=lambda x: x[0])
        covered: set[int] = set()
        previous = None
        for moment, duration in seq:
            end = int(moment.timestamp())
            if duration is not None:
                length = min(int(duration), IDLE)
            elif previous is not None and end - previous <= IDLE:
                length = end - previous
            else:
                length = 0
            covered.update(range(end - length, end))
            previous = end
        out[learner] = len(covered) / 60
    return out


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def test_the_report_shows_the_nested_funnel_of_the_store(settings: Settings) -> None:
    text = TEXT.replace("compliance: {min_active_minutes: 300}",
                        f"compliance: {{min_active_minutes: {THRESHOLD}}}")
    engine, protocol, arms = enroll_fluence(settings, text)
    control = protocol.control_arm.name
    transition_experiment(engine, EXPERIMENT, "running")
    store = ExperimentStore(settings, EXPERIMENT)
    store.write_events(simulate(arms, control), datetime.now(UTC))
    run = ScheduledRun(EXPERIMENT, "final", due_time(date(2028, 6, 30)), 1, protocol.sha256,
                       "at: 2028-06-30")
    record = perform_run(settings, AnalysisRequest.of(run), engine)
    assert record.status == "done", record.reason
    page = Path(record.html_path or "").read_text(encoding="utf-8")
    table = _Table()
    table.feed(page)
    header, *body = table.rows
    assert header == ["Groupe", "Élèves inscrits", "Ressource affectée (GAR)",
                      "Licence activée", "Ressource ouverte",
                      f"Usage actif d'au moins {THRESHOLD} min"]

    # Recomputed from the store: who reached each level, nested, per arm.
    e = events_table
    with store.engine.connect() as connection:
        verbs = connection.execute(sa.select(e.c.learner_key, e.c.class_id, e.c.verb)).all()
        work = connection.execute(sa.select(e.c.learner_key, e.c.occurred_at, e.c.duration_s)
                                  .where(e.c.verb.in_(ACTIVE_VERBS))).all()
    intervention = protocol.periods.intervention
    minutes = active_minutes_reference([
        (learner, moment.replace(tzinfo=UTC), duration) for learner, moment, duration in work
        if intervention.start <= moment.replace(tzinfo=UTC).astimezone(PARIS).date()
        <= intervention.end])
    has: dict[str, set[str]] = defaultdict(set)
    class_of = {}
    for learner, class_id, verb in verbs:
        has[learner].add(verb)
        class_of[learner] = class_id
    expected: dict[str, list[int]] = {arm: [0, 0, 0, 0] for arm in set(arms.values())}
    for learner, verbs_of in has.items():
        steps = ["resource_assigned" in verbs_of, "licence_activated" in verbs_of,
                 "session_started" in verbs_of or "exercise_answered" in verbs_of,
                 minutes.get(learner, 0.0) >= THRESHOLD]
        for k, ok in enumerate(steps):
            if not ok:
                break
            expected[arms[class_of[learner]]][k] += 1
    for arm, counts in expected.items():
        assert counts == sorted(counts, reverse=True), (arm, counts)  # nested
    # The treatment arm's cells are all shown; the control arm has small cells, hidden.
    assert all(n >= 10 for arm, counts in expected.items() if arm != control for n in counts)
    assert any(0 < n < 10 for n in expected[control]), expected[control]
    # Nesting matters: some pupils opened the resource without a licence.
    opened_only = [learner for learner, v in has.items()
                   if "session_started" in v and "licence_activated" not in v]
    assert opened_only

    # one row per arm in the protocol's order; the report names them (resource, témoin)
    assert [row[0] for row in body] == ["Lectio", "témoin"]
    for row, arm in zip(body, [a.name for a in protocol.arms], strict=True):
        counts = expected[arm]
        cells = ["< 10" if 0 < n < 10 else str(n) for n in counts]
        assert row[1:] == ["40", *cells], (arm, row, counts)
    text_of_page = " ".join(html.unescape(page).split())
    assert "Chaque niveau compte les élèves qui l'ont atteint ainsi que tous les niveaux " \
        "au-dessus" in text_of_page
    assert "une pause de plus de 5 min (pause maximale déclarée au protocole) clôt la " \
        "session" in text_of_page
    assert "n'est pas mesuré" not in text_of_page  # sessions were stored
    assert "Le groupe témoin figure aussi" in text_of_page


def test_small_cells_are_suppressed_and_unsent_levels_are_said() -> None:
    # 12 pupils of arm a all opened, 9 of them active: the 9 are hidden; nobody was ever
    # assigned or activated (the resource does not send those verbs): not observed, and
    # left out of the nesting rather than emptying it.
    unit_of = {f"p{i}": "u1" for i in range(12)} | {f"q{i}": "u2" for i in range(15)}
    levels = usage_levels(unit_of, {"u1": "a", "u2": "b"},
                          {"opened": [*(f"p{i}" for i in range(12)),
                                      *(f"q{i}" for i in range(15))]},
                          {f"p{i}": 20.0 for i in range(9)} | {f"q{i}": 20.0 for i in range(15)},
                          arms=["a", "b"], control="b", threshold_minutes=10,
                          pupils_enrolled={"a": 12, "b": 15}, idle_timeout_s=180)
    assert levels.observed == (False, False, True, True)
    assert [a.reached for a in levels.arms] == [(None, None, 12, None), (None, None, 15, 15)]
    section = levels_section(levels, Text("en"), {})
    assert section["rows"] == [["a", "12", "not sent", "not sent", "12", "< 10"],
                               ["b (control)", "15", "not sent", "not sent", "15", "15"]]
    notes = " ".join(section["notes"])
    assert "Levels absent from the data" in notes and "Licence activated" in notes
    assert "a pause longer than 3 min" in notes
