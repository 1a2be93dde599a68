"""events and per-day usage aggregates of one experiment

Revision ID: store_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "store_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resource_id", sa.String(128), nullable=False),
        sa.Column("learner_key", sa.String(64), nullable=False),
        sa.Column("class_id", sa.String(128), nullable=False),
        sa.Column("school_uai", sa.String(16), nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("verb", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(256), nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("success", sa.Boolean, nullable=True),
        sa.Column("extensions", sa.JSON, nullable=True),
    )
    op.create_index("ix_events_class_id", "events", ["class_id"])
    op.create_index("ix_events_learner_key", "events", ["learner_key"])
    op.create_table(
        "daily_usage",
        sa.Column("learner_key", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("class_id", sa.String(128), nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("sessions", sa.Integer, nullable=False),
        sa.Column("activities", sa.Integer, nullable=False),
        sa.Column("active_seconds", sa.Float, nullable=False),
    )
    op.create_index("ix_daily_usage_class_id", "daily_usage", ["class_id"])


def downgrade() -> None:
    op.drop_table("daily_usage")
    op.drop_table("events")
