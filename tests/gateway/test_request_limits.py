"""What the gateway refuses before a route sees a request: bodies over the limit (413, with
or without Content-Length, never read whole), JSON bodies that are not UTF-8 or nest too
deep (422), and NUL characters in the path or query (422); the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, auth, gateway_app, live_gateway, settings_for
from starlette.types import Message, Receive, Scope, Send

from promptline.app import App
from promptline.gateway.app import create_gateway
from promptline.gateway.limits import (
    MAX_JSON_DEPTH,
    RequestLimits,
    depth_problem,
    nesting_depth,
    utf8_problem,
)

Served = tuple[App, httpx.AsyncClient]
JSON = {"content-type": "application/json"}
JSON_HEADER = (b"content-type", b"application/json")


def nested(levels: int) -> str:
    """A JSON object ``levels`` objects deep."""
    return '{"a": ' * levels + "1" + "}" * levels


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b'"[{"', 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}], "c": {}}', 4),
        (b'["]", "\\"[", "\\\\", [["\\\\\\"{"]]]', 3),
        (b'[[["unclosed [[[[', 3),
        (b"[[[[", 4),
        (nested(MAX_JSON_DEPTH).encode(), MAX_JSON_DEPTH),
    ],
)
def test_the_nesting_depth_counts_brackets_outside_strings_only(text: bytes, depth: int) -> None:
    assert nesting_depth(text) == depth


def test_a_depth_problem_is_found_only_past_the_limit_and_names_it() -> None:
    at_limit = nested(MAX_JSON_DEPTH).encode()
    past_limit = nested(MAX_JSON_DEPTH + 1).encode()
    many_but_flat = json.dumps([{"a": [i]} for i in range(1000)]).encode()
    brackets_in_strings = json.dumps(["[" * 5000, "{" * 5000]).encode()

    problem = depth_problem(past_limit, "the body")

    assert depth_problem(at_limit, "the body") is None
    assert depth_problem(many_but_flat, "the body") is None
    assert depth_problem(brackets_in_strings, "the body") is None
    assert problem is not None
    assert problem.code == "invalid_input"
    assert (
        problem.message == f"the body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
    )
    assert problem.details == {"limit": MAX_JSON_DEPTH}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"a": "\xff"}', "the body is not valid UTF-8 at byte 7 (invalid start byte)"),
        (b'{"a": "\xc3"}', "the body is not valid UTF-8 at byte 7 (invalid continuation byte)"),
        (
            '{"a": 1}'.encode("utf-16-le"),
            "the body is not JSON in UTF-8: it holds a NUL byte at byte 1",
        ),
    ],
)
def test_a_text_that_is_not_utf8_json_is_a_problem_that_says_where(
    text: bytes, message: str
) -> None:
    problem = utf8_problem(text, "the body")

    assert problem is not None
    assert problem.message == message
    assert utf8_problem('{"a": "é \\u0000"}'.encode(), "the body") is None


def _json_routes(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) of every operation of the OpenAPI document that takes a JSON body, its
    path parameters filled in."""
    routes = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                filled = path.replace("{scope}", "local")
                while "{" in filled:
                    start = filled.index("{")
                    filled = filled[:start] + "x" + filled[filled.index("}", start) + 1 :]
                routes.append((method.upper(), filled))
    return routes


