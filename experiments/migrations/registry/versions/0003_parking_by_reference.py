"""core: park unrouted events by reference (topic, partition, offset), never by content

Revision ID: core_0003
Revises: core_0002

Events whose class is not enrolled yet used to be parked with their payload; the payload
carries the raw learner id, which must never reach a database. They are now parked by
their place in the ingress topic and re-read from it when the enrollment arrives.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "core_0003"
down_revision = "core_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("unrouted_events")
    op.create_table(
        "unrouted_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("class_id", sa.String(128), nullable=False, index=True),
        sa.Column("resource_id", sa.String(128), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("unrouted_events")
    op.create_table(
        "unrouted_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("class_id", sa.String(128), nullable=False, index=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
