"""enrollment: pupils randomised one by one (learner designs), by pseudonym only

Revision ID: enrollment_0003
Revises: enrollment_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "enrollment_0003"
down_revision = "enrollment_0002"
branch_labels = None
depends_on = None

# One row per pupil of a learner-randomised experiment. ``learner_key`` is the pupil's
# per-experiment pseudonym (ingest.pseudonym.pseudonymise), the same key the store gives
# the pupil's events; the id the académie gave never enters the registry. Like a class's,
# a pupil's arm is written once and never changes (intention to treat). The pupil's draw
# in the append-only allocation log is named by ``unit_id`` ("pupil:<sequence>"), not by
# the pseudonym: the log holds no personal data, and erasing a pupil's row here leaves
# an anonymous draw behind.
_SQLITE = """CREATE TRIGGER learner_enrollments_arm_fixed BEFORE UPDATE OF arm
    ON learner_enrollments WHEN NEW.arm IS NOT OLD.arm
    BEGIN SELECT RAISE(ABORT, 'learner_enrollments.arm cannot change (intention to treat)');
    END"""
_POSTGRES = [
    """CREATE FUNCTION learner_enrollments_arm_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.arm IS DISTINCT FROM OLD.arm THEN
           RAISE EXCEPTION 'learner_enrollments.arm cannot change (intention to treat)';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER learner_enrollments_arm_fixed BEFORE UPDATE OF arm ON learner_enrollments
       FOR EACH ROW EXECUTE FUNCTION learner_enrollments_arm_fixed()""",
]


def upgrade() -> None:
    op.create_table(
        "learner_enrollments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(63), nullable=False),
        sa.Column("learner_key", sa.String(64), nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("class_id", sa.String(128), nullable=False),
        sa.Column("school_uai", sa.String(8), nullable=False),
        sa.Column("academie", sa.String(32), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("stratum", sa.String(512), nullable=False),
        sa.Column("arm", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("experiment_id", "learner_key",
                            name="uq_learner_enrollments_experiment_learner"),
    )
    op.create_index("ix_learner_enrollments_experiment_class", "learner_enrollments",
                    ["experiment_id", "class_id"])
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRES:
            op.execute(statement)
    else:
        op.execute(_SQLITE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER learner_enrollments_arm_fixed ON learner_enrollments")
        op.execute("DROP FUNCTION learner_enrollments_arm_fixed()")
    op.drop_index("ix_learner_enrollments_experiment_class", "learner_enrollments")
    op.drop_table("learner_enrollments")
