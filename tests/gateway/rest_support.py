"""Shared pieces of the REST tests: settings with a model that asks for an approval, and
helpers that create sessions, start runs, wait for conditions and read SSE frames."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from gateway_support import Keys, auth, make_keys

from promptline.app import build_app
from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.gateway.server import ServeInfo

WRITER = """\
- tool_calls:
    - name: file_write
      arguments: {path: note.txt, content: "written once approved"}
- reply: "Done: note.txt is written."
"""
"""A scripted model (``scripted/writer``) whose first turn calls ``file_write``, which the
settings below make ask for an approval: its run waits for a person."""

CONFIG = """\
models:
  default: scripted/demo
  providers:
    scripted:
      scripts_dir: "{scripts}"
agent:
  default_mode: act
  stream_enabled: true
  shutdown_timeout_secs: 0.2
tools:
  file_write: ask
"""
"""The gateway tests' base config, plus: ``file_write`` asks for an approval, the writer
script is served, and runs left waiting when a test ends are stopped at once."""

T = TypeVar("T")


def rest_settings(home: Path) -> Settings:
    """Settings of a home whose ``scripted/writer`` model waits for an approval."""
    scripts = home / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "writer.yaml").write_text(WRITER, encoding="utf-8")
    config = home / "config.yaml"
    config.write_text(CONFIG.format(scripts=scripts), encoding="utf-8")
    return load_settings(config, environ={"PROMPTLINE_HOME": str(home)})


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0, what: str = "it"
) -> T:
    """Poll ``probe`` until it returns something other than None (or fail after
    ``within`` seconds)."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


async def new_session(client: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/sessions", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


async def send(
    client: httpx.AsyncClient, key: str, session_id: str, content: str, **body: Any
) -> dict[str, Any]:
    """Send a message and wait for the run's record (``?wait=true``)."""
    response = await client.post(
        f"/v1/sessions/{session_id}/messages",
        params={"wait": "true"},
        json={"content": content, **body},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


@dataclass
class Waiting:
    """A run that waits for an approval: its session, its id and the pending request."""

    session_id: str
    run_id: str
    request: dict[str, Any]


async def waiting_run(
    client: httpx.AsyncClient, key: str, session_id: str | None = None
) -> Waiting:
    """Start a ``scripted/writer`` run (in a new session unless given; a given one must
    hold no answer yet, as the writer asks on its first turn) and wait until it asks for
    its approval."""
    if session_id is None:
        session_id = (await new_session(client, key))["id"]
    started = await client.post(
        f"/v1/sessions/{session_id}/messages",
        json={"content": "write the note", "model": "scripted/writer"},
        headers=auth(key),
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    async def pending() -> dict[str, Any] | None:
        listed = await client.get(
            "/v1/approvals", params={"session_id": session_id}, headers=auth(key)
        )
        assert listed.status_code == 200, listed.text
        mine = [r for r in listed.json()["items"] if r["run_id"] == run_id]
        return mine[0] if mine else None

    request = await eventually(pending, what=f"the approval request of {run_id}")
    return Waiting(session_id=session_id, run_id=run_id, request=request)


async def run_status(client: httpx.AsyncClient, key: str, run_id: str) -> str:
    response = await client.get(f"/v1/runs/{run_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def ended(client: httpx.AsyncClient, key: str, run_id: str) -> str:
    """Wait until the run has ended; its status."""

    async def final() -> str | None:
        status = await run_status(client, key, run_id)
        return status if status not in ("queued", "running", "waiting_approval") else None

    return await eventually(final, what=f"the end of {run_id}")


@dataclass
class Frame:
    """One Server-Sent Events frame (``id`` 0: the frame had none, a transient delta)."""

    id: int
    event: str
    data: dict[str, Any]


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """The frames of an SSE response as they arrive (comments skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if fields:
                yield Frame(
                    id=int(fields.get("id", 0)),
                    event=fields["event"],
                    data=json.loads(fields["data"]),
                )
                fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value


def live_client(info: ServeInfo) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{info.port}", timeout=30)


async def subscribers(client: httpx.AsyncClient) -> int:
    """How many bus subscriptions the served app holds (as /readyz reports)."""
    ready = await client.get("/readyz")
    return int(ready.json()["checks"]["bus"]["subscribers"])


async def keys_for(settings: Settings) -> Keys:
    """Make the test keys in the home of ``settings`` (before serving it)."""
    async with build_app(settings) as app:
        return await make_keys(app)
