"""Fixtures for the session tests: managers over real databases and logs, on a manual clock."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sessions_support import Stack, StackOpener, fresh_sqlite_url

from promptline.core.clock import ManualClock
from promptline.sessions import SessionManager


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "promptline.db"
    asyncio.run(fresh_sqlite_url(path))
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """A fresh migrated SQLite database: a copy of one migrated once (migrating is slow)."""
    path = tmp_path / "promptline.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def opener(clock: ManualClock) -> AsyncIterator[StackOpener]:
    """Opens more stacks (a restart, a second process); closes every one after the test."""
    opener = StackOpener(clock)
    yield opener
    await opener.close()


@pytest.fixture
def stack(db_url: str, opener: StackOpener) -> Stack:
    """A stack on each backend in turn (SQLite, PostgreSQL)."""
    return opener(db_url)


@pytest.fixture
def sessions(stack: Stack) -> SessionManager:
    return stack.manager


@pytest.fixture
def sqlite_stack(sqlite_url: str, opener: StackOpener) -> Stack:
    """A stack on SQLite only, for checks that happen before any database work."""
    return opener(sqlite_url)
