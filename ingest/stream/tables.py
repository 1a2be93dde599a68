"""The enrollment table: class_id → {resource_id: enrollment record}.

Fed by ``preuve.enrollments`` and co-partitioned with ``preuve.events`` (both keyed by
class_id, same partition count), so a worker looks up the enrollments of exactly the
classes whose events it consumes.
"""

from __future__ import annotations

import faust

from experiments.settings import Settings

__all__ = ["declare_enrollment_table"]


def declare_enrollment_table(app: faust.App, settings: Settings) -> faust.Table:
    """Declare the enrollment table (changelog-backed, in memory)."""
    return app.Table(
        "enrollments",
        default=None,
        partitions=settings.kafka.partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        help="class_id -> {resource_id: EnrollmentMessage as JSON}",
    )
