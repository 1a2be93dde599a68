"""deadletters: the index of refused events, by resource (issue 17)

Revision ID: deadletters_0001
Revises:

The stream worker records each dead letter here as well as in the dead-letter topic, so
that an EdTech company reads why its events were refused (portal console, gateway API).
No raw learner id is ever kept: see ingest/deadletters.py.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "deadletters_0001"
down_revision = None
branch_labels = ("deadletters",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(320), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("field", sa.String(128)),
        sa.Column("event_id", sa.String(64)),
        sa.Column("reason_en", sa.Text, nullable=False),
        sa.Column("reason_fr", sa.Text, nullable=False),
        sa.Column("payload", sa.Text),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source", name="uq_dead_letters_source"),
    )
    op.create_index("ix_dead_letters_resource_id", "dead_letters", ["resource_id"])
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
