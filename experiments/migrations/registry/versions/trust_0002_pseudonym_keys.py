"""trust: the id of the pseudonymisation key of each experiment

Revision ID: trust_0002
Revises: trust_0001

The first pseudonymisation for an experiment (a pupil enrolled, an event stored)
records the id of the key it used (:func:`ingest.pseudonym.pseudonym_key_id`, an HMAC
of a fixed label, never the key); later ones refuse another key, whose pseudonyms
would not match the stored ones. Rotating the key is then a decision per experiment.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "trust_0002"
down_revision = "trust_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pseudonym_keys",
        sa.Column("experiment_id", sa.String(63), primary_key=True),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pseudonym_keys")
