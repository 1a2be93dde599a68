"""events.authority: the principal that wrote each event (outcome provenance)

Existing rows get NULL (unknown), except the results that ``preuve outcomes import``
stored before this column existed: their ``event_id`` is derived from (experiment,
learner key, measure, wave) with a namespace UUID (experiments/runs/inputs.py), which
nobody can forge without the experiment's pseudonymisation key, so a row whose id is that
derivation is marked ``import:legacy`` and stays an outcome of the analyses.

Revision ID: store_0002
Revises: store_0001
"""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "store_0002"
down_revision = "store_0001"
branch_labels = None
depends_on = None

# Copied from experiments/runs/inputs.py (_OUTCOMES_NAMESPACE) when this migration was
# written: a migration does not import application code that may change later.
_OUTCOMES_NAMESPACE = uuid.UUID("5f1d7c56-6a55-4c8e-9a57-0d3c2b7e4a10")
_LEGACY_IMPORT = "import:legacy"


def _experiment_id(connection: sa.Connection) -> str | None:
    """The experiment of this store: the SQLite file's name, or the PostgreSQL schema
    (``exp_fluence_cp`` → ``fluence-cp``: slugs have no underscore)."""
    if connection.dialect.name == "postgresql":
        schema = connection.execute(sa.text("SELECT current_schema()")).scalar_one()
        return str(schema)[4:].replace("_", "-") if str(schema).startswith("exp_") else None
    database = connection.engine.url.database
    return Path(database).stem if database and database != ":memory:" else None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("authority", sa.String(256), nullable=True))
    connection = op.get_bind()
    experiment = _experiment_id(connection)
    if experiment is None:
        return
    events = sa.table("events", sa.column("event_id", sa.String), sa.column("verb", sa.String),
                      sa.column("learner_key", sa.String), sa.column("object_id", sa.String),
                      sa.column("authority", sa.String))
    rows = connection.execute(
        sa.select(events.c.event_id, events.c.learner_key, events.c.object_id)
        .where(events.c.verb == "assessment_scored")
    ).all()
    imported = [
        event_id for event_id, learner, measure in rows
        if event_id in {str(uuid.uuid5(_OUTCOMES_NAMESPACE, f"{experiment}/{learner}/{measure}/"
                                       f"{wave}")) for wave in ("baseline", "endline")}
    ]
    for start in range(0, len(imported), 500):
        connection.execute(
            sa.update(events).where(events.c.event_id.in_(imported[start:start + 500]))
            .values(authority=_LEGACY_IMPORT)
        )


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("authority")
