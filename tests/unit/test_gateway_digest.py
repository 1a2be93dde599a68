"""The gateway's canonical digest is the same as before issue 20's faster form.

Receipts outlive upgrades (``gateway.receipt_retention_days``): a re-send of an event
received before the upgrade must find the same digest, else it would be a 409."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.contract import UsageEvent, parse_event
from ingest.gateway import _canonical_digest
from ingest.xapi import TIMESTAMP_FILLED, map_statement
from tests.support.events import valid_event

DATA = Path(__file__).resolve().parents[1] / "data" / "xapi"


def _reference(event: UsageEvent) -> str:
    """The digest as the gateway computed it before issue 20 (pydantic's JSON dump)."""
    content = event.model_dump(mode="json", exclude_none=True)
    if (event.extensions or {}).get("xapi_timestamp") == TIMESTAMP_FILLED:
        del content["occurred_at"]
    else:
        content["occurred_at"] = event.occurred_at.astimezone(UTC).isoformat(
            timespec="microseconds")
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_native_events_keep_their_digest() -> None:
    rng = random.Random(20)
    for i in range(200):
        raw: dict[str, Any] = valid_event(rng, f"c{i % 7}")
        if i % 3 == 0:
            raw["extensions"] = {"b": [1, 2.5, {"z": None, "a": "é"}], "a": True}
        if i % 4 == 0:
            raw["occurred_at"] = "2027-10-04T09:15:27.123+02:00"
        if i % 5 == 0:
            raw.update(score=0.75, success=False, object_id="https://lectio.example/ex/1")
        event = parse_event(raw)
        assert _canonical_digest(event) == _reference(event)


def test_mapped_statements_keep_their_digest() -> None:
    mapped, filled = 0, 0
    for path in sorted(DATA.rglob("*.json")):
        statement = json.loads(path.read_text())
        if not isinstance(statement, dict) or "verb" not in statement:
            continue
        if mapped % 2:  # the gateway fills the timestamp: left out of the digest
            statement.pop("timestamp", None)
        try:
            event = map_statement(statement, resource_id="lectio",
                                  received_at=datetime(2027, 10, 4, 8, tzinfo=UTC)).event
        except Exception:  # noqa: BLE001 -- a sample that needs a context mapping
            continue
        assert _canonical_digest(event) == _reference(event), path
        mapped += 1
        filled += (event.extensions or {}).get("xapi_timestamp") == TIMESTAMP_FILLED
    assert mapped >= 3 and filled >= 1


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                               max_size=3),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(extensions=st.dictionaries(st.text(min_size=1, max_size=6), _JSON, max_size=4),
       duration=st.none() | st.floats(0, 86_400), score=st.none() | st.floats(-1e6, 1e6))
def test_any_extensions_keep_their_digest(extensions: dict[str, Any], duration: float | None,
                                          score: float | None) -> None:
    raw: dict[str, Any] = valid_event(random.Random(1), "c1")
    raw.update(extensions=extensions, duration_s=duration, score=score)
    try:
        event = parse_event(raw)
    except Exception:  # noqa: BLE001 -- extensions the contract refuses (identifiers, size)
        return
    assert _canonical_digest(event) == _reference(event)
