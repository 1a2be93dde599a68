"""gateway: receipts keyed by (resource_id, event_id)

Revision ID: gateway_0002_by_resource
Revises: gateway_0001

An event id is the idempotency key of one resource's events: keyed by the id alone, an
EdTech could claim another resource's ids ahead of it (its events then refused 409) or
learn from a 409 which ids another resource used. The table is rebuilt with the pair as
its primary key (SQLite cannot change a primary key in place); receipts are kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "gateway_0002_by_resource"  # alembic_version holds 32 characters
down_revision = "gateway_0001"
branch_labels = None
depends_on = None

_COLUMNS = "resource_id, event_id, content_sha256, state, received_at"


def _rebuild(primary_key: list[str]) -> None:
    op.drop_index("ix_gateway_receipts_received_at", table_name="gateway_receipts")
    op.rename_table("gateway_receipts", "gateway_receipts_old")
    op.create_table(
        "gateway_receipts",
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(*primary_key, name="pk_gateway_receipts"),
    )
    op.execute(f"INSERT INTO gateway_receipts ({_COLUMNS}) "
               f"SELECT {_COLUMNS} FROM gateway_receipts_old")
    op.drop_table("gateway_receipts_old")
    op.create_index("ix_gateway_receipts_received_at", "gateway_receipts", ["received_at"])


def upgrade() -> None:
    _rebuild(["resource_id", "event_id"])


def downgrade() -> None:
    # Two resources' receipts of one event id cannot both stay: keep the oldest.
    op.execute("DELETE FROM gateway_receipts WHERE EXISTS (SELECT 1 FROM gateway_receipts "
               "AS o WHERE o.event_id = gateway_receipts.event_id AND "
               "(o.received_at, o.resource_id) < (gateway_receipts.received_at, "
               "gateway_receipts.resource_id))")
    _rebuild(["event_id"])
