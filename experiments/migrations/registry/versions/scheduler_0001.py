"""scheduler: scheduled analysis runs (claimed once per run key) and their immutable records

Revision ID: scheduler_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "scheduler_0001"
down_revision = None
branch_labels = ("scheduler",)
depends_on = None

# A recorded run is evidence: the database refuses to change or delete it, so that "a
# later run never overwrites an earlier report" holds even for a hand in a SQL shell.
_SQLITE = [
    """CREATE TRIGGER analysis_runs_immutable_update BEFORE UPDATE ON analysis_runs
       BEGIN SELECT RAISE(ABORT, 'analysis_runs are immutable (a new run is a new row)'); END""",
    """CREATE TRIGGER analysis_runs_immutable_delete BEFORE DELETE ON analysis_runs
       BEGIN SELECT RAISE(ABORT, 'analysis_runs are immutable (a new run is a new row)'); END""",
]
_POSTGRES = [
    """CREATE FUNCTION analysis_runs_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'analysis_runs are immutable (a new run is a new row)';
       END $$""",
    """CREATE TRIGGER analysis_runs_immutable BEFORE UPDATE OR DELETE ON analysis_runs
       FOR EACH ROW EXECUTE FUNCTION analysis_runs_immutable()""",
]


def upgrade() -> None:
    op.create_table(
        "scheduled_runs",
        # experiment/analysis/due time (UTC, ISO 8601): the identity of a run. Inserting it
        # is the claim: two schedulers, or one after a restart, cannot claim it twice.
        sa.Column("run_key", sa.String(160), primary_key=True),
        sa.Column("experiment_id", sa.String(63), nullable=False),
        sa.Column("analysis", sa.String(32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("protocol_version", sa.Integer, nullable=False),
        sa.Column("protocol_sha256", sa.String(64), nullable=False),
        sa.Column("schedule_entry", sa.String(128), nullable=False),
        # 'due': to publish; 'skipped': a missed repetition superseded by a later one.
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_scheduled_runs_experiment", "scheduled_runs", ["experiment_id", "analysis", "due_at"]
    )
    op.create_table(
        "analysis_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("run_key", sa.String(160), nullable=False, unique=True),
        sa.Column("experiment_id", sa.String(63), nullable=False),
        sa.Column("analysis", sa.String(32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        # 1, 2, 3... per (experiment, analysis): the report's version number.
        sa.Column("sequence", sa.Integer, nullable=False),
        # 'done': results and report written; 'failed': the analysis could not run (reason).
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("protocol_version", sa.Integer, nullable=False),
        sa.Column("protocol_sha256", sa.String(64), nullable=False),
        sa.Column("watermark", sa.JSON, nullable=False),
        sa.Column("software", sa.JSON, nullable=False),
        sa.Column("results_json", sa.Text, nullable=True),
        sa.Column("json_path", sa.Text, nullable=True),
        sa.Column("json_sha256", sa.String(64), nullable=True),
        sa.Column("html_path", sa.Text, nullable=True),
        sa.Column("html_sha256", sa.String(64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worker", sa.String(128), nullable=False),
        sa.UniqueConstraint("experiment_id", "analysis", "sequence", name="uq_analysis_runs_seq"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in _POSTGRES:
            op.execute(statement)
    else:
        for statement in _SQLITE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER analysis_runs_immutable ON analysis_runs")
        op.execute("DROP FUNCTION analysis_runs_immutable()")
    op.drop_table("analysis_runs")
    op.drop_index("ix_scheduled_runs_experiment", table_name="scheduled_runs")
    op.drop_table("scheduled_runs")
