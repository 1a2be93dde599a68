"""The dead-letter index's rows (issue 17): the router gives each refusal a reason code,
and what the index keeps of a refused record holds no raw learner id."""

from __future__ import annotations

import json

from experiments.database import registry_engine
from ingest.deadletters import REMOVED, resource_of, safe_payload, split_reason
from ingest.stream.router import EventRouter, IngressRecord
from tests.conftest import SettingsFactory

RAW = "gar-raw-0042"


def _event(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": "00000000-0000-4000-8000-000000000001",
        "occurred_at": "2027-10-04T09:00:00+02:00", "resource_id": "lectio",
        "learner_id": RAW, "class_id": "cp-01a", "school_uai": "0750001U",
        "verb": "exercise_answered",
    }
    event.update(changes)
    return event


def test_each_refusal_has_its_code(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    router = EventRouter(settings, b"unit-test-key", registry_engine(settings))
    values = [b"not json", json.dumps([1, 2]).encode(), json.dumps(_event(verb="")).encode(),
              json.dumps(_event(occurred_at="2031-01-01T00:00:00+00:00")).encode()]
    records = [IngressRecord("preuve.events", 0, i, None, v) for i, v in enumerate(values)]
    outcome = router.route(records, lambda _c, _r: None)
    assert [d.code for d in outcome.dead] == ["not_json", "not_json", "contract", "future"]
    assert all(("preuve.code", d.code.encode()) in d.headers() for d in outcome.dead)
    # The future gate writes English / French: the index keeps both halves.
    english, french = split_reason(outcome.dead[3].reason, "future", "occurred_at")
    assert english.startswith("occurred_at 2031") and french.startswith("la date")


def test_what_the_index_keeps_of_a_payload() -> None:
    kept, decoded = safe_payload(json.dumps(_event(extensions={"note": "a@b.fr"})).encode())
    assert kept is not None and RAW not in kept and "a@b.fr" not in kept
    assert json.loads(kept)["learner_id"] == REMOVED
    assert resource_of(decoded, None) == "lectio" and resource_of(decoded, "numeris") == "numeris"
    assert resource_of({"resource_id": "Not A Slug!"}, None) == ""
    statement = {"actor": {"account": {"name": RAW}}, "verb": {"id": "x"}}
    kept, _ = safe_payload(json.dumps(statement).encode())
    assert kept is not None and RAW not in kept
    named, _ = safe_payload(json.dumps(_event(name="Camille Martin", class_id="C Martin")).encode())
    assert named is not None and "Martin" not in named
    many = {f"k{i}": i for i in range(500)}
    long, _ = safe_payload(json.dumps(_event(extensions=many)).encode())
    assert long is not None and len(long) == 2000 and long.endswith("…")
    assert safe_payload(b"\xff\xfe") == (None, None)
