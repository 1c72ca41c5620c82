"""Initial schema: event log, state entries, sessions and their searchable messages.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", RowId, primary_key=True, autoincrement=False),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("stream", sa.String(255), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("tenant_id", sa.String(255)),
        sa.Column("user_id", sa.String(255)),
        sa.Column("session_id", sa.String(255)),
        sa.Column("run_id", sa.String(255)),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("stream", "seq", name="uq_events_stream_seq"),
    )
    op.create_index("ix_events_type", "events", ["type"])
    op.create_index("ix_events_ts", "events", ["ts"])
    op.create_index("ix_events_session_id", "events", ["session_id"])
    op.create_index("ix_events_run_id", "events", ["run_id"])
    op.create_index("ix_events_user_id", "events", ["user_id"])

    op.create_table(
        "state_entries",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("namespace", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
    )
    op.create_index("ix_state_entries_expires_at", "state_entries", ["expires_at"])

    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("tools", sa.Text, nullable=False),
        sa.Column("permissions", sa.Text, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("message_count", sa.Integer, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_sessions_tenant_user", "sessions", ["tenant_id", "user_id"])
    op.create_index("ix_sessions_channel", "sessions", ["channel"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])

    op.create_table(
        "session_messages",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.UniqueConstraint("session_id", "idx", name="uq_session_messages_session_idx"),
    )

    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )

    if op.get_bind().dialect.name == "sqlite":
        # External-content FTS5 index over the message text, kept in step by triggers.
        op.execute(
            "CREATE VIRTUAL TABLE session_messages_fts USING fts5("
            "text, content='session_messages', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 2')"
        )
        op.execute(
            "CREATE TRIGGER session_messages_ai AFTER INSERT ON session_messages BEGIN "
            "INSERT INTO session_messages_fts(rowid, text) VALUES (new.id, new.text); END"
        )
        op.execute(
            "CREATE TRIGGER session_messages_ad AFTER DELETE ON session_messages BEGIN "
            "INSERT INTO session_messages_fts(session_messages_fts, rowid, text) "
            "VALUES ('delete', old.id, old.text); END"
        )
    else:
        op.execute(
            "ALTER TABLE session_messages ADD COLUMN tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED"
        )
        op.execute("CREATE INDEX ix_session_messages_tsv ON session_messages USING GIN (tsv)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS session_messages_ad")
        op.execute("DROP TRIGGER IF EXISTS session_messages_ai")
        op.execute("DROP TABLE IF EXISTS session_messages_fts")
    op.drop_table("projection_checkpoints")
    op.drop_table("session_messages")
    op.drop_table("sessions")
    op.drop_table("state_entries")
    op.drop_table("events")
