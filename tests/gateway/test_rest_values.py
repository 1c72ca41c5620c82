"""REST and values the storage layers must not lose or change: text holding U+0000 (NUL) on
PostgreSQL, integers beyond 64 bits and non-finite floats (refused by name, nothing stored),
and a database failure (the client gets PromptLine's words, the log gets the database's)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, auth, gateway_app, make_keys, settings_for
from rest_support import new_session, send

from promptline.app import App

Served = tuple[App, httpx.AsyncClient]

TOO_BIG = [
    pytest.param(2**64, id="2**64"),
    pytest.param(-(2**63) - 1, id="-(2**63)-1"),
    pytest.param(10**30, id="10**30"),
]
EDGES = {"max": 2**63 - 1, "min": -(2**63)}


def _refused_by_name(response: httpx.Response, field: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"]["field"] == field
    assert field in error["message"]
    assert "64 bits, signed" in error["details"]["hint"]
    return error


async def _sessions_of(client: httpx.AsyncClient, key: str) -> list[str]:
    listed = await client.get("/v1/sessions", headers=auth(key))
    assert listed.status_code == 200, listed.text
    return [s["id"] for s in listed.json()["items"]]


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


# -- integers beyond 64 bits, non-finite floats -----------------------------------------------


@pytest.mark.parametrize("number", TOO_BIG)
async def test_create_and_import_refuse_an_integer_beyond_64_bits_naming_the_field(
    served: Served, keys: Keys, number: int
) -> None:
    _, client = served
    source = await new_session(client, keys.alice)
    exported = await client.get(f"/v1/sessions/{source['id']}/export", headers=auth(keys.alice))
    document = exported.json()
    document["session"]["metadata"] = {"deep": [number]}

    created = await client.post(
        "/v1/sessions", json={"context": {"n": number}}, headers=auth(keys.alice)
    )
    tagged = await client.post(
        "/v1/sessions", json={"metadata": {"n": number}}, headers=auth(keys.alice)
    )
    imported = await client.post(
        "/v1/sessions/import",
        json={"document": document, "as_new_id": True},
        headers=auth(keys.alice),
    )

    _refused_by_name(created, "context.n")
    _refused_by_name(tagged, "metadata.n")
    _refused_by_name(imported, "session.metadata.deep.0")
    assert await _sessions_of(client, keys.alice) == [source["id"]]


@pytest.mark.parametrize("number", TOO_BIG)
async def test_a_state_write_of_an_integer_beyond_64_bits_is_refused_and_stores_nothing(
    served: Served, keys: Keys, number: int
) -> None:
    _, client = served

    written = await client.put(
        "/v1/state/local/k", json={"value": {"n": number}}, headers=auth(keys.alice)
    )
    versioned = await client.put(
        "/v1/state/local/k",
        json={"value": 1, "expected_version": number},
        headers=auth(keys.alice),
    )

    error = _refused_by_name(written, "value.n")
    assert error["details"]["key"]
    assert versioned.status_code == 422, versioned.text
    assert "expected_version" in versioned.json()["error"]["message"]
    read = await client.get("/v1/state/local/k", headers=auth(keys.alice))
    assert read.status_code == 404, read.text


async def test_the_64_bit_edges_round_trip_exactly(served: Served, keys: Keys) -> None:
    _, client = served
    values: dict[str, Any] = {**EDGES, "list": list(EDGES.values())}

    session = await new_session(client, keys.alice, context=values, metadata=values)
    written = await client.put(
        "/v1/state/local/edges", json={"value": values}, headers=auth(keys.alice)
    )
    read = await client.get("/v1/state/local/edges", headers=auth(keys.alice))
    again = await client.get(f"/v1/sessions/{session['id']}", headers=auth(keys.alice))

    assert session["context"] == values
    assert session["metadata"] == values
    assert again.json()["context"] == values
    assert written.status_code == 200, written.text
    assert read.json()["value"] == values


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "NaN", "Infinity"])
async def test_a_non_finite_number_in_a_session_or_state_is_refused_not_changed(
    served: Served, keys: Keys, literal: str
) -> None:
    _, client = served
    headers = {**auth(keys.alice), "Content-Type": "application/json"}

    created = await client.post(
        "/v1/sessions", content=f'{{"context": {{"x": {literal}}}}}', headers=headers
    )
    written = await client.put(
        "/v1/state/local/f", content=f'{{"value": [{literal}]}}', headers=headers
    )

    assert created.status_code == 422, created.text
    assert created.json()["error"]["details"]["field"] == "context.x"
    assert written.status_code == 422, written.text
    assert written.json()["error"]["details"]["field"] == "value[0]"
    assert await _sessions_of(client, keys.alice) == []


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

    assert imported.status_code == 503, imported.text
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
