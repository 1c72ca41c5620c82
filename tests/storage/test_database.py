import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from promptline.core.errors import ConfigError, InvalidInputError, StorageError, StorageLockedError
from promptline.storage.database import (
    create_engine,
    normalize_url,
    sqlite_path,
    translate_error,
    write_transaction,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///tmp/x.db", "sqlite+aiosqlite:///tmp/x.db"),
        ("sqlite+aiosqlite:///tmp/x.db", "sqlite+aiosqlite:///tmp/x.db"),
    ],
)
def test_urls_people_write_become_async_urls(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_bare_path_becomes_sqlite_url(tmp_path: Path) -> None:
    assert normalize_url(str(tmp_path / "a.db")) == f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    assert sqlite_path(str(tmp_path / "a.db")) == tmp_path / "a.db"


def test_unsupported_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mysql"):
        normalize_url("mysql://root@localhost/db")


async def test_sqlite_opens_in_wal_mode_and_creates_its_folder(tmp_path: Path) -> None:
    engine = create_engine(str(tmp_path / "nested" / "dir" / "x.db"))
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(text("pragma journal_mode"))).scalar()
        assert mode == "wal"
        assert (tmp_path / "nested" / "dir" / "x.db").exists()
    finally:
        await engine.dispose()


async def test_locked_database_gives_a_clear_error_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(str(path), busy_timeout_ms=50)
    try:
        async with write_transaction(engine) as conn:
            await conn.execute(text("create table t (v integer)"))
            await conn.execute(text("insert into t values (1)"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(OperationalError, match="locked") as info:
                async with write_transaction(engine) as conn:
                    await conn.execute(text("insert into t values (2)"))
            error = translate_error(info.value, what="appending")
            assert isinstance(error, StorageLockedError)
            assert error.hint
            assert "other" in error.hint
        finally:
            other.execute("ROLLBACK")
            other.close()
        async with engine.connect() as conn:
            assert (await conn.execute(text("select v from t"))).scalars().all() == [1]
    finally:
        await engine.dispose()


async def test_a_database_error_says_what_failed_without_the_drivers_text(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with pytest.raises(SQLAlchemyError) as info:
            async with write_transaction(engine) as conn:
                # Both databases refuse the missing NOT NULL columns and quote the statement
                # or the row (PostgreSQL's DETAIL: "Failing row contains (... secret-value").
                await conn.execute(text("insert into events (id) values ('secret-value')"))
        error = translate_error(info.value, what="appending events")
    finally:
        await engine.dispose()
    assert isinstance(error, StorageError)
    assert error.message == "appending events: the database failed"
    assert error.hint is not None
    assert "server log" in error.hint
    shown = str(error.to_dict())
    for leak in ("secret-value", "events.", "position", "null", "NULL", "insert"):
        assert leak not in shown


async def test_a_refused_connection_is_named_without_the_drivers_text() -> None:
    engine = create_engine("postgresql://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(OSError, match=r"(?i)connect") as info:
            async with engine.connect():
                pass
        error = translate_error(info.value, what="reading state")
    finally:
        await engine.dispose()
    assert error.message == "reading state: cannot connect to the database"
    assert error.hint is not None
    assert "127.0.0.1" not in str(error.to_dict())


async def test_a_nul_that_reaches_postgresql_is_invalid_input_not_a_storage_error(
    postgres_url: str,
) -> None:
    engine = create_engine(postgres_url)
    try:
        with pytest.raises(SQLAlchemyError) as info:
            async with engine.connect() as conn:
                await conn.execute(
                    text("select count(*) from sessions where id = :id"), {"id": "a\x00b"}
                )
        error = translate_error(info.value, what="listing sessions")
    finally:
        await engine.dispose()
    assert isinstance(error, InvalidInputError)
    assert error.message.startswith("listing sessions: a text value holds a NUL character")
    assert "0x00" not in error.message
    assert error.hint
