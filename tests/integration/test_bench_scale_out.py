"""The scale-out and partitioning benchmarks (issue 20) still run, at tiny sizes.

Their verdicts are checked (exactly once, each analysis once, what month partitioning
does to de-duplication), never their figures: speed is measured, not asserted."""

from __future__ import annotations

import re

import pytest

from tests.integration.test_benchmarks import FIGURE, _run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_scale_out_stores_every_accepted_event_once_through_kills() -> None:
    lines = _run("benchmarks/scale_out.py", "--events", "4000", "--clients", "4",
                 timeout=1200)
    text = "\n".join(lines)
    for kill in ("SIGKILL stream worker 0 and gateway 1", "SIGKILL analysis worker 0"):
        assert kill in text, text
    assert re.search(r"analysis runs due 13, recorded 13, distinct run keys 13, done 13", text)
    assert re.search(rf"^per_core_events_s={FIGURE}", text, re.M), text
    assert re.search(rf"^events_bytes_per_row={FIGURE}", text, re.M), text
    assert "analyses_once=yes" in lines, text
    assert re.fullmatch(r"exactly_once=yes  \(accepted (\d+), stored \1, missing 0, extra 0\)",
                        lines[-1]), text


def test_partitioning_measures_both_tables_and_shows_the_key_it_loses() -> None:
    lines = _run("benchmarks/partitioning.py", "--rows", "20000")
    text = "\n".join(lines)
    assert re.search(rf"^ratio_insert_monthly_to_plain={FIGURE}", text, re.M), text
    assert re.search(rf"^ratio_delete_month_to_drop={FIGURE}", text, re.M), text
    # The partitioned table's key (event_id, occurred_at) lets an event id in twice.
    assert re.search(r"dedup +plain .* stored 0 more: 1 rows for one event_id", text), text
    assert re.search(r"dedup +monthly .* stored 1 more: 2 rows for one event_id", text), text


def test_capacity_model_prints_its_assumptions_and_the_table() -> None:
    lines = _run("benchmarks/capacity.py", "--share", "1")
    text = "\n".join(lines)
    assert lines[0].startswith("assumptions: 12 M pupils, 100% in experiments"), text
    for row in ("peak ", "preuve.events partitions", "all ingest cores",
                "PostgreSQL events per year", "PostgreSQL write rate at peak"):
        assert any(line.startswith(row) for line in lines), (row, text)
