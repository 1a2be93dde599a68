"""The stream worker's view of ``preuve.enrollments``, against the real broker."""

from __future__ import annotations

import asyncio
import functools

import pytest

from experiments.database import registry_engine
from experiments.enrollment.publishing import registered_enrollments
from ingest.kafka import clients
from ingest.kafka.access import ensure_topics
from ingest.kafka.principals import ENROLLMENT
from ingest.kafka.producer import enrollment_key, publish_enrollments
from ingest.stream.enrollments import EnrollmentView
from tests.conftest import SettingsFactory
from tests.support.events import enrollment, publish_registered

pytestmark = pytest.mark.integration


def test_the_view_reads_the_whole_topic_keeps_two_resources_and_honours_tombstones(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(kafka=True)
    ensure_topics(settings)
    publish_registered(settings, [
        enrollment("cls-a", "exp-reading", "lectio", resource_id="lectio"),
        # The same class in a second experiment (another resource): both must survive.
        enrollment("cls-a", "exp-maths", "usual", resource_id="numeris"),
        enrollment("cls-b", "exp-reading", "usual", resource_id="lectio"),
    ])
    # Records the registry does not hold (a class never enrolled; a registered class under
    # another arm): written by the enrollment principal, yet the view must ignore them.
    publish_enrollments(settings, [
        enrollment("cls-forged", "exp-reading", "lectio"),
        enrollment("cls-a", "exp-reading", "usual", resource_id="lectio-bis"),
    ])
    producer = clients.producer(settings, ENROLLMENT)
    producer.send(settings.topics.enrollments, key=enrollment_key("cls-b", "lectio"), value=None)
    producer.flush()
    verify = functools.partial(registered_enrollments, registry_engine(settings))

    async def scenario() -> tuple[list[object], object, int]:
        view = EnrollmentView(settings, verify)
        await view.start()
        try:
            at_start = [view.lookup("cls-a", "lectio"), view.lookup("cls-a", "numeris"),
                        view.lookup("cls-b", "lectio"), view.lookup("cls-forged", "lectio"),
                        view.lookup("cls-a", "lectio-bis")]
            follow = asyncio.create_task(view.follow())
            publish_registered(settings, [enrollment("cls-c", "exp-reading", "lectio")])
            for _ in range(200):
                if view.lookup("cls-c", "lectio") is not None:
                    break
                await asyncio.sleep(0.1)
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)
            return at_start, view.lookup("cls-c", "lectio"), view.ignored
        finally:
            await view.stop()

    with caplog.at_level("WARNING", logger="ingest.stream.enrollments"):
        (reading, maths, withdrawn_b, forged, other_resource), late, ignored = asyncio.run(
            scenario())
    producer.close()
    assert reading is not None and reading.experiment_id == "exp-reading"  # type: ignore[attr-defined]
    assert maths is not None and maths.experiment_id == "exp-maths"  # type: ignore[attr-defined]
    assert withdrawn_b is None, "a tombstone must remove the enrollment"
    assert forged is None and other_resource is None, "an unregistered record was believed"
    assert ignored == 2
    ignored_lines = [r.getMessage() for r in caplog.records
                     if "the registry does not hold" in r.getMessage()]
    # the two records sit on partitions of their own keys: either may be read first
    assert len(ignored_lines) == 2 and any("cls-forged" in line for line in ignored_lines), \
        ignored_lines
    assert late is not None, "an enrollment published after start must be followed"
