"""The storage a subject's sessions take in the log, on SQLite and PostgreSQL alike: the
bytes of their events as stored, per user and per tenant, brought up to date as the log
grows, and no longer counted once a session is deleted."""

from __future__ import annotations

from pathlib import Path

from promptline.app import build_app
from promptline.config import load_settings
from promptline.security.storage_usage import StorageUsage
from promptline.sessions.models import Principal

ALICE = Principal(tenant_id="acme", user_id="alice")
BOB = Principal(tenant_id="acme", user_id="bob")


async def test_storage_counts_the_events_of_the_sessions_not_deleted(
    db_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    backend = "sqlite" if db_url.startswith("sqlite") else "postgres"
    config.write_text(f"state:\n  backend: {backend}\n  database_url: {db_url}\n", encoding="utf-8")
    settings = load_settings(config, environ={"PROMPTLINE_HOME": str(tmp_path)})
    async with build_app(settings) as app:
        usage = StorageUsage(app.engine)
        kept = await app.sessions.create(ALICE, channel="api")
        dropped = await app.sessions.create(ALICE, channel="api")
        bobs = await app.sessions.create(BOB, channel="api")
        await app.state.set("session", "notes", "a" * 10_000, namespace=dropped.id)
        one_session = await usage.bytes_of("acme", "alice")
        await app.state.set("session", "notes", "b" * 20_000, namespace=kept.id)
        await app.state.set("session", "notes", "c" * 5_000, namespace=bobs.id)

        alice = await usage.bytes_of("acme", "alice")  # brought up to date
        tenant = await usage.bytes_of("acme")

        assert 10_000 < one_session < 12_000
        assert 30_000 < alice < 33_000
        assert tenant - alice > 5_000
        assert await StorageUsage(app.engine).bytes_of("acme", "alice") == alice  # from scratch
        assert await usage.bytes_of("globex") == 0

        await app.sessions.delete(dropped.id, ALICE)

        left = await usage.bytes_of("acme", "alice")
        assert 20_000 < left < alice - 10_000
        assert await usage.bytes_of("acme") == tenant - (alice - left)
        assert await StorageUsage(app.engine).bytes_of("acme", "alice") == left
