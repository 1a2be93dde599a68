"""Worker → PostgreSQL events/s before and after issue 20's store changes, interleaved.

One PLAINTEXT broker, one pre-loaded topic of N events (bench_ingest.py's events and
classes); then, round after round, one ``preuve worker`` from the code before (a copy of
an earlier commit, ``--before-tree``, e.g. ``git archive main | tar -x -C /tmp/before``)
and one from this tree, each from the start of the topic (its own consumer group) into
its own fresh database of one durable cluster. Per run: events/s (the worker's own
"stored" log lines), worker CPU µs/event and PostgreSQL CPU µs/event (/proc).

    .venv/bin/python benchmarks/worker_fold.py --before-tree /tmp/before [--events 100000]
        [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks.bench_ingest import (  # noqa: E402
    _enrollments,
    _settings,
    _stored_in_log,
    preload,
)
from benchmarks.proc_cpu import cpu_seconds, postgres_cpu_seconds  # noqa: E402
from experiments.database import dispose_engines  # noqa: E402
from experiments.settings import KafkaSecurity, KafkaSettings, Settings  # noqa: E402
from ingest.kafka.access import ensure_topics  # noqa: E402
from ingest.kafka.broker import LocalBroker  # noqa: E402
from ingest.kafka.principals import USERS  # noqa: E402
from ingest.kafka.producer import publish_enrollments  # noqa: E402
from tests.support.events import register_enrollments  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402


def run(settings: Settings, tree: Path, count: int, log: Path,
        cluster: PostgresCluster) -> tuple[float, float, float]:
    """(events/s, worker CPU µs/event, PostgreSQL CPU µs/event) of one worker of ``tree``."""
    register_enrollments(settings, _enrollments())
    here = Path.cwd()
    os.chdir(tree)  # `python -m experiments` imports the tree it starts in
    try:
        worker = WorkerProcess(settings, log).start(ready_timeout_s=120)
    finally:
        os.chdir(here)
    assert worker.process is not None
    pid = worker.process.pid
    cpu, pg, began = cpu_seconds(pid), postgres_cpu_seconds(cluster), time.perf_counter()
    try:
        while _stored_in_log(log) < count:
            if worker.process.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.2)
        elapsed = time.perf_counter() - began
        cpu, pg = cpu_seconds(pid) - cpu, postgres_cpu_seconds(cluster) - pg
    finally:
        worker.stop()
    engine = sa.create_engine(settings.database_url.get_secret_value())  # type: ignore[union-attr]
    with engine.connect() as connection:
        stored = connection.scalar(sa.text("SELECT count(*) FROM exp_bench_ingest.events"))
        usage = connection.scalar(sa.text("SELECT sum(events) FROM exp_bench_ingest.daily_usage"))
    engine.dispose()
    if stored != count or usage != count:  # the last fold ran at the worker's stop
        raise RuntimeError(f"{stored} events stored, {usage} in daily usage, {count} sent")
    return count / elapsed, cpu / count * 1e6, pg / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before-tree", type=Path, required=True)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="preuve-worker-fold-"))
    broker = LocalBroker(root / "kafka", Settings().cache_dir, KafkaSettings().version,
                         partitions=4, heap="1g", secured=False, users=USERS)
    cluster = None
    try:
        bootstrap = broker.up().bootstrap
        cluster = PostgresCluster.start(durable=True)
        kafka = KafkaSettings(security=KafkaSecurity(protocol="PLAINTEXT"))
        base = _settings(root, kafka, bootstrap, "preload")
        ensure_topics(base)
        publish_enrollments(base, _enrollments())
        preload(base, args.events)
        trees = {"before": args.before_tree.resolve(), "after": ROOT}
        figures: dict[str, list[tuple[float, float, float]]] = {way: [] for way in trees}
        for r in range(args.rounds):
            for way, tree in trees.items():
                tag = f"{way}-{r}"
                settings = _settings(root, kafka, bootstrap, tag,
                                     cluster.create_database(f"bench_{way}_{r}"))
                figures[way].append(run(settings, tree, args.events, root / f"{tag}.log",
                                        cluster))
                rate, cpu, pg = figures[way][-1]
                print(f"round {r} {way}: {rate:,.0f} events/s, worker {cpu:.1f} µs/event, "
                      f"PostgreSQL {pg:.1f} µs/event", flush=True)
                dispose_engines()
        mean = {way: [sum(x) / len(x) for x in zip(*runs, strict=True)]
                for way, runs in figures.items()}
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
              f"{args.events:,} events, PLAINTEXT broker, {args.rounds} interleaved rounds")
        for way in trees:
            rate, cpu, pg = mean[way]
            print(f"worker_pg_events_per_s_{way}={rate:,.0f}  (worker {cpu:.1f} + PostgreSQL "
                  f"{pg:.1f} µs/event)")
        print(f"ratio_worker_pg_after_to_before={mean['after'][0] / mean['before'][0]:.2f}  "
              "(baseline: the worker before issue 20's store changes, same topic, same run)")
        print(f"ratio_worker_pg_cpu_after_to_before="
              f"{sum(mean['after'][1:]) / sum(mean['before'][1:]):.2f}  "
              "(baseline: the same, worker + PostgreSQL CPU per event)")
    finally:
        dispose_engines()
        if cluster is not None:
            cluster.stop()
        broker.down()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
