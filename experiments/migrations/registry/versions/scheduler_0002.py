"""scheduler: data-sufficiency checks, recorded once per run key before it falls due

Revision ID: scheduler_0002
Revises: scheduler_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "scheduler_0002"
down_revision = "scheduler_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sufficiency_checks",
        sa.Column("run_key", sa.String(160), primary_key=True),
        sa.Column("experiment_id", sa.String(63), nullable=False),
        sa.Column("analysis", sa.String(32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        # ok | warning | blocking: the worst of the checks.
        sa.Column("status", sa.String(16), nullable=False),
        # JSON: [{code, status, figures, message_fr, message_en}, ...]
        sa.Column("checks", sa.Text, nullable=False),
    )
    op.create_index("ix_sufficiency_checks_experiment", "sufficiency_checks",
                    ["experiment_id", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_sufficiency_checks_experiment", table_name="sufficiency_checks")
    op.drop_table("sufficiency_checks")
