"""The gateway benchmark writes a topic that the stream worker does not read.

bench_ingest measures the gateway, then the end-to-end latency through a stream worker.
When the gateway's events went to ``preuve.events.gateway``, the worker's pattern
subscription (every resource's own topic) read them all first, and the latency phase
measured that backlog (p50 13 to 19 s instead of tens of milliseconds).
"""

from __future__ import annotations

import re

from benchmarks.ingest_gateway import bench_topic
from experiments.settings import Settings
from ingest.kafka.topics import events_pattern


def test_the_gateway_bench_topic_is_not_one_the_worker_reads() -> None:
    settings = Settings()
    assert re.fullmatch(events_pattern(settings), settings.topics.events)  # the pattern works
    assert not re.fullmatch(events_pattern(settings), bench_topic(settings))
