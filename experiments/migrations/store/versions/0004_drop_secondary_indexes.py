"""drop the two secondary indexes of events (ix_events_learner_key, ix_events_class_id)

Measured for issue 20 (``benchmarks/store_indexes.py``, README "Issue 20: usage fold and
indexes"): on a 10M-event PostgreSQL store, erasing one pupil takes about 4 s without
them (under the 10 s the issue allows; 0.03 s with them) and one class about 4 s, while
each insert costs PostgreSQL about a fifth less without them. Nothing else needs them:
analyses and active time read whole stores (the key on ``event_id`` stays, it makes
writes idempotent), and ``daily_usage`` keeps its own key on (learner_key, day).

Revision ID: store_0004
Revises: store_0003
"""

from __future__ import annotations

from alembic import op

revision = "store_0004"
down_revision = "store_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_events_learner_key", table_name="events")
    op.drop_index("ix_events_class_id", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_class_id", "events", ["class_id"])
    op.create_index("ix_events_learner_key", "events", ["learner_key"])
