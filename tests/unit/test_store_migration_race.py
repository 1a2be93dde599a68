"""Processes that open the same new SQLite store at once all succeed (one migrates, the
others find it migrated): a worker and a reader racing once failed with "table events
already exists" in tests/integration/test_stream_worker.py[sqlite]."""

from __future__ import annotations

import multiprocessing
from pathlib import Path


def _open_store(state_dir: str, start: multiprocessing.synchronize.Event) -> None:
    from experiments.database import store_engine
    from experiments.settings import Settings

    start.wait()
    store_engine(Settings(state_dir=Path(state_dir)), "race")


def test_concurrent_first_openings_of_one_store_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    for attempt in range(3):  # the race was narrow: several rounds, fresh store each
        start = context.Event()
        state = tmp_path / f"round{attempt}"
        processes = [context.Process(target=_open_store, args=(str(state), start))
                     for _ in range(4)]
        for process in processes:
            process.start()
        start.set()
        for process in processes:
            process.join(120)
        assert [p.exitcode for p in processes] == [0, 0, 0, 0]
