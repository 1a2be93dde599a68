"""enrollment: enrollments, the append-only allocation log, withdrawals

Revision ID: enrollment_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "enrollment_0001"
down_revision = None
branch_labels = ("enrollment",)
depends_on = None

# The allocation log is append-only: the database itself refuses UPDATE and DELETE, so
# that no code path (nor a hurried hand in a SQL shell) can rewrite who got which arm.
_SQLITE_GUARDS = [
    f"""CREATE TRIGGER allocation_log_no_{verb.lower()} BEFORE {verb} ON allocation_log
        BEGIN SELECT RAISE(ABORT, 'allocation_log is append-only'); END"""
    for verb in ("UPDATE", "DELETE")
]
_POSTGRES_GUARDS = [
    """CREATE FUNCTION allocation_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'allocation_log is append-only'; END $$""",
    """CREATE TRIGGER allocation_log_append_only BEFORE UPDATE OR DELETE ON allocation_log
       FOR EACH ROW EXECUTE FUNCTION allocation_log_append_only()""",
]


def upgrade() -> None:
    op.create_table(
        "enrollment_designs",
        sa.Column("experiment_id", sa.String(63), primary_key=True),
        sa.Column("resource_id", sa.String(63), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("design", sa.JSON, nullable=False),
        sa.Column("first_enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_enrolled_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(63), nullable=False),
        sa.Column("class_id", sa.String(128), nullable=False, index=True),
        sa.Column("school_uai", sa.String(8), nullable=False),
        sa.Column("academie", sa.String(32), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("pupils", sa.Integer, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("stratum", sa.String(512), nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("arm", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_status", sa.String(16), nullable=True),
        sa.UniqueConstraint("experiment_id", "class_id", name="uq_enrollments_experiment_class"),
    )
    op.create_table(
        "allocation_log",
        sa.Column("experiment_id", sa.String(63), primary_key=True),
        sa.Column("sequence", sa.Integer, primary_key=True),
        sa.Column("class_id", sa.String(128), nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("stratum", sa.String(512), nullable=False),
        sa.Column("block", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("draw", sa.Float(precision=53), nullable=False),
        sa.Column("arm", sa.String(63), nullable=False),
        sa.Column("allocated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("experiment_id", "unit_id", name="uq_allocation_log_unit"),
    )
    op.create_table(
        "withdrawals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(63), nullable=False, index=True),
        sa.Column("class_id", sa.String(128), nullable=False),
        sa.Column("learner_id", sa.String(128), nullable=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("data_policy", sa.String(8), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
    )
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRES_GUARDS if dialect == "postgresql" else _SQLITE_GUARDS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER allocation_log_append_only ON allocation_log")
        op.execute("DROP FUNCTION allocation_log_append_only()")
    op.drop_table("withdrawals")
    op.drop_table("allocation_log")
    op.drop_table("enrollments")
    op.drop_table("enrollment_designs")
