"""gateway: receipts of accepted events (the gateway's de-duplication index)

Revision ID: gateway_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "gateway_0001"
down_revision = None
branch_labels = ("gateway",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_receipts",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        # 'pending': a gateway is writing it since received_at; 'confirmed': acked by Kafka;
        # 'failed': the write timed out (it may be in Kafka). See ingest/gateway.py.
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gateway_receipts_received_at", "gateway_receipts", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_gateway_receipts_received_at", table_name="gateway_receipts")
    op.drop_table("gateway_receipts")
