"""Quota counters shared by the processes of a fleet: requests in a fixed window, and the
runs each process has not ended (a lease that lapses when the process stops renewing it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_windows",
        sa.Column("key", sa.String(600), primary_key=True),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "quota_run_leases",
        sa.Column("holder", sa.String(128), primary_key=True),
        sa.Column("subject", sa.String(600), primary_key=True),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_quota_run_leases_subject", "quota_run_leases", ["subject"])


def downgrade() -> None:
    op.drop_table("quota_run_leases")
    op.drop_table("quota_windows")
