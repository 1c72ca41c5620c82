"""Roles and scopes: every REST route and WebSocket method declares the scope it needs, the
one table in code says what each role has, docs/auth.md shows that table, and the gateway
enforces it (viewer reads only, operator cannot manage keys, no tenant reaches another's
sessions, runs or approvals, whether with an API key or an access token)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from gateway_support import Keys, auth, gateway_app
from starlette.routing import BaseRoute

from promptline.app import App
from promptline.config import load_settings
from promptline.config.settings import Settings
from promptline.gateway.app import create_gateway
from promptline.gateway.deps import OwnCredential, RequireScope
from promptline.gateway.mcp_server.protocol import MCP_SCOPES
from promptline.gateway.ws.methods import METHODS
from promptline.security.auth import KeyStore
from promptline.security.scopes import ROLE_SCOPES, ROLES, SCOPES

DOC = Path(__file__).parents[2] / "docs" / "auth.md"
UNSCOPED_PATHS = {"/docs", "/openapi.json"}
"""FastAPI's own pages: the documentation, which needs no credential."""


def _routes(api: FastAPI) -> list[tuple[str, BaseRoute, Any]]:
    """Every route the app serves (those of included routers too): (path, route, dependant)."""
    found = []
    for context in iter_route_contexts(api.routes):
        route = context.original_route
        dependant = getattr(context, "dependant", None) or getattr(route, "dependant", None)
        found.append((str(context.path), route, dependant))
    return found


def _declared(dependant: Any) -> list[object]:
    return [
        dep.call
        for dep in dependant.dependencies
        if isinstance(dep.call, RequireScope | OwnCredential)
    ]


def test_every_rest_route_declares_its_scope(served: tuple[App, httpx.AsyncClient]) -> None:
    api = create_gateway(served[0])
    missing, unknown, checked = [], [], 0
    for path, route, dependant in _routes(api):
        if not isinstance(route, APIRoute) or path in UNSCOPED_PATHS:
            continue
        checked += 1
        declared = _declared(dependant)
        if len(declared) != 1:
            missing.append(f"{sorted(route.methods)} {path}")
        elif isinstance(declared[0], RequireScope) and declared[0].scope not in SCOPES:
            unknown.append(path)

    assert checked > 40  # the walk saw the routes of every included router
    assert missing == []
    assert unknown == []


def test_only_token_health_and_docs_routes_need_no_scope(
    served: tuple[App, httpx.AsyncClient],
) -> None:
    api = create_gateway(served[0])
    unscoped = {
        path
        for path, route, dependant in _routes(api)
        if isinstance(route, APIRoute)
        and any(isinstance(call, OwnCredential) for call in _declared(dependant))
    }

    assert unscoped == {
        "/healthz",
        "/readyz",
        "/v1/auth/token",
        "/v1/auth/refresh",
        "/v1/auth/revoke",
    }


def test_the_websocket_route_is_the_control_plane_whose_methods_check_scopes(
    served: tuple[App, httpx.AsyncClient],
) -> None:
    api = create_gateway(served[0])
    sockets = [path for path, route, _ in _routes(api) if isinstance(route, APIWebSocketRoute)]

    assert sockets == ["/v1/ws"]
    assert {name: method.scope in SCOPES for name, method in METHODS.items()} == dict.fromkeys(
        METHODS, True
    )


def test_every_mcp_request_names_a_known_scope() -> None:
    assert set(MCP_SCOPES) == {"tools/list", "tools/call"}
    assert set(MCP_SCOPES.values()) <= set(SCOPES)


def test_the_roles_table_keeps_its_promises() -> None:
    writes = {s for s in SCOPES if s.endswith(":write")}

    assert ROLE_SCOPES["admin"] == frozenset(SCOPES)
    assert not ROLE_SCOPES["viewer"] & (writes | {"keys:admin", "tenant:all"})
    assert {"runs:write", "approvals:write"} <= ROLE_SCOPES["operator"]
    assert "keys:admin" not in ROLE_SCOPES["operator"]
    assert "keys:admin" not in ROLE_SCOPES["user"]
    assert "tenant:all" not in ROLE_SCOPES["user"]
    assert all(set(scopes) <= set(SCOPES) for scopes in ROLE_SCOPES.values())


