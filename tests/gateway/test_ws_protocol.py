"""JSON-RPC 2.0 on the control plane: malformed frames are answered with the right error
object and the connection goes on; notifications get no answer; batches; a frame over
``gateway.ws_max_frame_bytes`` closes the connection with 1009."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ws_support import Rpc, SlowClient, alice_on, close_code, refused_with, rpc, served, ws_settings

from promptline.gateway.limits import MAX_JSON_DEPTH


async def _answer_to(client: Rpc, frame: str | bytes) -> Any:
    await client.ws.send(frame)
    return await client.next_frame()


@pytest.mark.parametrize(
    ("frame", "code", "kind", "answer_id"),
    [
        ("this is not JSON", -32700, "parse_error", None),
        ('{"jsonrpc": "2.0", "id": 1, "method": "ping"', -32700, "parse_error", None),
        ("42", -32600, "invalid_request", None),
        ('"ping"', -32600, "invalid_request", None),
        ("null", -32600, "invalid_request", None),
        ("[]", -32600, "invalid_request", None),
        ('{"id": 3, "method": "ping"}', -32600, "invalid_request", 3),
        ('{"jsonrpc": "1.0", "id": 4, "method": "ping"}', -32600, "invalid_request", 4),
        ('{"jsonrpc": "2.0", "id": 5, "method": 7}', -32600, "invalid_request", 5),
        ('{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}', -32600, "invalid_request", None),
        ('{"jsonrpc": "2.0", "id": 6, "method": "ping", "x": 1}', -32600, "invalid_request", 6),
        ('{"jsonrpc": "2.0", "method": 7}', -32600, "invalid_request", None),
        ('{"jsonrpc": "2.0", "id": 7, "method": "no.such"}', -32601, "method_not_found", 7),
        (
            '{"jsonrpc": "2.0", "id": "s", "method": "ping", "params": [1]}',
            -32602,
            "invalid_input",
            "s",
        ),
        (
            '{"jsonrpc": "2.0", "id": 8, "method": "session.send", "params": {"session_id": 5}}',
            -32602,
            "invalid_input",
            8,
        ),
        (
            '{"jsonrpc": "2.0", "id": 9, "method": "events.subscribe",'
            ' "params": {"session_id": "ses_x", "from_seq": -1}}',
            -32602,
            "invalid_input",
            9,
        ),
        (
            '{"jsonrpc": "2.0", "id": 10, "method": "ping", "params": {"unexpected": true}}',
            -32602,
            "invalid_input",
            10,
        ),
    ],
)
async def test_a_malformed_frame_gets_the_right_error_and_the_connection_goes_on(
    tmp_path: Path, frame: str, code: int, kind: str, answer_id: Any
) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        answer = await _answer_to(client, frame)
        still = await client.call("ping")

    assert answer["jsonrpc"] == "2.0"
    assert answer["id"] == answer_id
    assert answer["error"]["code"] == code
    assert answer["error"]["data"]["code"] == kind
    assert isinstance(answer["error"]["message"], str)
    assert answer["error"]["message"]
    assert still == "pong"


async def test_bad_params_say_which_member_is_wrong(tmp_path: Path) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        error = await client.error("session.send", {"session_id": "ses_x"})

    assert error["code"] == -32602
    assert "content" in error["message"]
    assert ["content"] in [problem["loc"] for problem in error["data"]["details"]["errors"]]


async def test_a_notification_gets_no_answer_even_when_it_fails(tmp_path: Path) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        await client.ws.send(json.dumps({"jsonrpc": "2.0", "method": "ping"}))
        await client.ws.send(json.dumps({"jsonrpc": "2.0", "method": "no.such"}))
        await client.ws.send(json.dumps({"jsonrpc": "2.0", "method": "session.send", "params": {}}))
        # Answers come in the order requests arrive: the next frame is this one's.
        answer = await _answer_to(client, '{"jsonrpc": "2.0", "id": 99, "method": "ping"}')

    assert answer == {"jsonrpc": "2.0", "id": 99, "result": "pong"}


async def test_a_batch_is_answered_with_one_array_in_order(tmp_path: Path) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "ping"},  # a notification: no answer
        {"jsonrpc": "2.0", "id": 2, "method": "no.such"},
        "not a request",
        {"jsonrpc": "2.0", "id": 3, "method": "session.create"},
    ]
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        answers = await _answer_to(client, json.dumps(batch))
        only_notifications = [{"jsonrpc": "2.0", "method": "ping"}] * 2
        await client.ws.send(json.dumps(only_notifications))
        after = await _answer_to(client, '{"jsonrpc": "2.0", "id": 4, "method": "ping"}')

    assert [a["id"] for a in answers] == [1, 2, None, 3]
    assert answers[0]["result"] == "pong"
    assert answers[1]["error"]["code"] == -32601
    assert answers[2]["error"]["code"] == -32600
    assert answers[3]["result"]["user_id"] == "alice"
    assert after["id"] == 4  # the batch of notifications was not answered


async def test_a_binary_frame_is_read_as_json_too(tmp_path: Path) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        answer = await _answer_to(client, b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}')
        garbled = await _answer_to(client, b"\xff\xfe not utf-8")

    assert answer["result"] == "pong"
    assert garbled["error"]["code"] == -32700


def _deep_request(levels: int) -> str:
    value = '{"a": ' * levels + "1" + "}" * levels
    return (
        '{"jsonrpc": "2.0", "id": 1, "method": "state.set",'
        f' "params": {{"scope": "local", "key": "k", "value": {value}}}}}'
    )


@pytest.mark.parametrize(
    ("frame", "code", "kind", "message"),
    [
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "x": "caf\xe9"}',
            -32700,
            "parse_error",
            "parse error: the frame is not valid UTF-8 at byte 55 (invalid continuation byte)",
        ),
        (
            '{"jsonrpc": "2.0", "id": 1, "method": "ping"}'.encode("utf-16-le"),
            -32700,
            "parse_error",
            "parse error: the frame is not JSON in UTF-8: it holds a NUL byte at byte 1",
        ),
        (
            _deep_request(MAX_JSON_DEPTH - 1),
            -32600,
            "invalid_request",
            f"the frame nests arrays and objects deeper than {MAX_JSON_DEPTH} levels",
        ),
        (
            "[" * 5000 + "]" * 5000,
            -32600,
            "invalid_request",
            f"the frame nests arrays and objects deeper than {MAX_JSON_DEPTH} levels",
        ),
    ],
)
async def test_a_frame_not_utf8_or_nested_too_deep_gets_an_error_and_the_connection_goes_on(
    tmp_path: Path, frame: str | bytes, code: int, kind: str, message: str
) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        answer = await _answer_to(client, frame)
        fits = await _answer_to(client, _deep_request(MAX_JSON_DEPTH - 4))
        stored = await client.call("state.get", {"scope": "local", "key": "k"})

    assert answer["id"] is None
    assert answer["error"]["code"] == code
    assert answer["error"]["data"]["code"] == kind
    assert answer["error"]["message"] == message
    assert "result" in fits, fits
    assert json.dumps(stored["value"]).count("{") == MAX_JSON_DEPTH - 4


async def test_a_frame_over_the_limit_closes_the_connection_with_1009(tmp_path: Path) -> None:
    settings = ws_settings(tmp_path / "home", "  ws_max_frame_bytes: 65536\n")
    async with served(settings) as gw, rpc(gw.url, gw.keys.alice) as client:
        fits = await _answer_to(
            client,
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "x": "y" * 60_000}),
        )
        await client.ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping", "x": "y" * 70_000})
        )
        code = await close_code(client.ws)

    assert fits["error"]["code"] == -32600  # read and answered: the member "x" is unknown
    assert code == 1009


async def test_requests_count_against_the_keys_rate_limit_without_closing(tmp_path: Path) -> None:
    settings = ws_settings(tmp_path / "home", "  rate_limit_per_minute: 3\n")
    async with served(settings) as gw:
        async with rpc(gw.url, gw.keys.alice) as client:  # the handshake counts: 1
            answers = [await client.request("ping") for _ in range(3)]
            refused_handshake = await refused_with(gw.url, gw.keys.alice)
            still_open = await client.request("ping")
        async with rpc(gw.url, gw.keys.bob) as other_key:
            others = await other_key.call("ping")

    assert [a.get("result") for a in answers] == ["pong", "pong", None]
    limited = answers[2]["error"]
    assert limited["code"] == -32029
    assert limited["data"]["code"] == "rate_limited"
    assert limited["data"]["details"]["retry_after"] > 0
    assert refused_handshake == 4429
    assert still_open["error"]["code"] == -32029  # answered: the connection is still there
    assert others == "pong"


async def test_the_server_pings_at_the_heartbeat_interval(tmp_path: Path) -> None:
    settings = ws_settings(tmp_path / "home", "  ws_heartbeat_secs: 0.2\n")
    async with served(settings) as gw:
        client = await SlowClient.open(gw.url, gw.keys.alice)
        try:
            await client.read_until(lambda: client.pings >= 1)
            # Each answered with a pong, so the server keeps the connection and pings on.
            await client.read_until(lambda: client.pings >= 3)
            await client.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
            await client.read_until(lambda: bool(client.frames))
        finally:
            client.close()

    assert client.frames == [{"jsonrpc": "2.0", "id": 1, "result": "pong"}]
