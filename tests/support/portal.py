"""A registry and stores for the portal's tests: one experiment (fluence-cp-2027, from
``protocols/``) with classes of two académies, a term of usage, assessments, and two
recorded runs (monitoring, final) whose reports are real files written by the workers'
own code path (:func:`experiments.runs.records.perform_run`, no Kafka needed)."""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI
from sqlalchemy import Engine

from experiments.access import issue_token
from experiments.database import registry_engine
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.portal.app import SESSION_COOKIE
from experiments.protocol.language import parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.runs.records import RunRecord, perform_run
from experiments.runs.scheduler import AnalysisRequest, ScheduledRun, due_time
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent
from ingest.kafka.broker import free_port
from tests.support.decision import with_decision

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "fluence-cp-2027"
# With a decision rule, so that it may run (issue 19).
PROTOCOL_TEXT = with_decision(
    (ROOT / "protocols" / f"{EXPERIMENT}.yaml").read_text(encoding="utf-8"))
#: The portal's clock in the tests: after the interim analysis is due... not yet.
NOW = datetime(2028, 1, 10, 12, 0, tzinfo=UTC)
#: Pupils with usage in the class whose weekly cells must be suppressed (< 10).
SMALL_CLASS_PUPILS = 4


@dataclass(frozen=True)
class PortalWorld:
    """What the tests need to know about the registry they read through the portal."""

    registry: Engine
    tokens: dict[str, str]
    """Role label (officer, researcher, academie_a, academie_b, academie_other, edtech,
    admin) → API token."""
    class_ids: dict[str, list[str]]
    """Académie → its enrolled class ids."""
    learner_keys: list[str]
    small_class: str
    """A class of académie A where only :data:`SMALL_CLASS_PUPILS` pupils used the
    resource."""
    runs: list[RunRecord]


def _token() -> str:
    return secrets.token_hex(6)


def _event(learner: str, class_id: str, school: str, arm: str, when: datetime, verb: str,
           *, score: float | None = None, seconds: float | None = None) -> StoredEvent:
    return StoredEvent(
        str(uuid.uuid4()), when, "lectio", learner, class_id, school, arm, verb,
        object_id="fluence" if verb == "assessment_scored" else "lecture-1",
        duration_s=seconds, score=score, is_session=verb == "session_started",
        # Scores come from an assessor token of the experiment (trusted outcomes).
        authority="assessor:fluence-cp-2027:0123456789ab" if verb == "assessment_scored"
        else None,
        is_usage=verb == "activity_completed",
    )


