"""REST and values the storage layers must not lose or change: text holding U+0000 (NUL) on
PostgreSQL, and a database failure (the client gets PromptLine's words, the log gets the
database's)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Keys, auth, gateway_app, make_keys, settings_for
from rest_support import new_session, send

from promptline.app import App

Served = tuple[App, httpx.AsyncClient]


# -- NUL on PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
async def on_postgres(tmp_path: Path, postgres_url: str) -> AsyncIterator[tuple[Served, Keys]]:
    settings = settings_for(
        tmp_path / "home", f"state:\n  backend: postgres\n  postgres_url: {postgres_url}\n"
    )
    async with gateway_app(settings) as served:
        yield served, await make_keys(served[0])


async def test_a_message_with_nul_on_postgresql_answers_and_so_does_the_next(
    on_postgres: tuple[Served, Keys],
) -> None:
    (_, client), keys = on_postgres
    session = await new_session(client, keys.alice, context={"no\x00te": "a\x00b"})

    first = await send(client, keys.alice, session["id"], "hello\x00world")
    second = await send(client, keys.alice, session["id"], "and again")

    assert (first["status"], second["status"]) == ("completed", "completed")
    got = await client.get(f"/v1/sessions/{session['id']}", headers=auth(keys.alice))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["context"] == {"no\x00te": "a\x00b"}
    users = [m for m in body["history"] if m["role"] == "user"]
    assert [m["content"][0]["text"] for m in users] == ["hello\x00world", "and again"]
    found = await client.get("/v1/sessions/search", params={"q": "world"}, headers=auth(keys.alice))
    assert found.status_code == 200, found.text
    hits = {hit["idx"]: hit["message"] for hit in found.json()["items"]}
    assert hits[0]["content"][0]["text"] == "hello\x00world"


# -- a database failure -----------------------------------------------------------------------


async def test_a_database_failure_answers_in_promptline_words_and_logs_the_database_ones(
    served: Served, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    app, client = served
    source = await new_session(client, keys.alice)
    await send(client, keys.alice, source["id"], "hello")
    document = (
        await client.get(f"/v1/sessions/{source['id']}/export", headers=auth(keys.alice))
    ).json()
    database = sqlite3.connect(app.settings.state.sqlite_path)
    try:
        database.execute(
            "CREATE TRIGGER refuse AFTER INSERT ON session_messages BEGIN "
            "SELECT RAISE(ABORT, 'secret: the database''s own words'); END"
        )
        database.commit()
        with caplog.at_level(logging.WARNING, logger="promptline.gateway"):
            imported = await client.post(
                "/v1/sessions/import",
                json={"document": document, "as_new_id": True},
                headers=auth(keys.alice),
            )
    finally:
        database.execute("DROP TRIGGER refuse")
        database.commit()
        database.close()

    assert imported.status_code == 400, imported.text
    error = imported.json()["error"]
    assert error["code"] == "storage_error"
    assert error["message"].endswith(": the database failed")
    assert "session" in error["message"]
    assert "secret" not in imported.text
    assert "session_messages" not in imported.text
    assert "secret: the database's own words" in caplog.text
    retried = await client.post(
        "/v1/sessions/import",
        json={"document": document, "as_new_id": True},
        headers=auth(keys.alice),
    )
    assert retried.status_code == 201, retried.text
