"""Members of a tenant: added, changed and removed by the tenant's admin (and on the command
line), audited; signing in with a password for tokens that follow the member (a new role
refuses the old tokens until refreshed, a removed member's tokens and keys stop); refusals
that tell nothing of who is a member; a lock after repeated failures; no reach into another
tenant."""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from gateway_support import Keys, auth, make_keys, settings_for

from promptline.app import App, build_app
from promptline.cli.main import app as cli
from promptline.config.settings import Settings
from promptline.core.clock import ManualClock
from promptline.gateway.app import create_gateway
from promptline.security.members import (
    LOCK_AFTER_FAILURES,
    LOCK_WINDOW_SECS,
    MIN_PASSWORD_CHARS,
    MemberStore,
    hash_password,
    password_matches,
)
from promptline.state.file import FileStateStore

PASSWORD = "correct horse battery staple"


@dataclass
class Gw:
    app: App
    client: httpx.AsyncClient
    keys: Keys
    settings: Settings

    async def sign_in(self, tenant: str, user: str, password: str) -> httpx.Response:
        body = {"tenant_id": tenant, "user_id": user, "password": password}
        return await self.client.post("/v1/auth/token", json=body)

    async def audit(self) -> list[dict[str, Any]]:
        found = await self.app.events.read_all(None, from_position=0, limit=10_000)
        return [e.data.model_dump() for e in found if e.type == "audit"]


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gw]:
    settings = settings_for(tmp_path / "home")
    async with build_app(settings, clock=ManualClock(datetime.now(UTC))) as app:
        await app.start_runtime()
        transport = httpx.ASGITransport(app=create_gateway(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Gw(app, client, await make_keys(app), settings)


async def add(gw: Gw, user: str, *, role: str = "user", password: str | None = PASSWORD) -> None:
    body: dict[str, Any] = {"user_id": user, "role": role}
    if password is not None:
        body["password"] = password
    made = await gw.client.post("/v1/members", json=body, headers=auth(gw.keys.acme_admin))
    assert made.status_code == 201, made.text


async def test_an_admin_adds_a_member_who_signs_in_and_works_with_the_tokens(gw: Gw) -> None:
    made = await gw.client.post(
        "/v1/members",
        json={"user_id": "dana", "role": "user", "password": PASSWORD},
        headers=auth(gw.keys.acme_admin),
    )
    assert made.status_code == 201, made.text
    assert made.json()["has_password"] is True
    assert "password" not in made.json()
    assert PASSWORD not in made.text

    signed = await gw.sign_in("acme", "dana", PASSWORD)
    assert signed.status_code == 200, signed.text
    bearer = auth(signed.json()["access_token"])
    roles = await gw.client.get("/v1/auth/roles", headers=bearer)
    assert roles.json()["you"] == {"user_id": "dana", "tenant_id": "acme", "role": "user"}
    created = await gw.client.post("/v1/sessions", json={}, headers=bearer)
    assert created.status_code == 201, created.text

    listed = await gw.client.get("/v1/members", headers=auth(gw.keys.acme_admin))
    assert [m["user_id"] for m in listed.json()["items"]] == ["dana"]
    actions = [(a["action"], a["target"], a["outcome"]) for a in await gw.audit()]
    assert ("member.added", "dana", "success") in actions
    assert any(a == "auth.login" and o == "success" for a, _, o in actions)
    stored = str([e.value for e in await gw.app.state.list("global", prefix="auth/members/")])
    assert PASSWORD not in stored
    assert "scrypt$" in stored


async def test_a_wrong_password_an_unknown_user_and_no_password_are_the_same_refusal(
    gw: Gw,
) -> None:
    await add(gw, "dana")
    await add(gw, "erin", password=None)
    answers = [
        await gw.sign_in("acme", "dana", "not the password at all"),
        await gw.sign_in("acme", "nobody", PASSWORD),
        await gw.sign_in("acme", "erin", PASSWORD),
        await gw.sign_in("globex", "dana", PASSWORD),
    ]
    assert {a.status_code for a in answers} == {401}
    assert len({a.json()["error"]["message"] for a in answers}) == 1
    failed = [a for a in await gw.audit() if a["action"] == "auth.failed"]
    assert failed
    assert failed[0]["details"]["user"] == "acme/dana"


async def test_both_a_key_and_a_password_is_refused(gw: Gw) -> None:
    await add(gw, "dana")
    both = await gw.client.post(
        "/v1/auth/token",
        json={"tenant_id": "acme", "user_id": "dana", "password": PASSWORD},
        headers=auth(gw.keys.alice),
    )
    assert both.status_code == 422
    assert "not both" in both.json()["error"]["message"]


async def test_repeated_failures_lock_the_member_even_for_the_right_password(gw: Gw) -> None:
    await add(gw, "dana")
    for _ in range(LOCK_AFTER_FAILURES):
        assert (await gw.sign_in("acme", "dana", "wrong wrong wrong")).status_code == 401
    locked = await gw.sign_in("acme", "dana", PASSWORD)
    assert locked.status_code == 429
    assert float(locked.headers["retry-after"]) > 0
    assert "too many failed sign-ins" in locked.json()["error"]["message"]
    # Another member is not locked by it.
    await add(gw, "erin")
    assert (await gw.sign_in("acme", "erin", PASSWORD)).status_code == 200


async def test_the_lock_ends_after_its_window(tmp_path: Path) -> None:
    now = [0.0]
    members = MemberStore(FileStateStore(tmp_path), monotonic=lambda: now[0])
    await members.add("acme", "dana", password=PASSWORD)
    for _ in range(LOCK_AFTER_FAILURES):
        with pytest.raises(Exception, match="not right"):
            await members.sign_in("acme", "dana", "wrong wrong wrong")
    with pytest.raises(Exception, match="too many failed sign-ins"):
        await members.sign_in("acme", "dana", PASSWORD)
    now[0] += LOCK_WINDOW_SECS
    assert (await members.sign_in("acme", "dana", PASSWORD)).user_id == "dana"


async def test_a_new_role_refuses_the_old_token_and_the_refresh_carries_it(gw: Gw) -> None:
    await add(gw, "dana", role="viewer")
    pair = (await gw.sign_in("acme", "dana", PASSWORD)).json()
    bearer = auth(pair["access_token"])
    assert (await gw.client.post("/v1/sessions", json={}, headers=bearer)).status_code == 403

    changed = await gw.client.patch(
        "/v1/members/dana", json={"role": "user"}, headers=auth(gw.keys.acme_admin)
    )
    assert changed.status_code == 200, changed.text
    stale = await gw.client.get("/v1/sessions", headers=bearer)
    assert stale.status_code == 401
    assert "role has changed" in stale.json()["error"]["message"]

    renewed = await gw.client.post(
        "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert renewed.status_code == 200, renewed.text
    fresh = auth(renewed.json()["access_token"])
    assert (await gw.client.post("/v1/sessions", json={}, headers=fresh)).status_code == 201
    change = next(a for a in await gw.audit() if a["action"] == "member.changed")
    assert change["details"]["role"] == {"from": "viewer", "to": "user"}


async def test_a_removed_member_loses_tokens_refresh_and_keys(gw: Gw) -> None:
    await add(gw, "dana")
    pair = (await gw.sign_in("acme", "dana", PASSWORD)).json()
    made = await gw.client.post(
        "/v1/keys", json={"user_id": "dana"}, headers=auth(gw.keys.acme_admin)
    )
    key = made.json()["key"]
    assert (await gw.client.get("/v1/sessions", headers=auth(key))).status_code == 200

    removed = await gw.client.delete("/v1/members/dana", headers=auth(gw.keys.acme_admin))
    assert removed.status_code == 200, removed.text
    assert removed.json()["keys_revoked"] == [made.json()["key_id"]]

    for credential in (pair["access_token"], key):
        assert (await gw.client.get("/v1/sessions", headers=auth(credential))).status_code == 401
    refused = await gw.client.post(
        "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refused.status_code == 401
    assert "no longer a member" in refused.json()["error"]["message"]
    assert (await gw.sign_in("acme", "dana", PASSWORD)).status_code == 401


async def test_members_are_the_tenant_admins_business_and_stay_in_their_tenant(gw: Gw) -> None:
    await add(gw, "dana")
    for key in (gw.keys.alice,):
        refused = await gw.client.get("/v1/members", headers=auth(key))
        assert refused.status_code == 403
        assert refused.json()["error"]["details"]["scope"] == "members:admin"
    globex = await make_globex_admin(gw)
    assert (await gw.client.get("/v1/members", headers=auth(globex))).json()["items"] == []
    assert (await gw.client.get("/v1/members/dana", headers=auth(globex))).status_code == 404
    patched = await gw.client.patch(
        "/v1/members/dana", json={"role": "admin"}, headers=auth(globex)
    )
    assert patched.status_code == 404
    assert (await gw.client.delete("/v1/members/dana", headers=auth(globex))).status_code == 404
    still = await gw.client.get("/v1/members/dana", headers=auth(gw.keys.acme_admin))
    assert still.json()["role"] == "user"


async def make_globex_admin(gw: Gw) -> str:
    from promptline.security.auth import KeyStore

    _, key = await KeyStore(gw.app.state, clock=gw.app.clock).create(
        "root", tenant_id="globex", role="admin"
    )
    return key


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "x", "password": "short"}, "password"),
        ({"user_id": "../../etc", "password": PASSWORD}, "user_id"),
        ({"user_id": "x\u0000y", "password": PASSWORD}, "user_id"),
        ({"user_id": "x", "role": "root"}, "role"),
        ({"user_id": "x", "password": "a" * 2000}, "password"),
    ],
)
async def test_bad_members_are_refused_clearly(gw: Gw, body: dict[str, Any], field: str) -> None:
    refused = await gw.client.post("/v1/members", json=body, headers=auth(gw.keys.acme_admin))
    assert refused.status_code == 422, refused.text
    assert field in refused.text
    listed = await gw.client.get("/v1/members", headers=auth(gw.keys.acme_admin))
    assert listed.json()["items"] == []


