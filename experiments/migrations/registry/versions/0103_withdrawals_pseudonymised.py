"""enrollment: pupil withdrawals hold the per-experiment pseudonym, never the raw id

Revision ID: enrollment_0004
Revises: enrollment_0003

Before this revision, ``experiments.enrollment.withdrawal.withdraw`` stored the pupil id of a
class-randomised design as the académie gave it in ``withdrawals.learner_id`` (learner
designs already stored the pseudonym). Pupils are minors: no raw id may stay in a
database. This data migration re-keys every such value with
``ingest.pseudonym.pseudonymise(key, experiment_id, learner_id)``, the value the fixed
code stores and the key the store gives the pupil's events, so exports and erasures
keep finding the pupil.

A value is taken as already pseudonymised when it is 64 lower-case hexadecimal
characters (an HMAC-SHA256); GAR/ENT pupil ids never have that shape. The key is the
deployment's: ``PREUVE_PSEUDONYM_KEY``, else ``pseudonym.key`` in the state directory
(for a SQLite registry, its own directory). Run the upgrade with the environment of the
gateway and the worker (``preuve`` commands do), or the re-keyed values will not match
the pupils' events. The key is only read when there is something to re-key.

On SQLite the update runs with ``secure_delete`` on, so the old values are overwritten
in the database file; their last copies sit in the write-ahead log until its next
checkpoint (SQLite's automatic one, or any purge or erasure, which truncate it; ``PRAGMA
wal_checkpoint(TRUNCATE)`` does it at once). The test greps the files' bytes after it.

There is no downgrade of data: the raw ids are gone on purpose.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "enrollment_0004"
down_revision = "enrollment_0003"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

_PSEUDONYM = re.compile(r"^[0-9a-f]{64}$")
_withdrawals = sa.table(
    "withdrawals",
    sa.column("id", sa.Integer),
    sa.column("experiment_id", sa.String),
    sa.column("learner_id", sa.String),
)


def _deployment_key(bind: sa.Connection) -> bytes:
    from experiments.settings import Settings
    from ingest.pseudonym import load_pseudonym_key

    database = bind.engine.url.database
    if bind.dialect.name == "sqlite" and database:
        return load_pseudonym_key(Settings(state_dir=Path(database).parent))
    return load_pseudonym_key(Settings())


def upgrade() -> None:
    from ingest.pseudonym import pseudonymise

    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_withdrawals.c.id, _withdrawals.c.experiment_id, _withdrawals.c.learner_id)
        .where(_withdrawals.c.learner_id.is_not(None))
    ).all()
    raw = [row for row in rows if not _PSEUDONYM.match(row.learner_id)]
    if not raw:
        return
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql("PRAGMA secure_delete = ON")
    key = _deployment_key(bind)
    bind.execute(
        _withdrawals.update().where(_withdrawals.c.id == sa.bindparam("row_id"))
        .values(learner_id=sa.bindparam("key")),
        [{"row_id": row.id,
          "key": pseudonymise(key, row.experiment_id, row.learner_id.strip())} for row in raw],
    )
    logger.info("withdrawals: re-keyed %d raw pupil ids to their per-experiment pseudonym",
                len(raw))


def downgrade() -> None:
    pass  # the raw ids are gone on purpose (the old code would hash the pseudonyms again)
