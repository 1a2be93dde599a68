"""the daily-usage fold queue (usage_pending) and its watermark (usage_fold), issue 20

PostgreSQL stores fold daily usage outside the insert transaction (experiments/store.py):
the insert queues per pupil-day counts in ``usage_pending``, a fold moves them into
``daily_usage`` under the lock of ``usage_fold``'s one row. An existing store's usage was
folded in its insert transactions, so its queue starts empty and its watermark counts
the events its ``daily_usage`` already holds.

Revision ID: store_0003
Revises: store_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "store_0003"
down_revision = "store_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_pending",
        sa.Column("learner_key", sa.String(64), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("class_id", sa.String(128), nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("sessions", sa.Integer, nullable=False),
        sa.Column("activities", sa.Integer, nullable=False),
        sa.Column("active_seconds", sa.Float, nullable=False),
    )
    fold = op.create_table(
        "usage_fold",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("folded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("folded_events", sa.BigInteger, nullable=False),
    )
    usage = sa.table("daily_usage", sa.column("events", sa.Integer))
    counted = op.get_bind().scalar(sa.select(sa.func.coalesce(sa.func.sum(usage.c.events), 0)))
    op.bulk_insert(fold, [{"id": 1, "folded_at": None, "folded_events": int(counted or 0)}])


def downgrade() -> None:
    # Fold what is queued first, or its events would never be counted.
    op.execute(
        "INSERT INTO daily_usage (learner_key, day, class_id, arm, events, sessions, "
        "activities, active_seconds) SELECT learner_key, day, max(class_id), max(arm), "
        "sum(events), sum(sessions), sum(activities), sum(active_seconds) FROM usage_pending "
        "GROUP BY learner_key, day ON CONFLICT (learner_key, day) DO UPDATE SET "
        "events = daily_usage.events + excluded.events, "
        "sessions = daily_usage.sessions + excluded.sessions, "
        "activities = daily_usage.activities + excluded.activities, "
        "active_seconds = daily_usage.active_seconds + excluded.active_seconds")
    op.drop_table("usage_fold")
    op.drop_table("usage_pending")
