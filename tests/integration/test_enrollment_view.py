"""The stream worker's view of ``preuve.enrollments``, against the real broker."""

from __future__ import annotations

import asyncio

import pytest

from ingest.kafka.producer import enrollment_key, ensure_topics, new_producer, publish_enrollments
from ingest.stream.enrollments import EnrollmentView
from tests.conftest import SettingsFactory
from tests.support.events import enrollment

pytestmark = pytest.mark.integration


def test_the_view_reads_the_whole_topic_keeps_two_resources_and_honours_tombstones(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(kafka=True)
    ensure_topics(settings)
    publish_enrollments(settings, [
        enrollment("cls-a", "exp-reading", "lectio", resource_id="lectio"),
        # The same class in a second experiment (another resource): both must survive.
        enrollment("cls-a", "exp-maths", "usual", resource_id="numeris"),
        enrollment("cls-b", "exp-reading", "usual", resource_id="lectio"),
    ])
    producer = new_producer(settings)
    producer.send(settings.topics.enrollments, key=enrollment_key("cls-b", "lectio"), value=None)  # type: ignore[attr-defined]
    producer.flush()  # type: ignore[attr-defined]

    async def scenario() -> tuple[list[object], object]:
        view = EnrollmentView(settings.kafka_bootstrap or "", settings.topics.enrollments)
        await view.start()
        try:
            at_start = [view.lookup("cls-a", "lectio"), view.lookup("cls-a", "numeris"),
                        view.lookup("cls-b", "lectio")]
            follow = asyncio.create_task(view.follow())
            publish_enrollments(settings, [enrollment("cls-c", "exp-reading", "lectio")])
            for _ in range(200):
                if view.lookup("cls-c", "lectio") is not None:
                    break
                await asyncio.sleep(0.1)
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)
            return at_start, view.lookup("cls-c", "lectio")
        finally:
            await view.stop()

    (reading, maths, withdrawn_b), late = asyncio.run(scenario())
    producer.close()  # type: ignore[attr-defined]
    assert reading is not None and reading.experiment_id == "exp-reading"  # type: ignore[attr-defined]
    assert maths is not None and maths.experiment_id == "exp-maths"  # type: ignore[attr-defined]
    assert withdrawn_b is None, "a tombstone must remove the enrollment"
    assert late is not None, "an enrollment published after start must be followed"
