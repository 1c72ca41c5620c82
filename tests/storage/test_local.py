"""The home's SQLite database through `sqlite3` (`open_local`, `LocalEventStore`): opened only
where it stands in for the full path exactly, and the same log as the engine's store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from promptline.core.errors import ConflictError, InvalidInputError
from promptline.core.events import ErrorData, ErrorEvent, Event
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter
from promptline.storage.database import create_engine
from promptline.storage.local import LocalDatabase, complete, open_local


@pytest.fixture
def db(db_path: Path) -> Iterator[LocalDatabase]:
    opened = open_local(f"sqlite:///{db_path}")
    assert opened is not None
    with opened:
        yield opened


def _error(text: str, **envelope: Any) -> ErrorEvent:
    return ErrorEvent(stream="ops", data=ErrorData(code="test", message=text), **envelope)


def test_a_migrated_sqlite_file_opens_locally_with_the_settings_of_every_connection(
    db: LocalDatabase,
) -> None:
    assert db.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert db.conn.execute("PRAGMA busy_timeout").fetchone() == (5000,)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/test",
        "sqlite+aiosqlite:///:memory:",
        "sqlite:///file.db?mode=ro",
        "mysql://somewhere/db",
    ],
)
def test_a_database_that_is_not_a_sqlite_file_is_left_to_the_full_path(url: str) -> None:
    assert open_local(url) is None


def test_a_file_not_made_yet_is_left_to_the_full_path_and_not_made(tmp_path: Path) -> None:
    path = tmp_path / "home" / "state.db"
    assert open_local(f"sqlite:///{path}") is None
    assert not path.exists()


def test_a_schema_to_migrate_is_left_to_the_full_path(tmp_path: Path, db_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert open_local(f"sqlite:///{empty}") is None
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    assert open_local(f"sqlite:///{db_path}") is None


def test_a_damaged_file_is_left_to_the_full_path_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 10)
    assert open_local(f"sqlite:///{path}") is None
    assert path.read_bytes() == b"this is not a database" * 10


def test_an_older_file_open_to_others_is_narrowed_to_its_owner(db_path: Path) -> None:
    db_path.chmod(0o644)
    opened = open_local(f"sqlite:///{db_path}")
    assert opened is not None
    opened.close()
    assert db_path.stat().st_mode & 0o777 == 0o600


def test_events_appended_locally_and_through_the_engine_make_one_log(
    db: LocalDatabase, db_path: Path
) -> None:
    with db.writing():
        first = complete(db.events.append(_error("local one")))
        batch = complete(db.events.append_batch([_error("local two"), _error("local three")]))

    async def through_the_engine() -> tuple[Event, list[Event]]:
        engine = create_engine(f"sqlite:///{db_path}")
        store = create_event_store(engine)
        try:
            stored = await store.append(_error("engine four"), expected_seq=3)
            return stored, await store.read_all()
        finally:
            await store.close()
            await engine.dispose()

    fourth, engine_view = asyncio.run(through_the_engine())
    assert [(e.seq, e.position) for e in (first, *batch, fourth)] == [
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 4),
    ]
    local_view = complete(db.events.read_all())
    assert local_view == engine_view
    assert [e.data.message for e in local_view] == [  # type: ignore[union-attr]
        "local one",
        "local two",
        "local three",
        "engine four",
    ]
    newest = complete(db.events.read_all(EventFilter(stream="ops"), limit=1, descending=True))
    assert newest == [fourth]
    assert complete(db.events.last_seq("ops")) == 4
    assert complete(db.events.last_position()) == 4


def test_a_local_append_checks_as_the_store_does_and_stores_nothing_it_refuses(
    db: LocalDatabase,
) -> None:
    with db.writing():
        stored = complete(db.events.append(_error("once")))
    with pytest.raises(ConflictError, match="already"), db.writing():
        complete(db.events.append(_error("again", id=stored.id)))
    with pytest.raises(ConflictError), db.writing():
        complete(db.events.append(_error("late"), expected_seq=0))
    with pytest.raises(InvalidInputError), db.writing():
        complete(db.events.append(_error("nul", user_id="a\x00b")))
    assert complete(db.events.read_all()) == [stored]


def test_a_local_append_outside_a_write_transaction_is_refused(db: LocalDatabase) -> None:
    with pytest.raises(RuntimeError, match=r"inside LocalDatabase\.writing"):
        complete(db.events.append(_error("unlocked")))
    assert complete(db.events.last_position()) == 0


def test_complete_refuses_a_coroutine_that_waits() -> None:
    async def waits() -> None:
        await asyncio.sleep(0)

    call: Coroutine[Any, Any, None] = waits()
    with pytest.raises(RuntimeError, match="waited"):
        complete(call)
