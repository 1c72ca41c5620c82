"""The lease of an instance name: at most one live process holds it, and it goes with the
process however that ends (an OS file lock on SQLite, a session advisory lock on PostgreSQL).

After a restart, the unfinished runs an instance left behind are resumed by the process that
holds its lease, so a second process under the same name (a CLI command beside the gateway)
never runs them a second time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["InstanceLease"]

_log = logging.getLogger(__name__)


class InstanceLease:
    """`acquire` the lease of ``name`` on the database of ``engine``; `release` it (closing
    the process releases it too)."""

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self._engine = engine
        self.name = name
        # Advisory locks are of the whole PostgreSQL server: the database is part of the key.
        where = engine.url.database or ""
        self._digest = hashlib.sha256(f"{len(where)}:{where}:{name}".encode()).digest()
        self._fd: int | None = None
        self._conn: AsyncConnection | None = None
        self.held = False

    async def acquire(self) -> bool:
        """Take the lease if no live process holds it; True when this one holds it now."""
        if self.held:
            return True
        dialect = self._engine.dialect.name
        try:
            if dialect == "postgresql":
                self.held = await self._acquire_postgres()
            else:
                self.held = self._acquire_file()
        except (OSError, SQLAlchemyError):
            _log.warning("the lease of instance %r could not be taken", self.name, exc_info=True)
            self.held = False
        return self.held

    async def release(self) -> None:
        """Give the lease back (nothing when it is not held)."""
        self.held = False
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                # The connection goes back to the pool, where a session lock would stay.
                await conn.exec_driver_sql(f"SELECT pg_advisory_unlock({self._key():d})")
                await conn.commit()
            except (SQLAlchemyError, OSError):
                with contextlib.suppress(SQLAlchemyError, OSError):
                    await conn.invalidate()
            with contextlib.suppress(SQLAlchemyError, OSError):
                await conn.close()

    def _key(self) -> int:
        return int.from_bytes(self._digest[:8], "big", signed=True)

    def _acquire_file(self) -> bool:
        database = self._engine.url.database
        if not database or database == ":memory:" or "uri" in self._engine.url.query:
            return True  # a database no other process can open
        from promptline.storage.files import private_dir

        folder = private_dir(Path(database).parent / ".promptline-leases")
        path = folder / f"{self._digest.hex()[:32]}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.name}\n{os.getpid()}\n".encode())
        self._fd = fd
        return True

    async def _acquire_postgres(self) -> bool:
        conn = await self._engine.connect()
        try:
            result = await conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({self._key():d})")
            taken: Any = result.scalar()
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if not taken:
            await conn.close()
            return False
        self._conn = conn  # the lock lives as long as this connection
        return True
