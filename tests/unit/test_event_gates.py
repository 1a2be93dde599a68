"""Gates on events (ingest/gates.py): future dates, dates before the experiment, other schools.

The issue: events dated 2031 and 2020 were accepted (202) and stored, and an event whose
school_uai was not its class's enrolled school was stored as is.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette warns at import that its TestClient prefers httpx2; it works with httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from experiments.access import issue_token
from experiments.database import registry_engine
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol
from ingest.gateway import create_app
from ingest.stream.router import EventRouter, IngressRecord
from tests.conftest import SettingsFactory
from tests.support.events import enrollment

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"
KEY = b"unit-test-key"


def _event(n: int, occurred_at: str, school_uai: str = "0750001U") -> dict[str, object]:
    return {"event_id": f"00000000-0000-4000-8000-{n:012d}", "occurred_at": occurred_at,
            "resource_id": "lectio", "learner_id": "gar-raw-0042", "class_id": "cp-01a",
            "school_uai": school_uai, "verb": "exercise_answered"}


def _route(settings: Any, events: list[dict[str, object]], experiment: str = "exp-unit"
           ) -> Any:
    router = EventRouter(settings, KEY, registry_engine(settings))
    enrolled = {("cp-01a", "lectio"): enrollment("cp-01a", experiment, "lectio")}
    records = [IngressRecord("preuve.events", 0, i, None, json.dumps(e).encode())
               for i, e in enumerate(events)]
    return router.route(records, lambda c, r: enrolled.get((c, r)))


def test_the_worker_dead_letters_future_events_beyond_the_skew(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(simulated_now="2027-10-04T10:00:00+02:00", clock_skew_s=300)
    outcome = _route(settings, [
        _event(1, "2031-01-01T09:00:00+01:00"),      # the issue's 2031
        _event(2, "2027-10-04T10:06:00+02:00"),      # 6 minutes ahead: beyond 5
        _event(3, "2027-10-04T10:04:00+02:00"),      # 4 minutes ahead: within the skew
    ])
    assert outcome.stored == {"exp-unit": 1}
    assert [(d.field, d.reason[:24]) for d in outcome.dead] == [
        ("occurred_at", "occurred_at 2031-01-01T0"), ("occurred_at", "occurred_at 2027-10-04T1")]
    assert "is in the future" in outcome.dead[0].reason
    assert "dans le futur" in outcome.dead[0].reason


def test_the_worker_dead_letters_events_before_the_first_period(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    protocol = load_protocol(PROTOCOL)  # baseline from 2027-09-06
    register_protocol(registry_engine(settings), protocol, PROTOCOL.read_text(), actor="t")
    outcome = _route(settings, [_event(1, "2020-03-02T09:00:00+01:00"),       # the issue's 2020
                                _event(2, "2027-09-05T23:30:00+02:00"),       # the eve
                                _event(3, "2027-09-06T08:00:00+02:00")],      # first day
                     experiment=protocol.id)
    assert outcome.stored == {protocol.id: 1}
    assert [d.field for d in outcome.dead] == ["occurred_at", "occurred_at"]
    assert "before the first period of experiment fluence-cp-2027 (2027-09-06)" in \
        outcome.dead[0].reason
    assert "première période" in outcome.dead[1].reason


def test_the_worker_dead_letters_an_event_from_another_school(
    make_settings: SettingsFactory,
) -> None:
    outcome = _route(make_settings(), [_event(1, "2027-10-04T09:00:00+02:00", "0781234T"),
                                       _event(2, "2027-10-04T09:00:00+02:00")])
    assert outcome.stored == {"exp-unit": 1}
    (dead,) = outcome.dead
    assert dead.field == "school_uai"
    assert "0781234T is not the school of class cp-01a (0750001U" in dead.reason
    assert "n'est pas celle où la classe est inscrite" in dead.reason


class _Sent:
    def get(self, timeout: float | None = None) -> None:
        return None


class _Producer:
    """Stands for Kafka (what leaves the process): records what the gateway would write."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> _Sent:
        assert value is not None
        self.sent.append(value)
        return _Sent()

    def close(self, timeout: float | None = None) -> None:
        return None


def test_the_gateway_refuses_a_future_event_naming_the_field(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(simulated_now="2027-10-04T10:00:00+02:00")
    engine = registry_engine(settings)
    key = issue_token(engine, "edtech", "lectio", label="lectio-test")
    producer = _Producer()
    with TestClient(create_app(settings, producer, engine)) as client:
        refused = client.post("/v1/events", headers={"Authorization": f"Bearer {key}"},
                              json=[_event(1, "2031-01-01T09:00:00+01:00"),
                                    _event(2, "2027-10-04T09:00:00+02:00")])
        assert refused.status_code == 422, refused.text
        (problem,) = refused.json()["errors"]
        assert (problem["index"], problem["field"]) == (0, "occurred_at")
        assert "in the future" in problem["reason"] and "dans le futur" in problem["reason"]
        assert producer.sent == []
        accepted = client.post("/v1/events", headers={"Authorization": f"Bearer {key}"},
                               json=[_event(2, "2027-10-04T09:00:00+02:00")])
        assert accepted.status_code == 202, accepted.text
        assert len(producer.sent) == 1
