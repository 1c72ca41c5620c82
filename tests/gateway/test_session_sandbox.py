"""A session's own sandbox: only a caller with the scope ``sessions:sandbox`` may choose it,
the API shows it, it is in the session's event log (so it holds after a restart), and it
tightens what the agent's setting chose: a command of an agent set to ``process`` in a
session set to ``bubblewrap`` cannot write outside its workspace. A channel's entry in
``security.sandbox_channels`` tightens the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import auth, gateway_app, make_keys
from rest_support import new_session, send

from promptline.app import App
from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.core.events import AuditEvent, ToolResultEvent
from promptline.core.messages import ToolResult
from promptline.security.audit import AUDIT_STREAM
from promptline.security.auth import KeyStore
from promptline.security.sandbox import bwrap_problem

BWRAP_PROBLEM = bwrap_problem()
needs_bwrap = pytest.mark.skipif(
    BWRAP_PROBLEM is not None, reason=f"bubblewrap cannot run here: {BWRAP_PROBLEM}"
)

ESCAPE = """\
- tool_calls:
    - name: shell_execute
      arguments: {{command: "touch {target} && echo wrote it"}}
- reply: "done"
"""
"""A scripted model (``scripted/escape``) that writes a file outside its workspace."""

CONFIG = """\
models:
  default: scripted/escape
  providers:
    scripted:
      scripts_dir: "{scripts}"
agent:
  default_mode: act
  shutdown_timeout_secs: 0.2
tools:
  shell_execute: allow
security:
  sandbox: process
  sandbox_channels:
    group: bubblewrap
"""
"""The default agent's sandbox is ``process``; the channel ``group``'s is ``bubblewrap``."""


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the home, which the process sandbox may write and bubblewrap may not."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(tmp_path: Path, outside: Path) -> Settings:
    home = tmp_path / "home"
    scripts = home / "scripts"
    scripts.mkdir(parents=True)
    escape = ESCAPE.format(target=outside / "escaped.txt")
    (scripts / "escape.yaml").write_text(escape, encoding="utf-8")
    config = home / "config.yaml"
    config.write_text(CONFIG.format(scripts=scripts), encoding="utf-8")
    return load_settings(config, environ={"PROMPTLINE_HOME": str(home)})


async def operator_key(app: App) -> str:
    _, key = await KeyStore(app.state, clock=app.clock).create(
        "olga", tenant_id="acme", role="operator"
    )
    return key


async def choose(
    client: httpx.AsyncClient, key: str, session_id: str, sandbox: str
) -> httpx.Response:
    return await client.put(
        f"/v1/sessions/{session_id}/sandbox", json={"sandbox": sandbox}, headers=auth(key)
    )


async def shell_result(app: App, session_id: str) -> ToolResult:
    """The result of the one shell_execute call of the session."""
    events = await app.events.read_stream(session_id)
    results = [e.data.result for e in events if isinstance(e, ToolResultEvent)]
    assert len(results) == 1, results
    return results[0]


def forbidden(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 403, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["details"]["scope"] == "sessions:sandbox"
    return error


async def test_a_user_may_neither_create_a_session_with_a_sandbox_nor_choose_one(
    settings: Settings,
) -> None:
    async with gateway_app(settings) as (app, client):
        keys = await make_keys(app)
        refused = await client.post(
            "/v1/sessions", json={"sandbox": "docker"}, headers=auth(keys.alice)
        )
        error = forbidden(refused)
        assert "sessions:sandbox" in error["message"]
        assert "leave sandbox out" in error["details"]["hint"]
        session = await new_session(client, keys.alice)

        forbidden(await choose(client, keys.alice, session["id"], "docker"))

        listed = await client.get("/v1/sessions", headers=auth(keys.alice))
        assert [s["sandbox"] for s in listed.json()["items"]] == [None]


async def test_an_operator_chooses_a_sessions_sandbox_and_the_api_shows_it(
    settings: Settings,
) -> None:
    async with gateway_app(settings) as (app, client):
        keys = await make_keys(app)
        operator = await operator_key(app)
        made = await client.post(
            "/v1/sessions", json={"sandbox": "bubblewrap"}, headers=auth(operator)
        )
        assert made.status_code == 201, made.text
        assert made.json()["sandbox"] == "bubblewrap"
        session = await new_session(client, keys.alice)

        chosen = await choose(client, operator, session["id"], "docker")

        assert chosen.status_code == 200, chosen.text
        assert chosen.json()["sandbox"] == "docker"
        seen = await client.get(f"/v1/sessions/{session['id']}", headers=auth(keys.alice))
        assert seen.json()["sandbox"] == "docker"
        unknown = await choose(client, operator, session["id"], "jail")
        assert unknown.status_code == 422, unknown.text
        # Who chose is on the audit trail (the session's own events name its owner).
        audit = await app.events.read_stream(AUDIT_STREAM)
        chosen_by = [
            (e.data.actor, e.data.target, e.data.details["sandbox"])
            for e in audit
            if isinstance(e, AuditEvent) and e.data.action == "session.sandbox_changed"
        ]
        assert chosen_by == [
            ("olga", made.json()["id"], "bubblewrap"),
            ("olga", session["id"], "docker"),
        ]


@needs_bwrap
async def test_a_session_set_to_bubblewrap_keeps_it_after_a_restart_over_an_agents_process(
    settings: Settings, outside: Path
) -> None:
    async with gateway_app(settings) as (app, client):
        keys = await make_keys(app)
        boxed = await new_session(client, keys.alice)
        chosen = await choose(client, keys.acme_admin, boxed["id"], "bubblewrap")
        assert chosen.status_code == 200, chosen.text

    # The same SQLite file, opened by a new process's worth of services.
    async with gateway_app(settings) as (app, client):
        seen = await client.get(f"/v1/sessions/{boxed['id']}", headers=auth(keys.alice))
        assert seen.json()["sandbox"] == "bubblewrap"

        await send(client, keys.alice, boxed["id"], "write outside")

        result = await shell_result(app, boxed["id"])
        assert result.metadata["sandbox"] == "bubblewrap"
        assert result.is_error, result.content
        assert not (outside / "escaped.txt").exists()

        # The same agent in a session that chose nothing runs in its own process sandbox,
        # where the write goes through: the path is writable but for the session's choice.
        plain = await new_session(client, keys.alice)
        await send(client, keys.alice, plain["id"], "write outside")

        result = await shell_result(app, plain["id"])
        assert result.metadata["sandbox"] == "process"
        assert (outside / "escaped.txt").exists()


@needs_bwrap
async def test_a_channels_entry_tightens_the_sandbox_of_its_sessions(
    settings: Settings, outside: Path
) -> None:
    async with gateway_app(settings) as (app, client):
        keys = await make_keys(app)
        group = await new_session(client, keys.alice, channel="group")

        await send(client, keys.alice, group["id"], "write outside")

        result = await shell_result(app, group["id"])
        assert result.metadata["sandbox"] == "bubblewrap"
        assert not (outside / "escaped.txt").exists()
        # A session of the channel cannot loosen it: `process` is weaker, so bubblewrap stays.
        loosened = await new_session(client, keys.acme_admin, channel="group", sandbox="process")
        await send(client, keys.acme_admin, loosened["id"], "write outside")

        result = await shell_result(app, loosened["id"])
        assert result.metadata["sandbox"] == "bubblewrap"
        assert not (outside / "escaped.txt").exists()
