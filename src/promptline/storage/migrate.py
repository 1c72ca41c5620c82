"""Apply and inspect schema migrations, and refuse to run on a schema we do not understand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptline.core.errors import SchemaVersionError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.ext.asyncio import AsyncEngine

# Any fixed number: PostgreSQL advisory lock that keeps two processes from migrating at once.
_MIGRATION_LOCK_KEY = 0x50524F4D  # "PROM"


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands relative to this release."""

    current: str | None
    head: str
    known: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "promptline.storage:migrations")
    return cfg


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


HEAD_REVISION = "0004"
"""The newest revision this release knows (a test checks it against the migration scripts).

Kept as a constant so that opening an up-to-date database needs no Alembic at all: loading
it costs about 100 ms and 12 MB, and only an upgrade needs it."""


def head_revision() -> str:
    """The newest revision this release knows."""
    return HEAD_REVISION


def _current(sync_conn: Any) -> str | None:
    from sqlalchemy import inspect, text

    # What Alembic's MigrationContext.get_current_revision reads, without loading Alembic.
    if not inspect(sync_conn).has_table("alembic_version"):
        return None
    rows = sync_conn.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    if len(rows) > 1:
        raise SchemaVersionError(
            "the database records several schema revisions at once",
            hint="this database was migrated by another tool; use a fresh database file",
        )
    return str(rows[0][0]) if rows else None


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    """Read the database's revision and compare it with this release's head."""
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_current)
    except SchemaVersionError:
        raise
    except Exception as exc:
        raise _storage_error(exc, "reading the schema revision") from exc
    known = current is None or current == HEAD_REVISION or _revision_known(_script(), current)
    return SchemaStatus(current=current, head=HEAD_REVISION, known=known)


def _revision_known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:
        return False


async def upgrade(engine: AsyncEngine, revision: str = "head") -> SchemaStatus:
    """Bring the schema up to ``revision``; refuses a database from a newer release."""
    status = await schema_status(engine)
    if not status.known:
        raise _newer_schema(status)
    if status.up_to_date and revision in ("head", HEAD_REVISION):
        return status  # nothing to do: Alembic (12 MB) is not loaded

    def _run(sync_conn: Any) -> None:
        from alembic import command

        cfg = _config()
        cfg.attributes["connection"] = sync_conn
        if sync_conn.dialect.name == "postgresql":
            sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
        command.upgrade(cfg, revision)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    except Exception as exc:
        raise _storage_error(exc, "migrating the schema") from exc
    return await schema_status(engine)


async def ensure_schema(engine: AsyncEngine, *, auto_upgrade: bool = True) -> SchemaStatus:
    """Make sure the schema is exactly this release's: upgrade it, or explain why not."""
    status = await schema_status(engine)
    if not status.known:
        raise _newer_schema(status)
    if status.up_to_date:
        return status
    if auto_upgrade:
        return await upgrade(engine)
    raise SchemaVersionError(
        f"the database schema is at {status.current or 'nothing'}, "
        f"this release needs {status.head}",
        hint="run `promptline db upgrade`",
    )


def _storage_error(exc: Exception, what: str) -> Exception:
    from promptline.core.errors import PromptLineError
    from promptline.storage.database import translate_error

    return exc if isinstance(exc, PromptLineError) else translate_error(exc, what=what)


def _newer_schema(status: SchemaStatus) -> SchemaVersionError:
    return SchemaVersionError(
        f"the database schema is at revision {status.current!r}, which this release of "
        f"PromptLine does not know (its newest is {status.head!r}); it was made by a newer release",
        hint="upgrade PromptLine, or point it at another database; nothing was changed",
        current=status.current,
        head=status.head,
    )