def _doc_table() -> dict[str, set[str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("<!-- roles table -->")[1].strip().split("\n\n")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    header = next(line for line in section.splitlines() if line.startswith("| scope"))
    roles = [cell.strip() for cell in header.strip("|").split("|")[2:]]
    granted: dict[str, set[str]] = {role: set() for role in roles}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        scope = cells[0].strip("`")
        for role, cell in zip(roles, cells[2:], strict=True):
            if cell == "yes":
                granted[role].add(scope)
    return granted


def test_the_docs_table_is_the_code_table() -> None:
    table = _doc_table()

    assert list(table) == list(ROLES)
    assert table == {role: set(scopes) for role, scopes in ROLE_SCOPES.items()}
    text = DOC.read_text(encoding="utf-8")
    for scope, meaning in SCOPES.items():
        assert re.search(rf"\| `{re.escape(scope)}` \| {re.escape(meaning)} \|", text), scope


def test_the_docs_name_each_websocket_method_and_mcp_request_with_its_scope() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z./]+)` \| `([a-z]+:[a-z]+)` \|$", text, flags=re.M))

    expected = {name: method.scope for name, method in METHODS.items()} | MCP_SCOPES
    assert rows == expected


# -- enforcement ------------------------------------------------------------------------------


async def _key(app: App, user: str, role: str, tenant: str = "acme") -> str:
    _, key = await KeyStore(app.state, clock=app.clock).create(
        user,
        tenant_id=tenant,
        role=role,  # type: ignore[arg-type]
    )
    return key


async def _token(client: httpx.AsyncClient, key: str) -> str:
    response = await client.post("/v1/auth/token", headers=auth(key))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _forbidden(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["details"]["scope"] == scope


@pytest.mark.parametrize("as_token", [False, True], ids=["api-key", "access-token"])
async def test_a_viewer_reads_but_cannot_write(
    served: tuple[App, httpx.AsyncClient], as_token: bool
) -> None:
    app, client = served
    viewer = await _key(app, "vic", "viewer")
    if as_token:
        viewer = await _token(client, viewer)
    headers = auth(viewer)

    assert (await client.get("/v1/sessions", headers=headers)).status_code == 200
    assert (await client.get("/v1/agents", headers=headers)).status_code == 200
    assert (await client.get("/v1/runs", headers=headers)).status_code == 200
    assert (await client.get("/v1/approvals", headers=headers)).status_code == 200
    _forbidden(await client.post("/v1/sessions", json={}, headers=headers), "sessions:write")
    _forbidden(
        await client.post("/v1/sessions/ses_x/messages", json={"content": "hi"}, headers=headers),
        "runs:write",
    )
    _forbidden(
        await client.post("/v1/approvals/req_x", json={"approve": True}, headers=headers),
        "approvals:write",
    )
    _forbidden(
        await client.put("/v1/state/user/k", json={"value": 1}, headers=headers), "state:write"
    )
    _forbidden(await client.post("/v1/keys", json={"user_id": "x"}, headers=headers), "keys:admin")


async def test_an_operator_runs_across_the_tenant_but_cannot_manage_keys(
    served: tuple[App, httpx.AsyncClient], keys: Keys
) -> None:
    app, client = served
    operator = await _token(client, await _key(app, "olga", "operator"))
    waiting = await _waiting_approval(app, client, keys.alice)
    session_id, run_id = waiting["session"]["id"], waiting["run_id"]
    request_id = waiting["approval"]["request_id"]

    # Alice's run and its approval: the operator sees and answers them, bob (a user) not.
    for who, sees in ((operator, True), (keys.bob, False)):
        runs = (await client.get("/v1/runs", headers=auth(who))).json()["items"]
        assert (run_id in {r["run_id"] for r in runs}) is sees
        pending = (await client.get("/v1/approvals", headers=auth(who))).json()["items"]
        assert (request_id in {a["request_id"] for a in pending}) is sees
    answered = await client.post(
        f"/v1/approvals/{request_id}", json={"approve": True}, headers=auth(operator)
    )
    assert answered.status_code == 200, answered.text

    # Alice's session is visible to the tenant's operator; it may run in it.
    seen = await client.get(f"/v1/sessions/{session_id}", headers=auth(operator))
    assert seen.status_code == 200, seen.text
    sent = await client.post(
        f"/v1/sessions/{session_id}/messages", json={"content": "hi"}, headers=auth(operator)
    )
    assert sent.status_code == 202, sent.text
    for call in (
        client.post("/v1/keys", json={"user_id": "eve", "role": "admin"}, headers=auth(operator)),
        client.get("/v1/keys", headers=auth(operator)),
        client.delete("/v1/keys/key_x", headers=auth(operator)),
    ):
        _forbidden(await call, "keys:admin")


async def test_an_admin_creates_keys_of_every_role_in_its_own_tenant_only(
    served: tuple[App, httpx.AsyncClient], keys: Keys
) -> None:
    _, client = served
    for role in ROLES:
        made = await client.post(
            "/v1/keys",
            json={"user_id": f"new-{role}", "role": role, "tenant_id": "globex"},
            headers=auth(keys.acme_admin),
        )
        assert made.status_code == 422  # no tenant_id: a key is of the admin's tenant
        made = await client.post(
            "/v1/keys", json={"user_id": f"new-{role}", "role": role}, headers=auth(keys.acme_admin)
        )
        assert made.status_code == 201, made.text
        assert made.json()["tenant_id"] == "acme"
        assert made.json()["role"] == role
        me = await client.get("/v1/auth/roles", headers=auth(made.json()["key"]))
        assert me.json()["you"]["role"] == role
    listed = await client.get("/v1/keys", headers=auth(keys.acme_admin))
    assert {k["tenant_id"] for k in listed.json()["items"]} == {"acme"}
    carol_id = "_".join(keys.carol.split("_")[1:3])
    gone = await client.delete(f"/v1/keys/{carol_id}", headers=auth(keys.acme_admin))
    assert gone.status_code == 404
    assert (await client.get("/v1/sessions", headers=auth(keys.carol))).status_code == 200


async def _waiting_approval(app: App, client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    """A session of ``key``'s user with a run waiting for an approval."""
    session = (await client.post("/v1/sessions", json={}, headers=auth(key))).json()
    sent = await client.post(
        f"/v1/sessions/{session['id']}/messages",
        json={"content": "please write", "agent": "writer"},
        headers=auth(key),
    )
    assert sent.status_code == 202, sent.text
    for _ in range(200):
        pending = (await client.get("/v1/approvals", headers=auth(key))).json()["items"]
        if pending:
            return {"session": session, "run_id": sent.json()["run_id"], "approval": pending[0]}
        await asyncio.sleep(0.05)
    raise AssertionError("no approval came")


WRITER = """\
models:
  default: scripted/demo
  providers:
    scripted:
      scripts_dir: "{home}/scripts"
agent:
  default_mode: act
  workspace: "{home}/workspace"
tools:
  file_write: ask
agents:
  writer:
    model: scripted/writer
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    (home / "scripts").mkdir(parents=True)
    (home / "workspace").mkdir()
    (home / "scripts" / "writer.json").write_text(
        '[{"tool_calls": [{"name": "file_write", "arguments": {"path": "n.txt", '
        '"content": "x"}}]}, {"reply": "Done."}]',
        encoding="utf-8",
    )
    (home / "config.yaml").write_text(WRITER.format(home=home), encoding="utf-8")
    return load_settings(home / "config.yaml", environ={"PROMPTLINE_HOME": str(home)})


@pytest.mark.parametrize("as_token", [False, True], ids=["api-key", "access-token"])
async def test_another_tenant_reaches_none_of_this_tenants_sessions_runs_or_approvals(
    served: tuple[App, httpx.AsyncClient], keys: Keys, as_token: bool
) -> None:
    app, client = served
    waiting = await _waiting_approval(app, client, keys.alice)
    session_id, run_id = waiting["session"]["id"], waiting["run_id"]
    request_id = waiting["approval"]["request_id"]
    globex_admin = await _key(app, "root", "admin", tenant="globex")
    outsiders = [keys.carol, globex_admin]
    if as_token:
        outsiders = [await _token(client, key) for key in outsiders]

    for outsider in outsiders:
        headers = auth(outsider)
        assert (await client.get(f"/v1/sessions/{session_id}", headers=headers)).status_code == 404
        listed = await client.get("/v1/sessions", headers=headers)
        assert session_id not in {s["id"] for s in listed.json()["items"]}
        assert (await client.get(f"/v1/runs/{run_id}", headers=headers)).status_code == 404
        runs = await client.get("/v1/runs", headers=headers)
        assert run_id not in {r["run_id"] for r in runs.json()["items"]}
        approvals = await client.get("/v1/approvals", headers=headers)
        assert approvals.json()["items"] == []
        answered = await client.post(
            f"/v1/approvals/{request_id}", json={"approve": True}, headers=headers
        )
        assert answered.status_code == 404, answered.text
        cancelled = await client.post(f"/v1/runs/{run_id}/cancel", headers=headers)
        assert cancelled.status_code == 404

    # Still pending for alice: nobody outside answered it.
    pending = await client.get("/v1/approvals", headers=auth(keys.alice))
    assert [a["request_id"] for a in pending.json()["items"]] == [request_id]


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_the_cli_makes_keys_of_the_new_roles(settings: Settings, role: str) -> None:
    from click.testing import CliRunner

    from promptline.cli.main import app as cli

    home = settings.security.tokens.signing_keys_file.parent
    made = CliRunner().invoke(
        cli,
        ["keys", "create", "--user", "olga", "--tenant", "acme", "--role", role, "--json"],
        env={"PROMPTLINE_HOME": str(home)},
        catch_exceptions=False,
    )
    assert made.exit_code == 0, made.output
    record = json.loads(made.output)
    assert record["role"] == role

    async def whoami() -> Any:
        async with gateway_app(settings) as (_, client):
            me = await client.get("/v1/auth/roles", headers=auth(record["key"]))
            return me.json()["you"]

    assert asyncio.run(whoami()) == {"user_id": "olga", "tenant_id": "acme", "role": role}
