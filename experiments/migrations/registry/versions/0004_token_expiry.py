"""core: optional expiry of API tokens

Revision ID: core_0004
Revises: core_0003

A token may be issued with an end (``preuve token issue --expires``): past it, the token
authenticates nobody and the portal sessions opened with it end. Existing tokens keep
no expiry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "core_0004"
down_revision = "core_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("expires_at", sa.DateTime(timezone=True),
                                          nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
