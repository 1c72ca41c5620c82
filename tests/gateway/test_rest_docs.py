"""The REST section of docs/api.md, run as written: each curl example against a real gateway
(only the port, the key and the ids it names are put in), its answer shaped like the one the
page shows (the same keys, the same frames, the same status)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import auth, live_gateway
from rest_support import keys_for, live_client, new_session, rest_settings, send, waiting_run

DOC = Path(__file__).parents[2] / "docs" / "api.md"
SCRIPT_SECS = 30.0
TAIL_SECS = 2
"""How long an example that follows a live stream (it never ends by itself) is read."""

# Every curl fails the script on an HTTP error and still shows the error's body; each answer
# ends its own line.
PRELUDE = """\
set -euo pipefail
curl() { command curl --fail-with-body --show-error --max-time "$CURL_MAX_TIME" "$@"; echo; }
"""


def rest_examples() -> list[tuple[str, str, str]]:
    """The REST section's examples: (shell command, language of its answer, the answer)."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## REST\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.DOTALL)
    examples = []
    for index, (language, body) in enumerate(blocks):
        if language == "sh":
            answer_language, answer = blocks[index + 1]
            assert answer_language in ("json", "text"), body
            examples.append((body, answer_language, answer))
    return examples


def _shape(value: Any) -> Any:
    """The keys of a JSON value, all the way down (a list by its first item)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def _frames(text: str) -> list[dict[str, str]]:
    frames = []
    for chunk in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in chunk.splitlines() if line and not line.startswith(":")
        )
        if fields:
            frames.append(fields)
    return frames


def test_every_rest_endpoint_has_an_example() -> None:
    commands = "\n".join(command for command, _, _ in rest_examples())

    for needle in [
        '-d \'{"channel"',
        "/v1/sessions?",
        "/v1/sessions/$SESSION?",
        '-X DELETE "http://localhost:8080/v1/sessions/$SESSION"',
        "/sandbox",
        "/export",
        "/v1/sessions/import",
        "/v1/sessions/search",
        '/messages"',
        "/messages?wait=true",
        "/messages?stream=true",
        "/v1/runs?",
        '/v1/runs/$RUN"',
        "/pause",
        "/cancel",
        '/v1/approvals"',
        "/v1/approvals/$REQUEST",
        "/v1/events?",
        "/events?from_seq=0",
        '-X PUT "http://localhost:8080/v1/state/',
        "/v1/state/session/",
        '"http://localhost:8080/v1/state/global/prices/eu"',
    ]:
        assert needle in commands, needle


@pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("jq")),
    reason="the examples need bash, curl and jq",
)
async def test_the_rest_examples_work_as_written(tmp_path: Path) -> None:
    settings = rest_settings(tmp_path / "home")
    keys = await keys_for(settings)
    examples = rest_examples()
    async with live_gateway(settings) as info, live_client(info) as client:
        for command, language, answer in examples:
            env = await _ids_for(client, keys.alice, command)
            follows = "events?from_seq" in command
            env |= {
                "PROMPTLINE_API_KEY": keys.alice,
                "PROMPTLINE_ADMIN_KEY": keys.acme_admin,
                "CURL_MAX_TIME": str(TAIL_SECS if follows else SCRIPT_SECS),
            }
            script = PRELUDE + command.replace("localhost:8080", f"127.0.0.1:{info.port}")
            process = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                script,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **env},
            )
            out, err = await asyncio.wait_for(process.communicate(), SCRIPT_SECS + 5)
            said = f"{command}\nstdout:\n{out.decode()}\nstderr:\n{err.decode()}"
            timed_out = 28
            assert process.returncode == (timed_out if follows else 0), said
            _check(language, answer, out.decode(), said)


async def _ids_for(client: httpx.AsyncClient, key: str, command: str) -> dict[str, str]:
    """Fresh ids for the ones the example names: a session with an exchange and a state
    value, a run waiting for an approval, a pending request."""
    ids: dict[str, str] = {}
    if "$SESSION" in command:
        session = await new_session(client, key, channel="web", context={"topic": "billing"})
        await send(client, key, session["id"], "Where is the March invoice?")
        written = await client.put(
            "/v1/state/session/plan",
            params={"session_id": session["id"]},
            json={"value": {"step": 2}},
            headers=auth(key),
        )
        assert written.status_code == 200
        ids["SESSION"] = session["id"]
    if "$RUN" in command:
        ids["RUN"] = (await waiting_run(client, key)).run_id
    if "$REQUEST" in command:
        ids["REQUEST"] = (await waiting_run(client, key)).request["request_id"]
    return ids


def _check(language: str, answer: str, out: str, said: str) -> None:
    if language == "json":
        assert _shape(json.loads(out)) == _shape(json.loads(answer)), said
        return
    if not answer.startswith("id: "):
        assert out.strip() == answer.strip(), said
        return
    shown, got = _frames(answer), _frames(out)
    assert got, said
    # Every frame has an id, its event's seq, but a transient llm_delta (seq 0, not stored).
    for frame in got:
        seq = json.loads(frame["data"])["seq"]
        if frame["event"] == "llm_delta":
            assert (set(frame), seq) == ({"event", "data"}, 0), said
        else:
            assert (set(frame), seq) == ({"id", "event", "data"}, int(frame["id"])), said
    assert got[0]["event"] == shown[0]["event"], said
    assert {f["event"] for f in shown} <= {f["event"] for f in got}, said
    if shown[-1]["event"] == "run_completed":
        assert got[-1]["event"] == "run_completed", said