async def test_adding_a_member_twice_is_a_conflict(gw: Gw) -> None:
    await add(gw, "dana")
    again = await gw.client.post(
        "/v1/members", json={"user_id": "dana"}, headers=auth(gw.keys.acme_admin)
    )
    assert again.status_code == 409


def test_a_password_hash_checks_the_password_and_nothing_else() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$")
    assert password_matches(PASSWORD, stored)
    assert not password_matches(PASSWORD + " ", stored)
    assert not password_matches(PASSWORD, None)
    assert not password_matches(PASSWORD, "scrypt$1$2$3$bad$bad")
    assert hash_password(PASSWORD) != stored  # a new salt each time


def test_the_cli_adds_lists_changes_and_removes_members(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"PROMPTLINE_HOME": str(home)}
    runner = CliRunner()
    settings_for(home)  # a home with a config
    added = runner.invoke(
        cli,
        ["members", "add", "-t", "acme", "-u", "dana", "--role", "operator", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
    )
    assert added.exit_code == 0, added.output
    assert "dana is a member of acme (operator), with a password" in added.output
    listed = runner.invoke(cli, ["members", "list", "-t", "acme", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert '"role": "operator"' in listed.output
    assert PASSWORD not in listed.output
    changed = runner.invoke(
        cli, ["members", "set", "-t", "acme", "-u", "dana", "--role", "viewer"], env=env
    )
    assert changed.exit_code == 0, changed.output
    assert "dana of acme: viewer, password yes" in changed.output
    nothing = runner.invoke(cli, ["members", "set", "-t", "acme", "-u", "dana"], env=env)
    assert nothing.exit_code != 0
    assert "nothing to change" in nothing.output
    removed = runner.invoke(cli, ["members", "remove", "-t", "acme", "-u", "dana"], env=env)
    assert removed.exit_code == 0, removed.output
    assert "dana is no longer a member of acme" in removed.output
    unknown = runner.invoke(cli, ["members", "remove", "-t", "acme", "-u", "dana"], env=env)
    assert unknown.exit_code != 0
    assert "is not a member of 'acme'" in unknown.output


def test_the_docs_commands_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptline.cli import members_cmd

    text = (Path(__file__).parents[2] / "docs" / "auth.md").read_text(encoding="utf-8")
    section = text.split("## Members and passwords", 1)[1]
    prose = " ".join(section.split("## ", 1)[0].split())
    assert f"A password has at least {MIN_PASSWORD_CHARS} characters" in prose
    minutes = f"{LOCK_WINDOW_SECS / 60:g} minutes"
    assert f"After {LOCK_AFTER_FAILURES} failed sign-ins of one member within {minutes}" in prose
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    home = tmp_path / "home"
    settings_for(home)
    monkeypatch.setattr(members_cmd, "_interactive", lambda: True)  # as at a terminal
    runner = CliRunner()
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert len(lines) == 7
    for line in lines:
        piped = line.startswith('echo "$PASSWORD" | ')
        words = shlex.split(line.removeprefix('echo "$PASSWORD" | '))
        assert words[0] == "promptline"
        given = PASSWORD + "\n" if piped else f"{PASSWORD}\n{PASSWORD}\n"
        done = runner.invoke(cli, words[1:], input=given, env={"PROMPTLINE_HOME": str(home)})
        assert done.exit_code == 0, (line, done.output)
