"""Issue 19, item 3: the académie's usage page (« Usages de mes classes ») shows the three
levels of use of its classes per arm, nested, the control arm included, as the reports do;
the counts are recomputed here from the store."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from experiments.database import dispose_engines
from experiments.portal.app import create_portal
from experiments.portal.views import weekly_usage
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent, events_table
from tests.support.portal import EXPERIMENT, NOW, PortalClient, PortalWorld, build_world

THRESHOLD = 300  # fluence-cp-2027: minutes of active use over the intervention


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, PortalWorld]]:
    settings = Settings(state_dir=tmp_path_factory.mktemp("levels"),
                        pseudonym_key="levels-key" * 4)
    try:
        w = build_world(settings)
        _add_levels(settings)
        yield settings, w
    finally:
        dispose_engines()


def _pupils(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(learner, class, school, arm) of the world's pupils, in a fixed order."""
    e = events_table
    with ExperimentStore(settings, EXPERIMENT).engine.connect() as connection:
        return [tuple(r) for r in connection.execute(  # type: ignore[misc]
            sa.select(e.c.learner_key, e.c.class_id, e.c.school_uai, e.c.arm).distinct()
            .order_by(e.c.class_id, e.c.learner_key))]


def _add_levels(settings: Settings) -> None:
    """On top of the world's logins and activities: every pupil assigned, all but every
    fifth activated, and, in each class, the first 11 pupils' long sittings (every 2
    minutes for five hours: 300 active minutes, the threshold). Control pupils too: their
    exposure."""
    events = []

    def add(learner: str, class_id: str, school: str, arm: str, verb: str,
            when: datetime) -> None:
        events.append(StoredEvent(str(uuid.uuid4()), when, "lectio", learner, class_id,
                                  school, arm, verb, "lecture-1"))

    rank: dict[str, int] = defaultdict(int)
    for learner, class_id, school, arm in _pupils(settings):
        k = rank[class_id]
        rank[class_id] += 1
        add(learner, class_id, school, arm, "resource_assigned",
            datetime(2027, 9, 20, 8, tzinfo=UTC))
        if k % 5 != 4:
            add(learner, class_id, school, arm, "licence_activated",
                datetime(2027, 9, 21, 8, tzinfo=UTC))
        if k < 11:
            start = datetime(2027, 11, 16, 7, tzinfo=UTC)
            for step in range(151):
                add(learner, class_id, school, arm, "exercise_answered",
                    start + timedelta(minutes=2 * step))
    ExperimentStore(settings, EXPERIMENT).write_events(events, datetime.now(UTC))


def _expected(settings: Settings, classes: set[str]) -> dict[str, list[int]]:
    """Nested counts per arm, from the store: the verbs of each level, and active minutes
    by the rule in words (gaps of at most 300 s, durations up to 300 s, one pupil at a
    time, by whole seconds)."""
    e = events_table
    with ExperimentStore(settings, EXPERIMENT).engine.connect() as connection:
        rows = connection.execute(sa.select(e.c.learner_key, e.c.class_id, e.c.arm, e.c.verb,
                                            e.c.occurred_at, e.c.duration_s)
                                  .where(e.c.class_id.in_(sorted(classes)))).all()
    verbs: dict[str, set[str]] = defaultdict(set)
    arm_of: dict[str, str] = {}
    work: dict[str, list[tuple[int, float | None]]] = defaultdict(list)
    for learner, _, arm, verb, moment, duration in rows:
        verbs[learner].add(verb)
        arm_of[learner] = arm
        if verb in ("activity_completed", "exercise_answered", "assessment_scored") and \
                datetime(2027, 9, 26, tzinfo=UTC) < moment.replace(tzinfo=UTC) \
                < datetime(2028, 5, 20, tzinfo=UTC):
            work[learner].append((int(moment.replace(tzinfo=UTC).timestamp()), duration))
    minutes = {}
    for learner, seq in work.items():
        seq.sort()
        covered: set[int] = set()
        previous = None
        for end, duration in seq:
            length = (min(int(duration), 300) if duration is not None
                      else end - previous if previous is not None and end - previous <= 300
                      else 0)
            covered.update(range(end - length, end))
            previous = end
        minutes[learner] = len(covered) / 60
    out: dict[str, list[int]] = {"lectio": [0] * 4, "usual": [0] * 4}
    for learner, v in verbs.items():
        steps = ["resource_assigned" in v, "licence_activated" in v,
                 bool(v & {"session_started", "activity_completed", "exercise_answered"}),
                 minutes.get(learner, 0.0) >= THRESHOLD]
        for k, ok in enumerate(steps):
            if not ok:
                break
            out[arm_of[learner]][k] += 1
    return out


def test_the_academie_page_shows_the_nested_levels_of_its_classes(
        world: tuple[Settings, PortalWorld]) -> None:
    settings, w = world
    table = weekly_usage(settings, w.registry, EXPERIMENT, "versailles")
    assert table.levels is not None and table.levels.observed == (True, True, True, True)
    expected = _expected(settings, set(w.class_ids["versailles"]))
    got = {a.arm: list(a.reached) for a in table.levels.arms}
    for arm, counts in expected.items():
        assert counts == sorted(counts, reverse=True)  # nested
        assert got[arm] == [None if 0 < n < 10 else n for n in counts], (arm, got, expected)
    assert [a.control for a in table.levels.arms] == [False, True]  # the control arm too
    # active pupils exist in both arms (the control arm's exposure); nesting bites: pupils
    # 4 and 9 of each class worked 300 minutes without a licence, and are not counted active
    assert all(counts[3] > 0 for counts in expected.values())
    classes_of = defaultdict(int)
    for c in table.classes:
        classes_of[c.arm] += 1
    assert {arm: counts[3] for arm, counts in expected.items()} == {
        arm: 9 * n for arm, n in classes_of.items()}
    assert table.rule is not None and "pause de plus de 5 min" in table.rule

    client = PortalClient(create_portal(settings, registry=w.registry, clock=lambda: NOW))
    try:
        cookies = client.sign_in(w.tokens["academie_a"])
        page = client.request("GET", f"/usages/{EXPERIMENT}", cookies).text
        assert 'data-role="usage-levels"' in page and "Trois niveaux d" in page
        assert "Licence activée" in page and "(témoin)" in page
        api = client.request("GET", f"/api/usages/{EXPERIMENT}", cookies).json()
        assert api["levels"]["levels"] == ["assigned", "activated", "opened", "active"]
        assert {a["arm"]: list(a["reached"].values()) for a in api["levels"]["arms"]} == got
        assert api["levels"]["idle_timeout_s"] == 300
        assert not any(k in page for k in w.learner_keys)
    finally:
        client.close()
