"""artefacts: the files of analysis runs (results JSON, HTML report) in the registry

Revision ID: artefacts_0001
Revises:
Depends on: scheduler_0001

Reports lived in a ``state_dir/reports`` directory shared by the analysis workers and
the portal, which tied them to one machine. They are now rows written in the transaction
that records the run, immutable like ``analysis_runs``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "artefacts_0001"
down_revision = None
branch_labels = ("artefacts",)
depends_on = "scheduler_0001"

_SQLITE = [
    """CREATE TRIGGER run_artefacts_immutable_update BEFORE UPDATE ON run_artefacts
       BEGIN SELECT RAISE(ABORT, 'run_artefacts are immutable (a new run is a new row)'); END""",
    """CREATE TRIGGER run_artefacts_immutable_delete BEFORE DELETE ON run_artefacts
       BEGIN SELECT RAISE(ABORT, 'run_artefacts are immutable (a new run is a new row)'); END""",
]
_POSTGRES = [
    """CREATE FUNCTION run_artefacts_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'run_artefacts are immutable (a new run is a new row)';
       END $$""",
    """CREATE TRIGGER run_artefacts_immutable BEFORE UPDATE OR DELETE ON run_artefacts
       FOR EACH ROW EXECUTE FUNCTION run_artefacts_immutable()""",
]


def upgrade() -> None:
    op.create_table(
        "run_artefacts",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("analysis_runs.run_id"),
                  primary_key=True),
        # 'json' (the results) or 'html' (the report).
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRES:
            op.execute(statement)
    else:
        for statement in _SQLITE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER run_artefacts_immutable ON run_artefacts")
        op.execute("DROP FUNCTION run_artefacts_immutable()")
    op.drop_table("run_artefacts")
