"""A provider key kept in the secret store reaches the provider and nothing else: not the
gateway's log, not the event log, not the configuration shown, not an API answer, not even
when the provider quotes the key back in an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.openai_server import FakeOpenAI, ServerError, TextReply, running_fake_openai
from served_gateway import served_gateway

pytestmark = pytest.mark.slow

PROMPTLINE = [sys.executable, "-m", "promptline.cli.main"]
VALUE = "sk-kept-secret-e83c1d9a0b"


def promptline(home: Path, *args: str, stdin: str = "") -> str:
    env = {**os.environ, "PROMPTLINE_HOME": str(home)}
    env.pop("PROMPTLINE_CONFIG", None)
    env.pop("PROMPTLINE_SECRETS_KEY", None)
    done = subprocess.run(
        [*PROMPTLINE, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def every_event(url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{url}/v1/events", params=params, headers=headers, timeout=30)
        page.raise_for_status()
        body = page.json()
        events += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return events


def test_a_key_from_the_store_reaches_the_provider_and_appears_nowhere_else(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE)
    fake = FakeOpenAI()
    # The second call is refused by a provider that quotes the key it refused.
    fake.script(
        TextReply("The answer."),
        ServerError(status=401, message=f"Incorrect API key provided: {VALUE}."),
    )
    answers: list[str] = []
    with running_fake_openai(fake):
        (home / "config.yaml").write_text(
            "models:\n"
            "  default: lab/gpt-4o-mini\n"
            "  providers:\n"
            "    lab:\n"
            f'      base_url: "{fake.base_url}"\n'
            '      api_key: "${secret:LAB_KEY}"\n'
            '      models: ["gpt-4o-mini"]\n'
            "agent:\n"
            "  default_mode: act\n"
            "logging:\n"
            "  level: debug\n",
            encoding="utf-8",
        )
        with served_gateway(home, user="ops") as (url, key):
            headers = {"Authorization": f"Bearer {key}"}
            made = httpx.post(f"{url}/v1/sessions", json={}, headers=headers, timeout=30)
            session = made.json()["id"]
            answers.append(made.text)
            for text in ("First question", "Second question"):
                ran = httpx.post(
                    f"{url}/v1/sessions/{session}/messages",
                    params={"wait": "true"},
                    json={"content": text},
                    headers=headers,
                    timeout=60,
                )
                answers.append(ran.text)
            for path in ("/v1/runs", f"/v1/sessions/{session}", "/v1/models", "/metrics"):
                answers.append(httpx.get(f"{url}{path}", headers=headers, timeout=30).text)
            events = every_event(url, headers)
        sent = [request.headers.get("authorization") for request in fake.requests]

    runs = [json.loads(text) for text in answers[1:3]]
    assert [run["status"] for run in runs] == ["completed", "failed"]
    assert runs[0]["output"] == "The answer."
    assert "Incorrect API key provided: ***" in answers[2]
    assert sent == [f"Bearer {VALUE}", f"Bearer {VALUE}"]  # the provider got the key

    assert {"llm_command", "llm_result", "run_failed"} <= {event["type"] for event in events}
    assert VALUE not in json.dumps(events)
    for answer in answers:
        assert VALUE not in answer
    shown = promptline(home, "config", "show") + promptline(
        home, "config", "show", "--show-secrets"
    )
    assert "${secret:LAB_KEY}" in shown
    assert VALUE not in shown
    # Every file of the home in clear: the log, the event log's database, state, sessions.
    for path in home.rglob("*"):
        if path.is_file():
            assert VALUE.encode() not in path.read_bytes(), path
    assert (home / "serve.log").stat().st_size > 0
    assert (home / "state.db").stat().st_size > 0
