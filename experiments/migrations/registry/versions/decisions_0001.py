"""decisions: the post-experiment decision of each experiment and its acknowledgement

Revision ID: decisions_0001
Revises:

One row per decision the researcher records (``preuve protocol decide``): généraliser,
ajuster, arrêter or prolonger, with its reason; the programme officer's acknowledgement
(in the portal) fills the row's ``acknowledged_*`` columns. Closing an experiment needs
the latest row acknowledged (issue 19).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "decisions_0001"
down_revision = None
branch_labels = ("decisions",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "post_experiment_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(63), nullable=False, index=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(256), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(256), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("post_experiment_decisions")
