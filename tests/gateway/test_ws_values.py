"""The control plane reads every integer of a frame exactly as sent: one beyond 64 bits is
refused by name (as REST refuses it), never turned into a float; the 64-bit edges round-trip;
an id is echoed as sent; numbers JSON cannot hold are a parse error, not a changed value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ws_support import Rpc, alice_on, ws_settings

from promptline.sessions import Principal

NUMBERS = [2**64, -(2**63) - 1, 10**30]
EDGES = {"max": 2**63 - 1, "min": -(2**63)}


async def _raw(client: Rpc, text: str) -> Any:
    await client.ws.send(text)
    return await client.next_frame()


def _refused_by_name(error: dict[str, Any], field: str) -> None:
    assert error["code"] == -32602, error  # REST's 422
    assert error["data"]["code"] == "invalid_input"
    assert error["data"]["details"]["field"] == field
    assert field in error["message"]
    assert "64 bits, signed" in error["data"]["details"]["hint"]


async def test_integers_beyond_64_bits_are_refused_by_name_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (served, client):
        for number in NUMBERS:
            # json.dumps writes the integer's every digit, as any client may.
            _refused_by_name(
                await client.error("session.create", {"context": {"n": number}}), "context.n"
            )
            _refused_by_name(
                await client.error("session.create", {"metadata": {"deep": [number]}}),
                "metadata.deep.0",
            )
            _refused_by_name(
                await client.error(
                    "state.set", {"scope": "local", "key": "k", "value": {"n": number}}
                ),
                "value.n",
            )
            versioned = await client.error(
                "state.set",
                {"scope": "local", "key": "k", "value": 1, "expected_version": number},
            )
            assert versioned["code"] == -32602
            assert "expected_version" in versioned["message"]
        missing = await client.error("state.get", {"scope": "local", "key": "k"})
        stored = await served.app.sessions.list(Principal(tenant_id="acme", user_id="alice"))

    assert missing["code"] == -32004
    assert stored == []


async def test_the_64_bit_edges_round_trip_exactly(tmp_path: Path) -> None:
    values: dict[str, Any] = {**EDGES, "list": list(EDGES.values()), "float": 1e308}
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        session = await client.call("session.create", {"context": values, "metadata": values})
        await client.call("state.set", {"scope": "local", "key": "edges", "value": values})
        entry = await client.call("state.get", {"scope": "local", "key": "edges"})

    assert session["context"] == values
    assert session["metadata"] == values
    assert entry["value"] == values
    assert type(entry["value"]["float"]) is float


async def test_an_id_beyond_64_bits_is_echoed_exactly_and_bounded_numbers_are_checked(
    tmp_path: Path,
) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        echoed = await _raw(client, json.dumps({"jsonrpc": "2.0", "id": 10**30, "method": "ping"}))
        subscribed = await _raw(
            client,
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "events.subscribe",
                    "params": {"session_id": "ses_x", "from_seq": 2**64},
                }
            ),
        )
        lasting = await client.error("session.create", {"ttl_secs": 1e300})

    assert echoed == {"jsonrpc": "2.0", "id": 10**30, "result": "pong"}
    assert subscribed["error"]["code"] == -32602
    assert "from_seq" in subscribed["error"]["message"]
    assert lasting["code"] == -32602
    assert "ttl_secs" in lasting["message"]


async def test_numbers_json_cannot_hold_are_a_parse_error_and_the_connection_goes_on(
    tmp_path: Path,
) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        answers = [
            await _raw(
                client,
                '{"jsonrpc": "2.0", "id": 1, "method": "state.set", "params": '
                f'{{"scope": "local", "key": "f", "value": {literal}}}}}',
            )
            for literal in ("1e400", "NaN", "-Infinity")
        ]
        missing = await client.error("state.get", {"scope": "local", "key": "f"})

    for answer in answers:
        assert answer["error"]["code"] == -32700
        assert answer["error"]["data"]["code"] == "parse_error"
    assert missing["code"] == -32004
