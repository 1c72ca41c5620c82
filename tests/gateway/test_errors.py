"""HTTP-level failures answer in the one error shape with the documented status: a body the
JSON parser cannot read is 422 saying why, a method a path does not take is 405 naming the
methods it does."""

from __future__ import annotations

import httpx
import pytest
from gateway_support import Keys, auth

from promptline.app import App

Served = tuple[App, httpx.AsyncClient]
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"channel": }', "the request body is not valid JSON: Expecting value at character 12"),
        (
            b'{"channel": "web"',
            "the request body is not valid JSON: Expecting ',' delimiter at character 17",
        ),
        (
            b'{"ttl_secs": ' + b"1" * 5000 + b"}",
            "the request body holds an integer of more than 4300 digits",
        ),
    ],
)
async def test_a_body_the_json_parser_cannot_read_is_422_saying_why(
    served: Served, keys: Keys, body: bytes, message: str
) -> None:
    _, client = served

    response = await client.post("/v1/sessions", content=body, headers={**auth(keys.alice), **JSON})
    after = await client.get("/v1/sessions", headers=auth(keys.alice))

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"] == message
    assert after.status_code == 200
    assert after.json()["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/v1/sessions", "GET, POST"),
        ("PUT", "/v1/sessions/ses_x", "DELETE, GET"),
        ("POST", "/v1/state/global/k", "DELETE, GET, PUT"),
    ],
)
async def test_a_method_the_path_does_not_take_is_405_naming_every_method_it_does(
    served: Served, keys: Keys, method: str, path: str, allowed: str
) -> None:
    _, client = served

    response = await client.request(method, path, headers=auth(keys.alice))

    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert error["message"] == f"{method} is not allowed on {path}; it takes {allowed}"
