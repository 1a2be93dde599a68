"""validations: a class validated by its académie, then by its collectivité (issue 17)

Revision ID: validations_0001
Revises:

When a protocol declares ``enrollment: {validations: [academie, collectivite]}``, a class
counts as enrolled only once both validations are recorded (who, when);
:mod:`experiments.enrollment.validations`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "validations_0001"
down_revision = None
branch_labels = ("validations",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrollment_validations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(63), nullable=False, index=True),
        sa.Column("class_id", sa.String(128), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("school_uai", sa.String(8), nullable=False),
        sa.Column("academie", sa.String(32), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("pupils", sa.Integer, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("stratum", sa.String(512), nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("academie_by", sa.String(256), nullable=False),
        sa.Column("academie_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("collectivite_by", sa.String(256), nullable=True),
        sa.Column("collectivite_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("experiment_id", "class_id"),
    )


def downgrade() -> None:
    op.drop_table("enrollment_validations")
