"""Shared fixtures: fresh, migrated databases on SQLite and PostgreSQL, and Redis namespaces.

PostgreSQL and Redis come from ``PROMPTLINE_TEST_POSTGRES_URL`` / ``PROMPTLINE_TEST_REDIS_URL``.
When one is unset or does not answer, its tests are skipped with the reason, unless
``PROMPTLINE_REQUIRE_SERVICES=1``, which turns that into a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from promptline.storage.database import create_engine
from promptline.storage.migrate import upgrade

REQUIRE_SERVICES = os.environ.get("PROMPTLINE_REQUIRE_SERVICES") == "1"
ALL_TABLES = (
    "session_messages",
    "sessions",
    "state_entries",
    "events",
    "event_content",
    "projection_checkpoints",
    "quota_windows",
    "quota_run_leases",
)


def _unavailable(env: str, why: str) -> None:
    message = f"{env} {why}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (PROMPTLINE_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real ~/.promptline or is steered by the caller's env."""
    monkeypatch.setenv("PROMPTLINE_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("PROMPTLINE__") or name == "PROMPTLINE_PROFILE":
            monkeypatch.delenv(name)


async def _migrated(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file with the schema applied."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'promptline.db'}"
    asyncio.run(_migrated(url))
    return url


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str]:
    base = os.environ.get("PROMPTLINE_TEST_POSTGRES_URL")
    if not base:
        _unavailable("PROMPTLINE_TEST_POSTGRES_URL", "is not set: PostgreSQL tests skipped")
    assert base is not None
    name = f"promptline_test_{uuid.uuid4().hex[:10]}"
    server = base.rsplit("/", 1)[0]

    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(base.replace("+asyncpg", ""), timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await _migrated(f"{server}/{name}")

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(base.replace("+asyncpg", ""), timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (TimeoutError, OSError) as exc:
        _unavailable("PROMPTLINE_TEST_POSTGRES_URL", f"does not answer ({exc})")
    yield f"{server}/{name}"
    asyncio.run(drop())


@pytest.fixture
def postgres_url(_postgres_database: str) -> str:
    """A migrated PostgreSQL database, emptied before each test."""

    async def truncate() -> None:
        import asyncpg

        conn = await asyncpg.connect(_postgres_database.replace("+asyncpg", ""))
        try:
            await conn.execute(f"TRUNCATE {', '.join(ALL_TABLES)} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    asyncio.run(truncate())
    return _postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each relational backend in turn (the conformance suites run on both)."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def redis_url() -> str:
    """The test Redis server's URL."""
    url = os.environ.get("PROMPTLINE_TEST_REDIS_URL")
    if not url:
        _unavailable("PROMPTLINE_TEST_REDIS_URL", "is not set: Redis tests skipped")
    assert url is not None
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        _unavailable("PROMPTLINE_TEST_REDIS_URL", f"does not answer ({exc})")
    finally:
        await client.aclose()
    return url


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis.asyncio as aioredis

    prefix = f"pltest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