def build_world(settings: Settings) -> PortalWorld:
    """Register, enroll, store a term of events and record a monitoring and a final run."""
    registry = registry_engine(settings)
    protocol = parse_protocol(PROTOCOL_TEXT)
    register_protocol(registry, protocol, PROTOCOL_TEXT)
    transition_experiment(registry, EXPERIMENT, "enrolling")
    design, _ = enrollment_design(registry, EXPERIMENT)
    schools = {"versailles": ["0780001C", "0780002D"], "creteil": ["0930001W", "0930002X"]}
    lines = ["class_id,school_uai,level,pupils,academie,education_priority"]
    for academie, uais in schools.items():
        for uai in uais:
            for _ in range(2):
                lines.append(f"cl{_token()},{uai},CP,20,{academie},REP")
    enrolled = enroll_classes(
        registry, design, read_classes("\n".join(lines) + "\n", design, today=date(2027, 9, 1)),
        actor="test",
    ).enrolled
    transition_experiment(registry, EXPERIMENT, "running")
    class_ids: dict[str, list[str]] = {"versailles": [], "creteil": []}
    for c in enrolled:
        class_ids[c.academie].append(c.class_id)
    small_class = next(c.class_id for c in enrolled
                       if c.academie == "versailles" and c.arm == "lectio")
    paris = timedelta(hours=2)
    baseline = datetime(2027, 9, 10, 9, 0, tzinfo=UTC) - paris
    endline = datetime(2028, 6, 1, 9, 0, tzinfo=UTC) - paris
    mondays = [datetime(2027, 10, 4, 10, 0, tzinfo=UTC), datetime(2027, 10, 11, 10, 0, tzinfo=UTC)]
    events: list[StoredEvent] = []
    learners: list[str] = []
    rng = secrets.SystemRandom()
    for c in enrolled:
        for k in range(12):
            learner = secrets.token_hex(16)
            learners.append(learner)
            gain = 4.0 if c.arm == "lectio" else 0.0
            start = 40.0 + rng.gauss(0, 5)
            events.append(_event(learner, c.class_id, c.school_uai, c.arm, baseline,
                                 "assessment_scored", score=start))
            events.append(_event(learner, c.class_id, c.school_uai, c.arm, endline,
                                 "assessment_scored", score=start + 8 + gain + rng.gauss(0, 3)))
            if c.arm != "lectio" or (c.class_id == small_class and k >= SMALL_CLASS_PUPILS):
                continue
            for monday in mondays:
                for day in range(3):
                    when = monday + timedelta(days=day)
                    events.append(_event(learner, c.class_id, c.school_uai, c.arm, when,
                                         "session_started"))
                    events.append(_event(learner, c.class_id, c.school_uai, c.arm,
                                         when + timedelta(minutes=20), "activity_completed",
                                         seconds=900.0))
    ExperimentStore(settings, EXPERIMENT).write_events(events, datetime.now(UTC))
    runs = []
    for analysis, day in (("monitoring", date(2027, 10, 18)), ("final", date(2028, 6, 30))):
        scheduled = ScheduledRun(EXPERIMENT, analysis, due_time(day), 1, protocol.sha256,
                                 f"at: {day.isoformat()}")
        record = perform_run(settings, AnalysisRequest.of(scheduled), registry)
        assert record.status == "done", record.reason
        runs.append(record)
    tokens = {
        "officer": issue_token(registry, "officer", "*", "bdt"),
        "researcher": issue_token(registry, "researcher", EXPERIMENT, "lab"),
        "academie_a": issue_token(registry, "academie", "versailles"),
        "academie_b": issue_token(registry, "academie", "creteil"),
        "academie_other": issue_token(registry, "academie", "lyon"),
        "researcher_other": issue_token(registry, "researcher", "autre-experience", "lab2"),
        "edtech": issue_token(registry, "edtech", "lectio"),
        "admin": issue_token(registry, "admin", "*"),
    }
    return PortalWorld(registry, tokens, class_ids, learners, small_class, runs)


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class PortalClient:
    """A synchronous in-process client of the portal, one cookie jar per caller.

    Starlette's TestClient warns (an error here), so this drives httpx's ASGITransport
    from an anyio portal, as ``tests/integration/test_gateway.py`` does.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._stack = ExitStack()
        self._portal = self._stack.enter_context(start_blocking_portal())

    def close(self) -> None:
        self._stack.close()

    async def _request(self, method: str, url: str, cookies: dict[str, str],
                       kwargs: dict[str, Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        headers = dict(kwargs.pop("headers", {}))
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        async with httpx.AsyncClient(transport=transport, base_url="http://portal") as client:
            return await client.request(method, url, headers=headers, **kwargs)

    def request(self, method: str, url: str, cookies: dict[str, str] | None = None,
                **kwargs: Any) -> httpx.Response:
        return self._portal.call(self._request, method, url, cookies or {}, kwargs)

    def sign_in(self, token: str) -> dict[str, str]:
        """Sign in through the form; returns the caller's cookies (the session)."""
        form = self.request("GET", "/connexion")
        csrf = CSRF.search(form.text)
        assert csrf is not None
        answer = self.request(
            "POST", "/connexion", cookies={"preuve_login_csrf": form.cookies["preuve_login_csrf"]},
            content=urlencode({"csrf": csrf.group(1), "token": token, "suite": "/"}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 303, answer.text
        return {SESSION_COOKIE: answer.cookies[SESSION_COOKIE]}


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1, in a thread, for a browser
    test; yields its URL and stops it (asserting it stopped) at the end."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="portal", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the portal did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "the portal did not stop"
