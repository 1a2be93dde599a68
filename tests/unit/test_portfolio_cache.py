"""The portfolio is cached per registration version (issue 20, item 3): a second page
load parses no protocol and reads no results again; a new protocol version or a new
final run is read once."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

import experiments.portfolio.entries as entries_module
import experiments.registry as registry_module
from experiments.database import dispose_engines
from experiments.portfolio.entries import clear_portfolio_cache, portfolio_entries
from experiments.protocol.language import parse_protocol
from experiments.registry import amend_protocol
from experiments.runs.records import analysis_runs_table, software_versions
from experiments.runs.scheduler import due_time
from experiments.settings import Settings
from tests.support.programmes import TRIALS, ProgrammeWorld, build_programmes, protocol_text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProgrammeWorld]:
    settings = Settings(state_dir=tmp_path_factory.mktemp("portfolio-cache"),
                        pseudonym_key="k" * 32)
    try:
        yield build_programmes(settings, tmp_path_factory.mktemp("trials"))
    finally:
        dispose_engines()


@dataclasses.dataclass
class Calls:
    parsed: list[str] = dataclasses.field(default_factory=list)
    rated: int = 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Counts protocol parses (the registry's) and results read (ratings)."""
    seen = Calls()
    parse, rate = registry_module.parse_protocol, entries_module.rate_evidence

    def counting_parse(text: str, *args: Any, **kwargs: Any) -> Any:
        seen.parsed.append(str(args[0]) if args else "?")
        return parse(text, *args, **kwargs)

    def counting_rate(*args: Any, **kwargs: Any) -> Any:
        seen.rated += 1
        return rate(*args, **kwargs)

    monkeypatch.setattr(registry_module, "parse_protocol", counting_parse)
    monkeypatch.setattr(entries_module, "rate_evidence", counting_rate)
    clear_portfolio_cache()
    return seen


def test_a_second_load_parses_nothing(world: ProgrammeWorld, calls: Calls) -> None:
    first = portfolio_entries(world.registry)
    assert len(calls.parsed) == len(TRIALS) and calls.rated == len(TRIALS)
    calls.parsed.clear()
    calls.rated = 0
    second = portfolio_entries(world.registry)
    assert calls.parsed == [] and calls.rated == 0
    assert second == first


def test_a_new_version_or_a_new_final_run_is_read_once(world: ProgrammeWorld,
                                                      calls: Calls) -> None:
    portfolio_entries(world.registry)
    calls.parsed.clear()
    calls.rated = 0
    open_trial = next(t for t in TRIALS if not t.closed)
    # (The decision rule is frozen once the intervention has started: the budget is not.)
    text = protocol_text(open_trial).replace("  pupils: 400\n", "  pupils: 500\n")
    assert text != protocol_text(open_trial)
    amend_protocol(world.registry, parse_protocol(text), text,
                   reason="Élèves bénéficiaires recomptés", today=date(2027, 9, 1))
    entry = next(e for e in portfolio_entries(world.registry) if e.id == open_trial.id)
    assert calls.parsed == [f"{open_trial.id}@v2"] and calls.rated == 0
    assert entry.cost_per_pupil == open_trial.cost / 500

    # A later final run of another experiment: its results are read, once.
    other = next(t for t in TRIALS if t.closed)
    results = dict(world.results[other.id])
    json_text = json.dumps(results, ensure_ascii=False, sort_keys=True)
    now = datetime.now(UTC)
    before = next(e for e in portfolio_entries(world.registry) if e.id == other.id)
    with world.registry.begin() as connection:
        connection.execute(analysis_runs_table.insert().values(
            run_id="20280701T0000Z-cafe0001", run_key=f"{other.id}/final/2028-07-01",
            experiment_id=other.id, analysis="final", due_at=due_time(date(2028, 7, 1)),
            sequence=2, status="done", reason=None, protocol_version=1,
            protocol_sha256=before.protocol_sha256, watermark={},
            software=software_versions(), results_json=json_text, json_path=None,
            json_sha256="0" * 64, html_path=None, html_sha256=None, started_at=now,
            finished_at=now, worker="test"))
    calls.parsed.clear()
    after = next(e for e in portfolio_entries(world.registry) if e.id == other.id)
    portfolio_entries(world.registry)
    assert after.run_id == "20280701T0000Z-cafe0001" != before.run_id
    assert calls.rated == 1 and calls.parsed == []

