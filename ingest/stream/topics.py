"""The topics the stream worker reads and writes, declared on its faust app."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from experiments.settings import Settings

__all__ = ["StreamTopics", "declare_topics"]


@dataclass(frozen=True)
class StreamTopics:
    events: faust.TopicT
    enrollments: faust.TopicT
    deadletter: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> StreamTopics:
    """Declare the ingress, enrollment and dead-letter topics.

    Values are raw bytes on purpose: the agent validates each event with the pydantic
    contract itself, so that a bad event is dead-lettered with its reason instead of
    failing in faust's decoder (STYLE.md §7).
    """
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    partitions = settings.kafka.partitions
    return StreamTopics(
        events=app.topic(settings.topics.events, partitions=partitions, **raw),
        enrollments=app.topic(settings.topics.enrollments, partitions=partitions, **raw),
        deadletter=app.topic(settings.topics.deadletter, **raw),
    )
