"""The OpenAPI document describes the REST resources precisely: named request bodies, a
schema for every answer (errors in the one shape), and real answers that match them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from gateway_support import Keys, auth
from rest_support import ended, new_session, rest_settings, send, waiting_run

from promptline.app import App
from promptline.config.settings import Settings

Served = tuple[App, httpx.AsyncClient]

REST = ("/v1/sessions", "/v1/runs", "/v1/approvals", "/v1/events", "/v1/state")
BODIES = {
    ("post", "/v1/sessions"): "SessionCreate",
    ("post", "/v1/sessions/import"): "SessionImport",
    ("put", "/v1/sessions/{session_id}/sandbox"): "SessionSandbox",
    ("post", "/v1/sessions/{session_id}/messages"): "MessageIn",
    ("post", "/v1/approvals/{request_id}"): "ApprovalAnswer",
    ("put", "/v1/state/{scope}/{key}"): "StateWrite",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return rest_settings(tmp_path / "home")


async def _document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        if path.startswith(REST)
        for method, operation in item.items()
    ]


async def test_every_rest_operation_has_typed_bodies_answers_and_errors(
    served: Served,
) -> None:
    _, client = served
    document = await _document(client)
    operations = _operations(document)

    assert len(operations) == 21
    for method, path, operation in operations:
        where = f"{method.upper()} {path}"
        body = operation.get("requestBody")
        if (method, path) in BODIES:
            schema = body["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{BODIES[(method, path)]}"}, where
        else:
            assert body is None, where
        answers = operation["responses"]
        ok = [status for status in answers if status.startswith("2")]
        assert ok, where
        for status in ok:
            content = answers[status].get("content", {})
            if status == "204":
                assert content == {}, where
            else:
                assert content, where
                assert all(c.get("schema") for c in content.values()), where
        for status in ("401", "404", "422"):
            error = answers[status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorOut"}, (where, status)
        assert operation.get("summary"), where
    assert "HTTPValidationError" not in str([op for _, _, op in operations])


async def test_real_answers_match_their_documented_schemas(served: Served, keys: Keys) -> None:
    _, client = served
    document = await _document(client)
    answers: list[tuple[str, str, httpx.Response]] = []
    alice = auth(keys.alice)

    async def call(method: str, template: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await client.request(method, url, headers=alice, **kwargs)
        answers.append((method.lower(), template, response))
        return response

    session = await new_session(client, keys.alice, context={"a": 1})
    sid = session["id"]
    run = await send(client, keys.alice, sid, "hello")
    waiting = await waiting_run(client, keys.alice)
    await call("POST", "/v1/sessions", "/v1/sessions", json={"channel": "web"})
    await call("GET", "/v1/sessions", "/v1/sessions")
    await call("GET", "/v1/sessions/{session_id}", f"/v1/sessions/{sid}")
    await call("GET", "/v1/sessions/search", "/v1/sessions/search?q=hello")
    exported = await call("GET", "/v1/sessions/{session_id}/export", f"/v1/sessions/{sid}/export")
    await call(
        "POST",
        "/v1/sessions/import",
        "/v1/sessions/import",
        json={"document": exported.json(), "as_new_id": True},
    )
    started = await call(
        "POST",
        "/v1/sessions/{session_id}/messages",
        f"/v1/sessions/{sid}/messages",
        json={"content": "again"},
    )
    await ended(client, keys.alice, started.json()["run_id"])
    await call("GET", "/v1/runs", "/v1/runs")
    await call("GET", "/v1/runs", "/v1/runs?active=true")
    await call("GET", "/v1/runs/{run_id}", f"/v1/runs/{run['run_id']}")
    await call("POST", "/v1/runs/{run_id}/pause", f"/v1/runs/{waiting.run_id}/pause")
    await call("POST", "/v1/runs/{run_id}/resume", f"/v1/runs/{waiting.run_id}/resume")
    await call("GET", "/v1/approvals", "/v1/approvals")
    await call(
        "POST",
        "/v1/approvals/{request_id}",
        f"/v1/approvals/{waiting.request['request_id']}",
        json={"approve": True},
    )
    await ended(client, keys.alice, waiting.run_id)
    await call("GET", "/v1/events", f"/v1/events?session_id={sid}&limit=1000")
    await call("PUT", "/v1/state/{scope}/{key}", "/v1/state/local/k", json={"value": [1]})
    await call("GET", "/v1/state/{scope}/{key}", "/v1/state/local/k")
    await call("GET", "/v1/runs/{run_id}", "/v1/runs/run_nope")
    await call("POST", "/v1/sessions", "/v1/sessions", json={"channel": 1})
    await call("POST", "/v1/runs/{run_id}/cancel", f"/v1/runs/{run['run_id']}/cancel")
    await call("GET", "/v1/sessions", "/v1/sessions", params={"user_id": "bob"})
    await call(
        "PUT",
        "/v1/sessions/{session_id}/sandbox",
        f"/v1/sessions/{sid}/sandbox",
        json={"sandbox": "docker"},
    )

    components = {"components": document["components"]}
    for method, template, response in answers:
        operation = document["paths"][template][method]
        status = str(response.status_code)
        assert status in operation["responses"], (method, template, status)
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.validator_for({**schema, **components})
        errors = [e.message for e in validator.iter_errors(response.json())]
        assert errors == [], (method, template, status, errors[:3])
    assert {str(r.status_code) for _, _, r in answers} >= {"200", "201", "202", "404", "422"}
