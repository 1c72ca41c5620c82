"""The relational schema (SQLite and PostgreSQL alike). Migrations create it; nothing else does.

Times are stored as integer microseconds since the epoch, JSON as text: both sort, compare
and index the same way on both databases.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# An integer primary key that is SQLite's rowid there and a 64-bit integer on PostgreSQL.
RowId = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("position", RowId, primary_key=True, autoincrement=False),
    Column("id", String(64), nullable=False, unique=True),
    Column("stream", String(255), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("tenant_id", String(255)),
    Column("user_id", String(255)),
    Column("session_id", String(255)),
    Column("run_id", String(255)),
    Column("body", Text, nullable=False),
    UniqueConstraint("stream", "seq", name="uq_events_stream_seq"),
    Index("ix_events_type", "type"),
    Index("ix_events_ts", "ts"),
    Index("ix_events_session_id", "session_id"),
    Index("ix_events_run_id", "run_id"),
    Index("ix_events_user_id", "user_id"),
)

state_entries = Table(
    "state_entries",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("namespace", String(255), primary_key=True),
    Column("key", String(512), primary_key=True),
    Column("value", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger),
    Index("ix_state_entries_expires_at", "expires_at"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(255), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger),
    Column("context", Text, nullable=False),
    Column("tools", Text, nullable=False),
    Column("permissions", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("message_count", Integer, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("sandbox", String(16)),
    Index("ix_sessions_tenant_user", "tenant_id", "user_id"),
    Index("ix_sessions_channel", "channel"),
    Index("ix_sessions_expires_at", "expires_at"),
)

session_messages = Table(
    "session_messages",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("session_id", String(64), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("role", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("message", Text, nullable=False),
    UniqueConstraint("session_id", "idx", name="uq_session_messages_session_idx"),
)

# What compact `llm_command` events refer to by content hash (a system prompt, a tool list):
# stored once per tenant, written with the first event that needs it (`events.content`).
event_content = Table(
    "event_content",
    metadata,
    Column("tenant_id", String(255), primary_key=True),
    Column("hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("body", Text, nullable=False),
)

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Quota counters of a fleet (processes sharing a PostgreSQL database): the requests of a key
# in the fixed window starting at `window_start` (microseconds)...
quota_windows = Table(
    "quota_windows",
    metadata,
    Column("key", String(600), primary_key=True),
    Column("window_start", BigInteger, nullable=False),
    Column("count", BigInteger, nullable=False),
)

# ...and the runs each process (`holder`) has not ended, per subject, counted until
# `expires_at` unless the process renews it.
quota_run_leases = Table(
    "quota_run_leases",
    metadata,
    Column("holder", String(128), primary_key=True),
    Column("subject", String(600), primary_key=True),
    Column("runs", Integer, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_quota_run_leases_subject", "subject"),
)
