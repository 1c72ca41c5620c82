from pathlib import Path

import pytest
from sqlalchemy import text

from promptline.core.errors import SchemaVersionError
from promptline.storage.database import create_engine
from promptline.storage.migrate import ensure_schema, head_revision, schema_status, upgrade


async def test_upgrade_creates_every_table_and_is_idempotent(tmp_path: Path) -> None:
    engine = create_engine(str(tmp_path / "m.db"))
    try:
        assert (await schema_status(engine)).current is None
        first = await upgrade(engine)
        second = await upgrade(engine)
        assert first.current == second.current == head_revision()
        async with engine.connect() as conn:
            names = set(
                (await conn.execute(text("select name from sqlite_master where type='table'")))
                .scalars()
                .all()
            )
        assert {"events", "state_entries", "sessions", "session_messages"} <= names
        assert "session_messages_fts" in names
    finally:
        await engine.dispose()


async def test_a_session_stored_before_sessions_had_a_sandbox_reads_as_choosing_none(
    tmp_path: Path,
) -> None:
    from promptline.sessions.tables import load_head

    engine = create_engine(str(tmp_path / "m.db"))
    try:
        await upgrade(engine, "0001")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO sessions (id, tenant_id, user_id, channel, status, created_at, "
                    "updated_at, context, tools, permissions, metadata, message_count, last_seq) "
                    "VALUES ('ses_old', 'acme', 'alice', 'slack', 'active', 1, 1, '{}', '[]', "
                    "'{}', '{}', 0, 1)"
                )
            )

        assert (await upgrade(engine)).current == head_revision()

        async with engine.connect() as conn:
            head = await load_head(conn, "ses_old", full=True)
        assert head is not None
        assert head.to_session().sandbox is None
    finally:
        await engine.dispose()


async def test_ensure_schema_without_auto_upgrade_explains_what_to_run(tmp_path: Path) -> None:
    engine = create_engine(str(tmp_path / "m.db"))
    try:
        with pytest.raises(SchemaVersionError) as info:
            await ensure_schema(engine, auto_upgrade=False)
        assert "promptline db upgrade" in str(info.value.hint)
    finally:
        await engine.dispose()


async def test_database_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    engine = create_engine(str(tmp_path / "m.db"))
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text("update alembic_version set version_num = '9999_future'"))
            await conn.execute(text("create table future_table (x integer)"))
        for attempt in (upgrade(engine), ensure_schema(engine)):
            with pytest.raises(SchemaVersionError, match="newer release"):
                await attempt
        async with engine.connect() as conn:
            version = (await conn.execute(text("select version_num from alembic_version"))).scalar()
            tables = (
                await conn.execute(text("select name from sqlite_master where name='future_table'"))
            ).scalar()
        assert version == "9999_future"
        assert tables == "future_table"
    finally:
        await engine.dispose()


async def test_postgres_schema_is_at_head(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        status = await schema_status(engine)
        assert status.up_to_date
        async with engine.connect() as conn:
            col = (
                await conn.execute(
                    text(
                        "select data_type from information_schema.columns "
                        "where table_name='session_messages' and column_name='tsv'"
                    )
                )
            ).scalar()
        assert col == "tsvector"
    finally:
        await engine.dispose()


def test_the_head_revision_constant_is_the_newest_migration_script() -> None:
    from promptline.storage.migrate import HEAD_REVISION, _script

    assert _script().get_current_head() == HEAD_REVISION
