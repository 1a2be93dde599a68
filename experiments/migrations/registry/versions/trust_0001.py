"""trust: a record of every purge of an experiment's row-level data

Revision ID: trust_0001
Revises:

The audit log says who purged what and when; this table lets the portal and the
scheduler ask "is this experiment purged?" without parsing the log.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "trust_0001"
down_revision = None
branch_labels = ("trust",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_purges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(63), nullable=False, index=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("keep_until", sa.Date, nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("removed", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retention_purges")
