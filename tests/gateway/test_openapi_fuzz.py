"""The OpenAPI document, fuzzed: schemathesis sends generated requests (valid and not) to
every operation of a real `promptline serve`; none may answer with a server error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from served_gateway import served_gateway

EXAMPLES = int(os.environ.get("PROMPTLINE_FUZZ_EXAMPLES", "12"))
"""Generated requests per operation (bounded so CI stays fast; raise it locally)."""

CONFIG = """\
models:
  default: scripted/demo
agent:
  default_mode: act
gateway:
  rate_limit_per_minute: 1000000
"""

OPENAI_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/models", "/v1/models/{model_id}", "/v1/responses"}
)
"""The operations of the OpenAI-compatible API, whose errors come in OpenAI's shape."""


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A gateway in its own process on a free port, and an admin key of it."""
    home = tmp_path_factory.mktemp("fuzz-home")
    (home / "config.yaml").write_text(CONFIG, encoding="utf-8")
    with served_gateway(home, user="fuzzer") as served:
        yield served


def test_no_request_makes_the_server_fail(fuzz_server: tuple[str, str]) -> None:
    url, key = fuzz_server
    headers = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=url, headers=headers, timeout=20)
            label = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, (
                f"{label} -> {response.status_code}: {response.text[:500]}"
            )
            if response.status_code >= 400:
                error = set(response.json()["error"])
                if case.path in OPENAI_PATHS:  # OpenAI's shape, which its clients read
                    assert {"message", "type", "param", "code"} <= error, label
                else:
                    assert error == {"code", "message", "details"}, label

        try:
            check()
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
        tried += 1

    assert tried >= 5
    assert failures == []


def test_the_openapi_document_lists_the_gateway(fuzz_server: tuple[str, str]) -> None:
    url, _ = fuzz_server
    document = httpx.get(f"{url}/openapi.json", timeout=10).json()

    assert document["info"]["title"] == "PromptLine"
    assert "/healthz" in document["paths"]
    assert "/v1/agents" in document["paths"]


def test_the_server_stays_up_after_the_fuzzing(fuzz_server: tuple[str, str]) -> None:
    url, key = fuzz_server

    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    assert (
        httpx.get(f"{url}/v1/agents", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    ).status_code == 200
