"""Soak (`make soak`): a steady load through Kafka into PostgreSQL while two stream workers
of one group are SIGKILLed in turn and restarted every N seconds; ends with the exact
event set in the store.

It starts its own Kafka broker and PostgreSQL cluster (fsync on), enrolls 200 classes,
then for ``--minutes`` produces ``--rate`` events/s (2% of them exact re-sends), kills
one of the two workers every ``--kill-every`` seconds (in turn) and restarts it at once:
each kill is a rebalance while the other worker keeps consuming, and the dead member
keeps its partitions until its session expires. After the load it
waits for the store to catch up and compares, event id by event id, what was sent with
what is stored, and the daily usage totals with the stored events (a re-delivered event
counted twice would show there). Prints its figures; exit 1 if the sets differ.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--rate 200] [--kill-every 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from experiments.database import dispose_engines  # noqa: E402
from experiments.settings import (  # noqa: E402
    KafkaSecurity,
    KafkaSettings,
    Settings,
    TopicNames,
    WorkerSettings,
)
from experiments.store import ExperimentStore, events_table  # noqa: E402
from ingest.contract import EnrollmentMessage  # noqa: E402
from ingest.kafka import clients  # noqa: E402
from ingest.kafka.access import ensure_topics  # noqa: E402
from ingest.kafka.broker import LocalBroker, free_port  # noqa: E402
from ingest.kafka.principals import GATEWAY, USERS  # noqa: E402
from tests.support.events import publish_registered  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

CLASSES = 200
EXPERIMENT = "soak"


def _event(rng: random.Random) -> dict[str, object]:
    class_no = rng.randrange(CLASSES)
    when = datetime(2027, 10, 4, 8, tzinfo=UTC) + timedelta(minutes=rng.randrange(86_400))
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "occurred_at": when.isoformat(), "resource_id": "lectio",
        "learner_id": f"gar-{class_no}-{rng.randrange(25)}", "class_id": f"c{class_no:04d}",
        "school_uai": "0750001U", "verb": "exercise_answered", "duration_s": rng.randrange(5, 600),
    }


class Load:
    """Produces ``rate`` events/s in 10 ticks a second, remembering every id sent."""

    def __init__(self, settings: Settings, rate: int) -> None:
        self.settings = settings
        self.rate = rate
        self.sent: set[str] = set()
        self.resent = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(20270901)
        producer = clients.producer(self.settings, GATEWAY, linger_ms=20)
        recent: list[bytes] = []
        tick = 0.1
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                ids = []
                for _ in range(max(1, round(self.rate * tick))):
                    if recent and rng.random() < 0.02:
                        value = rng.choice(recent)
                        self.resent += 1
                    else:
                        event = _event(rng)
                        value = json.dumps(event).encode()
                        ids.append(str(event["event_id"]))
                        recent = (recent + [value])[-1000:]
                    key = json.loads(value)["class_id"].encode()
                    producer.send(self.settings.topics.events, key=key, value=value)  # type: ignore[attr-defined]
                producer.flush()  # type: ignore[attr-defined]
                self.sent.update(ids)  # only once Kafka acknowledged them
                next_at += tick
                time.sleep(max(0.0, next_at - time.monotonic()))
        except BaseException as error:  # noqa: BLE001 - reported by main, which fails the soak
            self.error = error
        finally:
            producer.close()  # type: ignore[attr-defined]


def _stored_ids(store: ExperimentStore) -> set[str]:
    with store.engine.connect() as connection:
        return {row[0] for row in connection.execute(sa.select(events_table.c.event_id))}


def _count(store: ExperimentStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(events_table)) or 0)


def _usage_events(store: ExperimentStore) -> int:
    # The workers still run: usage not folded yet is counted from the fold queue.
    return sum(day.events for day in store.read_daily_usage().rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=200, help="events per second")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between kills")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="preuve-soak-"))
    broker = LocalBroker(root / "kafka", Settings().cache_dir, KafkaSettings().version,
                         port=free_port(), partitions=4, heap="768m", users=USERS)
    cluster: PostgresCluster | None = None
    workers: list[WorkerProcess] = []
    load: Load | None = None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        state = broker.up()
        cluster = PostgresCluster.start(durable=True)
        settings = Settings(
            simulated_now="2028-08-31T12:00:00+02:00",  # its events: 2027-2028
            state_dir=root / "state", kafka_bootstrap=state.bootstrap,
            # Secured as Preuve runs: SASL_SSL, ACLs, every client its service's user.
            kafka=KafkaSettings(security=KafkaSecurity(secrets_dir=broker.secrets_dir)),
            database_url=cluster.create_database("soak"),
            pseudonym_key="soak-key" * 5,
            topics=TopicNames(events="soak.events", deadletter="soak.deadletter",
                              enrollments="soak.enrollments", analysis_requests="soak.requests"),
            worker=WorkerSettings(group_id="soak-router", batch_size=500, batch_seconds=0.3),
        )
        ensure_topics(settings)
        publish_registered(settings, [
            EnrollmentMessage(class_id=f"c{i:04d}", experiment_id=EXPERIMENT, resource_id="lectio",
                              arm=("lectio", "usual")[i % 2], school_uai="0750001U",
                              academie="paris", at=datetime(2027, 9, 1, tzinfo=UTC))
            for i in range(CLASSES)])
        store = ExperimentStore(settings, EXPERIMENT)
        workers = [WorkerProcess(settings, root / f"worker-{n}.log").start(ready_timeout_s=120)
                   for n in (0, 1)]
        load = Load(settings, args.rate)
        thread = threading.Thread(target=load.run, name="load")
        began = time.monotonic()
        thread.start()
        kills, restarts, lag_max = 0, [], 0
        end = began + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(args.kill_every, max(0.0, end - time.monotonic())))
            if time.monotonic() >= end:
                break
            lag_max = max(lag_max, len(load.sent) - _count(store))
            victim = workers[kills % 2]
            victim.kill()
            kills += 1
            t0 = time.monotonic()
            victim.start(ready_timeout_s=120)
            restarts.append(time.monotonic() - t0)
            print(f"{(time.monotonic() - began) / 60:5.1f} min: kill {kills}, "
                  f"{len(load.sent)} sent, {_count(store)} stored", flush=True)
        load.stop.set()
        thread.join(60)
        if load.error is not None:
            raise load.error
        sent_at = time.monotonic()
        # Wait for the store to catch up; give up after 60 s without progress (a lost
        # event never arrives) or 600 s in all.
        deadline, last, progress_at = sent_at + 600, -1, time.monotonic()
        while time.monotonic() < deadline:
            count = _count(store)
            if count >= len(load.sent) or time.monotonic() - progress_at > 60:
                break
            if count != last:
                last, progress_at = count, time.monotonic()
            time.sleep(1.0)
        catch_up = time.monotonic() - sent_at
        time.sleep(3.0)  # a late second copy would show now
        stored = _stored_ids(store)
        usage = _usage_events(store)
        missing, extra = len(load.sent - stored), len(stored - load.sent)
        minutes = (sent_at - began) / 60
        print(f"soak: {minutes:.1f} min at {args.rate} events/s, 2 workers, machine "
              f"{platform.machine()} {os.cpu_count()} cpu, PostgreSQL store (fsync on)")
        print(f"sent={len(load.sent)} unique (+{load.resent} exact re-sends) "
              f"stored={len(stored)} missing={missing} extra={extra} usage_events={usage}")
        print(f"kills={kills} restart_to_ready_s(mean)="
              f"{sum(restarts) / max(1, len(restarts)):.1f} "
              f"max_backlog_at_kill={lag_max} catch_up_after_load_s={catch_up:.1f}")
        exact = missing == 0 and extra == 0 and usage == len(stored)
        print(f"exact_event_set={'yes' if exact else 'NO'}")
        return 0 if exact else 1
    finally:
        if load is not None:
            load.stop.set()
        for worker in workers:
            worker.stop()
        dispose_engines()
        if cluster is not None:
            cluster.stop()
        broker.down()


if __name__ == "__main__":
    sys.exit(main())
