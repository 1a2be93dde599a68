"""The store benchmarks of issue 20 still run with one command and print their ratio
lines (tiny sizes; the figures are measured by the benchmarks, never asserted here)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_benchmarks import FIGURE, ROOT, _run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_store_write_prints_before_after_and_floor_with_their_ratios() -> None:
    lines = _run("benchmarks/store_write.py", "--events", "8000", "--rounds", "2")
    for name in ("pg_us_per_event_before", "pg_us_per_event_after", "pg_us_per_event_floor",
                 "ratio_store_pg_us_after_to_before",
                 "ratio_store_events_per_s_after_to_before"):
        assert any(re.match(rf"{name}={FIGURE}", line) for line in lines), (name, lines)
    assert lines[-1].startswith("ratio_") and "baseline" in lines[-1]


def test_store_indexes_prints_erasure_and_insert_figures() -> None:
    lines = _run("benchmarks/store_indexes.py", "--events", "20000", "--batches", "2")
    for name in ("erase_pupil_s_with_indexes", "erase_pupil_s_without_indexes",
                 "insert_pg_us_per_event_with_indexes", "insert_pg_us_per_event_without_indexes",
                 "ratio_insert_pg_us_without_to_with_indexes"):
        assert any(re.match(rf"{name}={FIGURE}", line) for line in lines), (name, lines)


def test_worker_fold_prints_the_worker_ratio_against_an_earlier_tree(tmp_path: Path) -> None:
    before = tmp_path / "before"
    before.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
    lines = _run("benchmarks/worker_fold.py", "--before-tree", str(before), "--events", "2000",
                 "--rounds", "1")
    assert re.match(rf"ratio_worker_pg_after_to_before={FIGURE}", lines[-2]), lines
    assert lines[-1].startswith("ratio_worker_pg_cpu_after_to_before=") and "baseline" in lines[-1]
