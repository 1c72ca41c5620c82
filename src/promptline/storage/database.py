"""Async SQLAlchemy engines for SQLite (aiosqlite) and PostgreSQL (asyncpg).

SQLite is opened in WAL mode with a busy timeout, and its transactions are begun by us so a
writer can ask for ``BEGIN IMMEDIATE`` (execution option ``sqlite_begin="IMMEDIATE"``) and
never fail half-way on a lock upgrade.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptline.core.errors import (
    ConfigError,
    InvalidInputError,
    PromptLineError,
    SchemaVersionError,
    StorageError,
    StorageLockedError,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 4000


def normalize_url(url: str) -> str:
    """Turn the URLs people write (``postgres://``, ``sqlite:///``, a bare path) into async ones."""
    if "://" not in url:
        return "sqlite+aiosqlite:///" + str(Path(url).expanduser())
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        return "postgresql+asyncpg://" + rest
    if scheme == "sqlite":
        return "sqlite+aiosqlite://" + rest
    if scheme in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        return url
    raise ConfigError(
        f"unsupported database URL scheme {scheme!r}",
        hint="use sqlite:///path/to/file.db or postgresql://user@host:5432/db",
    )


def is_sqlite(url_or_engine: str | AsyncEngine) -> bool:
    """True when the URL or engine is SQLite."""
    if isinstance(url_or_engine, str):
        return normalize_url(url_or_engine).startswith("sqlite")
    return url_or_engine.dialect.name == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for in-memory databases)."""
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    path = path.split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return Path(path)


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> AsyncEngine:
    """Make an engine for ``url``; creates the SQLite file's folder when needed.

    ``busy_timeout_ms`` is how long a SQLite statement waits for another process's lock
    before failing with `StorageLockedError`.
    """
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            private_database(path)
        engine = create_async_engine(url, echo=echo)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            configure_sqlite(dbapi_conn, busy_timeout_ms=busy_timeout_ms)

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_async_engine(url, echo=echo, pool_size=pool_size, pool_pre_ping=True)


def configure_sqlite(dbapi_conn: Any, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    """Set up a new connection to a SQLite file (the driver's: sqlite3 or aiosqlite's) the
    way every PromptLine connection to it is: WAL, the busy timeout, foreign keys, and the
    transactions begun by us (``isolation_level = None``), not by the driver."""
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    # The COMMIT that pushes the WAL past this many pages also copies it back and
    # fsyncs (several ms). SQLite's default of 1000 makes that about one small
    # commit in a hundred; 4000 keeps it out of the p99 and the WAL under ~16 MB.
    cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def private_database(path: Path) -> None:
    """Make the SQLite file (and its folder) before SQLite does, readable by its owner only:
    SQLite gives the ``-wal`` and ``-shm`` files it makes the database file's mode, and would
    make the database itself with the process's umask (0644 as a rule). Those of an older
    version are narrowed too."""
    from promptline.storage.files import make_private, private_file

    try:
        private_file(path)
        for suffix in ("-wal", "-shm", "-journal"):
            make_private(path.with_name(path.name + suffix))
    except OSError as exc:
        raise StorageError(
            f"cannot make the SQLite database {path}: {exc.strerror or exc}",
            hint="check the permissions of its folder, or point state.sqlite_path elsewhere",
        ) from exc


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that holds the write lock from its start on SQLite (``BEGIN IMMEDIATE``)."""
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = await conn.execution_options(sqlite_begin="IMMEDIATE")
        async with conn.begin():
            yield conn


def translate_error(exc: BaseException, *, what: str) -> PromptLineError:
    """Map a driver or SQLAlchemy error to our hierarchy with a message a user can act on.

    The message names the operation (``what``) and the kind of failure in our words, never
    the driver's text: that can quote the SQL, the schema or stored data, and the message
    reaches API clients. Raise the result ``from exc``, so the cause stays in the log.

    A text value holding U+0000 (NUL), which PostgreSQL cannot store, is an
    `InvalidInputError`: the stores keep NUL out of every column, so only a name or filter
    from outside can carry one this far.
    """
    text = str(getattr(exc, "orig", None) or exc)
    lowered = text.lower()
    if "database is locked" in lowered or "database table is locked" in lowered:
        return StorageLockedError(
            f"{what}: the SQLite database is locked by another process",
            hint="stop the other PromptLine process or wait for its write to finish",
        )
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return SchemaVersionError(
            f"{what}: the database has no PromptLine schema yet",
            hint="run `promptline db upgrade`",
        )
    if "file is not a database" in lowered or "malformed" in lowered:
        return StorageError(
            f"{what}: the SQLite file is not a database or is damaged",
            hint="point state.sqlite_path at another file, or restore it from a backup",
        )
    if _is_nul_refusal(lowered):
        return InvalidInputError(
            f"{what}: a text value holds a NUL character (U+0000), which the database cannot store",
            hint="remove NUL characters from names, ids and filters",
        )
    if "disk i/o error" in lowered:
        return StorageError(
            f"{what}: the database could not read or write its file (disk I/O error)",
            hint="check the disk and the file system the database lives on",
        )
    if "database or disk is full" in lowered or "no space left" in lowered:
        return StorageError(
            f"{what}: the disk holding the database is full",
            hint="free some space, then retry",
        )
    if "readonly database" in lowered or "read-only" in lowered:
        return StorageError(
            f"{what}: the database is read-only",
            hint="check the permissions of the database file and its folder",
        )
    if "permission denied" in lowered:
        return StorageError(
            f"{what}: the database refused access (permission denied)",
            hint="check the database user's privileges, or the permissions of the file and "
            "its folder",
        )
    if any(
        s in lowered for s in ("connection refused", "could not connect", "connect call failed")
    ):
        return StorageError(
            f"{what}: cannot connect to the database",
            hint="is the database server running? check state.postgres_url / state.database_url",
        )
    if "password authentication failed" in lowered or (
        "does not exist" in lowered and ("role" in lowered or "database" in lowered)
    ):
        return StorageError(
            f"{what}: the database server refused the login (a wrong user, password or "
            "database name)",
            hint="check the URL in state.postgres_url / state.database_url",
        )
    return StorageError(
        f"{what}: the database failed",
        hint="retry; if it persists, the server log has the database's own message",
    )


def _is_nul_refusal(lowered: str) -> bool:
    """True when PostgreSQL refused a text value for holding NUL."""
    return "invalid byte sequence" in lowered and "0x00" in lowered
