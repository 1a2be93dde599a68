"""enrollment: an enrolled class's arm can never be changed

Revision ID: enrollment_0002
Revises: enrollment_0001
"""

from __future__ import annotations

from alembic import op

revision = "enrollment_0002"
down_revision = "enrollment_0001"
branch_labels = None
depends_on = None

# No code path updates enrollments.arm; the database refuses it too, so that "nobody
# picks or changes an arm" holds even for a hand in a SQL shell. A withdrawal changes the
# status, never the arm (intention to treat).
_SQLITE = """CREATE TRIGGER enrollments_arm_fixed BEFORE UPDATE OF arm ON enrollments
    WHEN NEW.arm IS NOT OLD.arm
    BEGIN SELECT RAISE(ABORT, 'enrollments.arm cannot change (intention to treat)'); END"""
_POSTGRES = [
    """CREATE FUNCTION enrollments_arm_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.arm IS DISTINCT FROM OLD.arm THEN
           RAISE EXCEPTION 'enrollments.arm cannot change (intention to treat)';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER enrollments_arm_fixed BEFORE UPDATE OF arm ON enrollments
       FOR EACH ROW EXECUTE FUNCTION enrollments_arm_fixed()""",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRES:
            op.execute(statement)
    else:
        op.execute(_SQLITE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER enrollments_arm_fixed ON enrollments")
        op.execute("DROP FUNCTION enrollments_arm_fixed()")
    else:
        op.execute("DROP TRIGGER enrollments_arm_fixed")
