"""A session's own sandbox (null: it chose none).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("sandbox", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("sandbox")
