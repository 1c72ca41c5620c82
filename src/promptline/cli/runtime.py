"""What every command needs: settings, an event loop, services, and errors shown kindly."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

    from promptline.app import App
    from promptline.config.settings import Settings
    from promptline.storage.local import LocalDatabase

T = TypeVar("T")
PIPED_WIDTH = 200


@dataclass
class CliOptions:
    """Options given before the command (``promptline --config F --profile P ...``)."""

    config: Path | None = None
    profile: str | None = None


def console(*, stderr: bool = False) -> Console:
    """A Rich console (imported only when a command prints)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output is read by programs and people with wide windows: do not fold ids at 80.
    width = None if stream.isatty() else PIPED_WIDTH
    return Console(file=stream, highlight=False, soft_wrap=True, width=width)


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[str]], *, right: Collection[str] = ()
) -> None:
    """Print rows under a bold header to stdout; ``right`` names the columns of numbers.
    Cells may hold Rich markup (escape what came from outside)."""
    from rich.table import Table

    table = Table(header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*row)
    console().print(table)


def fail(message: str, *, hint: str | None = None, code: int = 1) -> None:
    """Print an error (and how to fix it) to stderr and exit."""
    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {message}", markup=True)
    if hint:
        err.print(f"[yellow]hint:[/] {hint}", markup=True)
    raise SystemExit(code)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn PromptLine errors into a message and exit code 1 instead of a traceback.

    Database errors that escaped every layer below are translated here as a last resort, so
    a damaged or unreachable database still gets a sentence and a hint, not a stack trace.
    """
    from promptline.core.errors import AuthenticationError, PromptLineError
    from promptline.storage.database import translate_error

    try:
        yield
    except AuthenticationError as exc:
        # Said here, where this machine's home is known: where its kept admin key is.
        from promptline.config.home import make_key_hint

        fail(exc.message, hint=make_key_hint())
    except PromptLineError as exc:
        fail(exc.message, hint=exc.hint)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        error = translate_error(exc, what="database")
        fail(error.message, hint=error.hint or "run `promptline doctor`")


def _is_database_error(exc: Exception) -> bool:
    """True for an error of SQLAlchemy or of SQLite (the local commands' reads and writes).

    SQLAlchemy is looked up, not imported: an error of its can only come from a command that
    loaded it, and the local commands must not pay for loading it (a third of a second).
    """
    import sqlite3

    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_errors is not None and isinstance(exc, sqlalchemy_errors.SQLAlchemyError):
        return True
    return isinstance(exc, sqlite3.Error)


def load_settings(options: CliOptions) -> Settings:
    """Load the configuration the way every command does."""
    from promptline.config import load_settings as _load

    return _load(options.config, profile=options.profile)


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine function to completion with friendly errors.

    The garbage collector, off while a short command loads (see `promptline.cli.main.main`),
    is turned back on: what runs here may run for hours (the gateway, chat).
    """
    import asyncio
    import gc

    gc.enable()

    with friendly_errors():
        return asyncio.run(_call(main))
    raise AssertionError("unreachable")  # pragma: no cover


async def _call(main: Callable[[], Awaitable[T]]) -> T:
    return await main()


@contextlib.asynccontextmanager
async def services(
    options: CliOptions, *, migrate: bool | None = None, settings: Settings | None = None
) -> AsyncIterator[App]:
    """Settings (``settings`` when the command has loaded them) -> the full set of services,
    closed on exit."""
    from promptline.app import build_app

    if settings is None:
        settings = load_settings(options)
    async with build_app(settings, migrate=migrate) as app:
        yield app


def local(settings: Settings, work: Callable[[LocalDatabase], T | None]) -> T | None:
    """``work`` done on the home's SQLite database through `sqlite3`, without the full app
    (SQLAlchemy, asyncio, the services: most of a short command's time).

    None when the database cannot be opened so (see `promptline.storage.local.open_local`) or
    when ``work`` answers None (it could not do exactly what the full app would): the command
    then does its work through `services`. Call it inside `friendly_errors`.
    """
    from promptline.storage.local import open_local

    database = open_local(settings.database_url())
    if database is None:
        return None
    with database:
        return work(database)


def write_json(value: Any) -> None:
    """Print a JSON document to stdout (pretty, stable key order)."""
    import orjson

    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
