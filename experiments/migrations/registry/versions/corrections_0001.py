"""corrections: an enrollment's pupil count or attributes corrected before the intervention

Revision ID: corrections_0001
Revises:

Each correction is a new version of the class's enrollment: the changed fields (old and
new values), the reason and who made it. The arm and the allocation log never change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "corrections_0001"
down_revision = None
branch_labels = ("corrections",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrollment_corrections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(63), nullable=False, index=True),
        sa.Column("class_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("changes", sa.JSON, nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("experiment_id", "class_id", "version"),
    )


def downgrade() -> None:
    op.drop_table("enrollment_corrections")