async def test_every_route_with_a_json_body_refuses_one_that_is_not_utf8_or_too_deep_with_422(
    served: Served, keys: Keys
) -> None:
    _, client = served
    routes = _json_routes((await client.get("/openapi.json")).json())
    bodies = {
        "not UTF-8": (b'{"content": "caf\xe9"}', "is not valid UTF-8"),
        "UTF-16": ('{"content": "hi"}'.encode("utf-16"), "is not valid UTF-8"),
        "too deep": (('{"content": ' + nested(MAX_JSON_DEPTH)).encode(), "deeper than 200"),
        "far too deep": (b"[" * 100_000 + b"]" * 100_000, "deeper than 200"),
    }

    assert ("POST", "/v1/chat/completions") in routes
    assert ("POST", "/v1/sessions") in routes
    assert len(routes) >= 6
    for method, path in routes:
        for name, (body, says) in bodies.items():
            response = await client.request(
                method, path, content=body, headers={**auth(keys.alice), **JSON}
            )

            assert response.status_code == 422, (method, path, name, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_input", (method, path, name)
            assert says in error["message"] or "NUL byte" in error["message"], error
            assert error["message"].startswith("the request body")
    alive = await client.get("/v1/agents", headers=auth(keys.alice))
    assert alive.status_code == 200


async def test_a_body_nested_up_to_the_limit_is_taken_and_stored(
    served: Served, keys: Keys
) -> None:
    _, client = served
    context = json.loads(nested(MAX_JSON_DEPTH - 1))

    made = await client.post(
        "/v1/sessions",
        content=json.dumps({"context": context}),
        headers={**auth(keys.alice), **JSON},
    )
    refused = await client.post(
        "/v1/sessions",
        content=json.dumps({"context": {"a": context}}),
        headers={**auth(keys.alice), **JSON},
    )
    read = await client.get(f"/v1/sessions/{made.json()['id']}", headers=auth(keys.alice))

    assert made.status_code == 201, made.text
    assert read.json()["context"] == context
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == {
        "limit": MAX_JSON_DEPTH,
        "hint": f"flatten the data: at most {MAX_JSON_DEPTH} levels of nesting are taken",
    }


async def test_a_body_that_is_not_json_by_its_content_type_is_left_to_the_route(
    served: Served, keys: Keys
) -> None:
    _, client = served

    response = await client.post(
        "/v1/sessions",
        content=b"\xff" + b"[" * 1000,
        headers={**auth(keys.alice), "content-type": "text/plain"},
    )

    assert response.status_code == 422
    assert "UTF-8" not in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/v1/sessions/ses_a%00b", "the path holds a NUL character (%00)"),
        ("/v1/state/local/key%00", "the path holds a NUL character (%00)"),
        ("/v1/events?session_id=a%00b", "query parameter 'session_id' holds a NUL character (%00)"),
        ("/v1/sessions?cursor=%00", "query parameter 'cursor' holds a NUL character (%00)"),
        ("/v1/sessions/search?q=hi%00", "query parameter 'q' holds a NUL character (%00)"),
    ],
)
async def test_a_nul_in_the_path_or_a_query_parameter_is_422_naming_it(
    served: Served, keys: Keys, url: str, message: str
) -> None:
    _, client = served

    response = await client.get(url, headers=auth(keys.alice))

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"] == message


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"gateway"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("gateway", 80),
    }


async def _answer(asgi: Any, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await asgi(scope, receive, send)
    start, *bodies = sent
    return int(start["status"]), json.loads(b"".join(m.get("body", b"") for m in bodies))


async def test_a_chunked_body_over_the_limit_is_413_after_reading_no_more_than_the_limit(
    tmp_path: Path,
) -> None:
    """The client streams without end; the gateway stops reading once the limit is passed."""
    settings = settings_for(tmp_path / "home", "gateway:\n  max_body_bytes: 10000\n")
    chunk = b" " * 1000
    pulled = 0

    async def endless() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def declared() -> Message:
        raise AssertionError("a body declared too large is not read")

    async with gateway_app(settings) as (app, _):
        api = create_gateway(app, auth=False)
        chunked = await _answer(
            api, _scope("/v1/sessions", [(b"transfer-encoding", b"chunked")]), endless
        )
        with_length = await _answer(
            api, _scope("/v1/sessions", [(b"content-length", b"20000")]), declared
        )

    assert chunked == with_length
    status, body = chunked
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"]["limit"] == 10000
    assert pulled == 11


async def test_the_app_gets_the_body_whole_then_what_the_server_sends_next() -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    parts = iter(
        [
            {"type": "http.request", "body": b'{"a": ', "more_body": True},
            {"type": "http.request", "body": b"1}", "more_body": False},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> Message:
        return next(parts)

    async def send(message: Message) -> None:
        pass

    await RequestLimits(app, max_bytes=100)(_scope("/v1/x", [JSON_HEADER]), receive, send)

    assert seen == [
        {"type": "http.request", "body": b'{"a": 1}', "more_body": False},
        {"type": "http.disconnect"},
    ]


async def test_a_live_server_answers_a_chunked_body_over_the_limit_with_413_and_goes_on(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path / "home", "gateway:\n  max_body_bytes: 10000\n")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 1000

    async with live_gateway(settings) as info:
        key = info.admin_key
        assert key is not None
        base = f"http://127.0.0.1:{info.port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            chunked = await client.post(
                "/v1/sessions", content=chunks(), headers={**auth(key), **JSON}
            )
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            sized = await client.post(
                "/v1/sessions", content=b" " * 20000, headers={**auth(key), **JSON}
            )
            after = await client.get("/v1/agents", headers=auth(key))

    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413
    assert chunked.json() == sized.json()
    assert sized.status_code == 413
    assert after.status_code == 200
