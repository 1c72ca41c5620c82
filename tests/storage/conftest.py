"""Fixtures of the storage tests: a migrated SQLite database file, copied for each test."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database migrated to the head once per test module."""
    path = tmp_path_factory.mktemp("migrated") / "state.db"

    async def migrate() -> None:
        engine = create_engine(f"sqlite:///{path}")
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    return path


@pytest.fixture
def db_path(tmp_path: Path, _template: Path) -> Path:
    """A fresh copy of the migrated database for this test."""
    path = tmp_path / "state.db"
    shutil.copyfile(_template, path)
    return path
