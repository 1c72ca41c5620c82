"""``POST /v1/chat/completions`` answers the same whichever way the gateway reads it: a plain
JSON request goes straight to the endpoint, any other (no JSON media type, a body that does
not validate, a header out of its limits) through FastAPI's route, as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from openai_support import Live, live_openai

BODY = {"model": "agent/streamer", "messages": [{"role": "user", "content": "count"}]}


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_openai(tmp_path) as served:
        yield served


def _client(live: Live, key: str | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=live.base_url.removesuffix("/v1"),
        headers={"Authorization": f"Bearer {key or live.keys.alice}"},
        timeout=30,
    )


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.example+json",
    ],
)
async def test_the_answer_is_the_same_for_every_way_a_json_body_comes(
    live: Live, content_type: str
) -> None:
    async with _client(live) as client:
        answer = await client.post(
            "/v1/chat/completions",
            content=orjson.dumps(BODY),
            headers={"Content-Type": content_type},
        )

    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["object"] == "chat.completion"
    assert document["choices"][0]["message"]["content"] == "one two three"
    assert document["choices"][0]["finish_reason"] == "stop"
    assert answer.headers["x-run-id"] == document["id"].removeprefix("chatcmpl-")
    assert answer.headers["x-content-type-options"] == "nosniff"
    record = await live.record(answer.headers["x-run-id"])
    assert record.status == "completed"


async def test_a_body_that_does_not_validate_is_refused_as_before(live: Live) -> None:
    async with _client(live) as client:
        # FastAPI's route reads no body without a JSON media type: refused, as it was.
        untyped = await client.post("/v1/chat/completions", content=orjson.dumps(BODY))
        empty = await client.post("/v1/chat/completions", json={**BODY, "messages": []})
        not_json = await client.post(
            "/v1/chat/completions", content=b"{", headers={"Content-Type": "application/json"}
        )

    assert untyped.status_code == 400
    assert untyped.json()["error"]["code"] == "invalid_input"
    assert empty.status_code == 400
    assert empty.json()["error"]["code"] == "invalid_input"
    assert empty.json()["error"]["param"] == "messages"
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_input"


async def test_a_bad_key_is_refused_before_the_body_is_looked_at(live: Live) -> None:
    async with _client(live, key="pl_key_nope_nope") as client:
        valid = await client.post("/v1/chat/completions", json=BODY)
        invalid = await client.post("/v1/chat/completions", json={"model": ""})

    assert valid.status_code == invalid.status_code == 401
    assert valid.json() == invalid.json()


async def test_a_role_without_runs_write_is_refused(live: Live) -> None:
    from promptline.security.auth import KeyStore

    _, key = await KeyStore(live.reader.state).create("viewer", role="viewer")
    async with _client(live, key=key) as client:
        answer = await client.post("/v1/chat/completions", json=BODY)

    assert answer.status_code == 403
    assert "runs:write" in answer.json()["error"]["message"]


async def test_an_idempotency_key_too_long_is_refused_and_a_retry_replays(live: Live) -> None:
    async with _client(live) as client:
        too_long = await client.post(
            "/v1/chat/completions", json=BODY, headers={"Idempotency-Key": "k" * 1000}
        )
        first = await client.post(
            "/v1/chat/completions", json=BODY, headers={"Idempotency-Key": "retry-1"}
        )
        again = await client.post(
            "/v1/chat/completions", json=BODY, headers={"Idempotency-Key": "retry-1"}
        )

    assert too_long.status_code == 400
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


async def test_a_session_header_continues_the_session(live: Live) -> None:
    async with _client(live) as client:
        answer = await client.post(
            "/v1/chat/completions", json=BODY, headers={"X-Session-Id": live.session_id}
        )

    assert answer.status_code == 200, answer.text
    assert answer.headers["x-session-id"] == live.session_id
    record = await live.record(answer.headers["x-run-id"])
    assert record.session_id == live.session_id
