"""The gateway's error answers become typed exceptions, by code, with the server's message
and hint: 401, 404, 413, 422, 429 over REST; the same over the WebSocket's JSON-RPC."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from client_support import Served, client_settings, serving

from promptline.client import (
    AsyncPromptLine,
    AuthenticationError,
    ClientError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceUnavailableError,
)
from promptline.client.errors import error_from_body, error_from_rpc
from promptline.core.errors import ConflictError, PromptLineError


async def test_an_unknown_session_is_not_found_with_the_servers_message_and_hint(
    client: AsyncPromptLine,
) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.sessions.get("ses_nope")

    assert caught.value.code == "not_found"
    assert caught.value.message == "no session 'ses_nope'"
    assert caught.value.hint
    assert "hint:" in str(caught.value)


async def test_a_wrong_key_is_an_authentication_error(served: Served) -> None:
    async with AsyncPromptLine(served.url, "pl_not_a_key") as stranger:
        with pytest.raises(AuthenticationError) as caught:
            await stranger.sessions.list()
    assert caught.value.code == "unauthorized"
    assert caught.value.message


async def test_no_key_at_all_is_an_authentication_error(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMPTLINE_API_KEY", raising=False)
    async with AsyncPromptLine(served.url) as anonymous:
        with pytest.raises(AuthenticationError):
            await anonymous.agents.list()


async def test_a_malformed_request_is_invalid_input(client: AsyncPromptLine) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await client.sessions.list(limit=0)
    assert caught.value.code == "invalid_input"
    assert "limit" in caught.value.message
    assert caught.value.details["errors"]


async def test_a_blank_message_is_invalid_input(client: AsyncPromptLine) -> None:
    session = await client.sessions.create()
    with pytest.raises(InvalidInputError):
        await client.sessions.send(session.id, "   ")


async def test_a_compare_and_set_that_loses_is_a_conflict(client: AsyncPromptLine) -> None:
    await client.state.set("local", "counter", 1)
    with pytest.raises(ConflictError):
        await client.state.set("local", "counter", 2, expected_version=7)


async def test_over_the_rate_limit_is_rate_limited_with_retry_after(tmp_path: Path) -> None:
    settings = client_settings(tmp_path / "home", "gateway:\n  rate_limit_per_minute: 3\n")
    async with serving(settings) as served, AsyncPromptLine(served.url, served.keys.bob) as bob:
        for _ in range(3):  # the limit's worth
            await bob.agents.list()
        with pytest.raises(RateLimitedError) as caught:
            await bob.agents.list()

    assert caught.value.code == "rate_limited"
    assert caught.value.retry_after > 0
    assert caught.value.hint


async def test_a_body_over_the_limit_is_payload_too_large(tmp_path: Path) -> None:
    settings = client_settings(tmp_path / "home", "gateway:\n  max_body_bytes: 2000\n")
    async with (
        serving(settings) as served,
        AsyncPromptLine(served.url, served.keys.alice) as alice,
    ):
        session = await alice.sessions.create()
        with pytest.raises(PayloadTooLargeError) as caught:
            await alice.sessions.send(session.id, "x" * 5000)

    assert caught.value.code == "payload_too_large"
    assert isinstance(caught.value, InvalidInputError)  # caught by meaning too


async def test_an_error_code_the_client_does_not_know_is_a_client_error(
    client: AsyncPromptLine,
) -> None:
    with pytest.raises(ClientError) as caught:
        await client.http.request("PATCH", "/v1/sessions")

    assert caught.value.code == "method_not_allowed"
    assert caught.value.status == 405


def test_error_bodies_map_to_the_class_of_their_code() -> None:
    unknown = error_from_body(
        418, {"error": {"code": "teapot", "message": "short and stout", "details": {"a": 1}}}
    )
    limited = error_from_body(
        429,
        {"error": {"code": "rate_limited", "message": "slow down", "details": {"hint": "wait"}}},
        retry_after="7",
    )
    proxy = error_from_body(502, "<html>bad gateway</html>", fallback="GET /v1/x: HTTP 502")

    assert isinstance(unknown, ClientError)
    assert (unknown.code, unknown.status, unknown.message) == ("teapot", 418, "short and stout")
    assert unknown.details == {"a": 1}
    assert isinstance(limited, RateLimitedError)
    assert (limited.retry_after, limited.hint, limited.message) == (7.0, "wait", "slow down")
    assert isinstance(proxy, ServiceUnavailableError)


def test_json_rpc_errors_map_by_their_data_code_or_their_number() -> None:
    busy = error_from_rpc(
        {"code": -32000, "message": "busy", "data": {"code": "session_busy", "details": {}}}
    )
    unknown_method = error_from_rpc({"code": -32601, "message": "method not found: x"})
    bad_params = error_from_rpc({"code": -32602, "message": "session_id: Field required"})

    assert isinstance(busy, ConflictError)
    assert busy.code == "session_busy"
    assert isinstance(unknown_method, NotFoundError)
    assert isinstance(bad_params, InvalidInputError)
    assert bad_params.message == "session_id: Field required"


async def test_a_gateway_that_is_not_there_is_service_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AsyncPromptLine(f"http://127.0.0.1:{port}", "pl_x", timeout=5) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.sessions.list()
        with pytest.raises(ServiceUnavailableError):
            await client.websocket()
    assert "is `promptline serve` running there" in (caught.value.hint or "")


async def test_websocket_errors_are_typed_too(client: AsyncPromptLine) -> None:
    connection = await client.websocket()

    with pytest.raises(NotFoundError) as missing:
        await connection.send("ses_nope", "hello")
    with pytest.raises(NotFoundError):
        await connection.call("no.such.method")
    with pytest.raises(InvalidInputError):
        await connection.call("session.send", {"session_id": 42})

    assert missing.value.message == "no session 'ses_nope'"
    assert await connection.ping() == "pong"  # a bad request never closes the connection


async def test_a_refused_key_over_the_websocket_is_an_authentication_error(
    served: Served,
) -> None:
    async with AsyncPromptLine(served.url, "pl_not_a_key") as stranger:
        connection = await stranger.websocket()  # refused just after the handshake
        with pytest.raises(AuthenticationError):
            await connection.ping()


def test_every_error_is_a_promptline_error() -> None:
    assert issubclass(ClientError, PromptLineError)
