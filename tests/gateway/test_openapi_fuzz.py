"""The OpenAPI document, fuzzed: schemathesis sends generated requests (valid and not) to
every operation of a real `promptline serve`; none may answer with a server error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A gateway in its own process on a free port, and an admin key of it."""
    home = tmp_path_factory.mktemp("fuzz-home")
    (home / "config.yaml").write_text(CONFIG, encoding="utf-8")
    env = {**os.environ, "PROMPTLINE_HOME": str(home)}
    promptline = [sys.executable, "-m", "promptline.cli.main"]
    made = subprocess.run(
        [*promptline, "keys", "create", "--user", "fuzzer", "--role", "admin", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    key = json.loads(made.stdout)["key"]
    port = _free_port()
    # Its log (a line per request) goes to a file: a pipe nobody reads would fill and stall it.
    log = home / "serve.log"
    with log.open("wb") as stderr:
        server = subprocess.Popen(
            [*promptline, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start: {log.read_text()!r}")
            time.sleep(0.1)
        yield url, key
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


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
