"""The faust application of the stream worker.

The app is built from :class:`~experiments.settings.Settings` by :func:`create_app`
rather than declared at import time, so that topic names, partitions and the consumer
group come from the one settings object (and tests can run workers with their own).
Topics, tables and agents are declared on it by the sibling modules.
"""

from __future__ import annotations

import faust

from experiments.settings import Settings
from ingest.producer import kafka_bootstrap

__all__ = ["create_app"]


def create_app(settings: Settings) -> faust.App:
    """A faust app for the stream worker, configured for a single- or multi-broker cluster.

    Notes on the choices (see ../shared/KAFKA-LOCAL.md §3):
    the table store is in memory and rebuilt from its changelog at start (the enrollment
    table is small); the web server is off (ports collide between workers); the session
    timeout is short so that a killed worker's partitions move quickly.
    """
    worker = settings.worker
    datadir = settings.state_dir / "worker" / worker.group_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        worker.group_id,
        broker=f"kafka://{kafka_bootstrap(settings)}",
        store="memory://",
        autodiscover=False,
        datadir=str(datadir),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,
        table_standby_replicas=0,
        web_enabled=worker.web_port > 0,
        web_port=worker.web_port or 6066,
        web_bind="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        producer_acks=-1,
        stream_buffer_maxsize=max(4 * worker.batch_size, 4096),
    )
