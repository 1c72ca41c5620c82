"""Build the `StateStore` a configuration names (``state.backend`` and its settings)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from promptline.core.clock import Clock, SystemClock
from promptline.core.errors import ConfigError
from promptline.state.protocols import StateStore

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

BACKENDS = ("file", "sqlite", "postgres", "redis")
_ALIASES = {"postgresql": "postgres", "files": "file"}


def create_state_store(
    backend: str,
    *,
    engine: AsyncEngine | None = None,
    sqlite_path: str | Path | None = None,
    postgres_url: str | None = None,
    redis_url: str | None = None,
    redis_prefix: str = "promptline:",
    file_dir: str | Path | None = None,
    clock: Clock = SystemClock(),
) -> StateStore:
    """The store for ``backend`` (``file``, ``sqlite``, ``postgres`` or ``redis``).

    ``sqlite`` and ``postgres`` use ``engine`` when given (the caller keeps owning it),
    else open their own from ``sqlite_path`` / ``postgres_url`` and dispose of it on
    `close`; the schema must already be migrated (``promptline db upgrade``). ``redis``
    needs ``redis_url``, ``file`` needs ``file_dir``. A missing setting is a `ConfigError`
    naming its configuration key.
    """
    name = _ALIASES.get(backend.strip().lower(), backend.strip().lower())
    if name == "file":
        from promptline.state.file import FileStateStore

        return FileStateStore(_required(file_dir, "state.file_dir", name), clock=clock)
    if name in ("sqlite", "postgres"):
        from promptline.state.sql import SqlStateStore

        if engine is not None:
            _check_dialect(engine, name)
            return SqlStateStore(engine, clock=clock)
        from promptline.storage.database import create_engine, is_sqlite

        if name == "sqlite":
            path = Path(_required(sqlite_path, "state.sqlite_path", name)).expanduser()
            url = f"sqlite+aiosqlite:///{path}"
        else:
            url = _required(postgres_url, "state.postgres_url", name)
            if is_sqlite(url):
                raise ConfigError(
                    "state.postgres_url points at a SQLite database",
                    hint="use state.backend: sqlite with state.sqlite_path, "
                    "or give a postgresql:// URL",
                    key="state.postgres_url",
                )
        return SqlStateStore(create_engine(url), clock=clock, owns_engine=True)
    if name == "redis":
        from promptline.state.redis import RedisStateStore

        url = _required(redis_url, "state.redis_url", name)
        return RedisStateStore(url, prefix=redis_prefix, clock=clock)
    raise ConfigError(
        f"unknown state backend {backend!r}",
        hint="set state.backend to one of: " + ", ".join(BACKENDS),
        key="state.backend",
        value=backend,
    )


def _required(value: str | Path | None, key: str, backend: str) -> str:
    if value is None or not str(value).strip():
        raise ConfigError(
            f"{key} is required when state.backend is {backend!r}",
            hint=f"set {key} in the configuration, or pick another state.backend",
            key=key,
        )
    return str(value)


def _check_dialect(engine: AsyncEngine, backend: str) -> None:
    expected = "sqlite" if backend == "sqlite" else "postgresql"
    if engine.dialect.name != expected:
        raise ConfigError(
            f"state.backend is {backend!r} but the database is {engine.dialect.name}",
            hint="make state.backend match the database URL",
            key="state.backend",
        )
