"""Tenant isolation on the control plane: a caller of globex (a user, and the tenant's admin,
with an API key or an access token) walks every method of `METHODS` with acme's ids in every
id-shaped param. It gets nothing of acme back: "not found", exactly as for an id that does
not exist, or an answer about globex alone; nothing it does changes acme's data; and it
never receives an event of acme's streams."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import auth
from ws_support import Rpc, Served, ends, rpc, served, ws_settings

from promptline.gateway.ws.methods import METHODS
from promptline.security.auth import KeyStore

NOT_FOUND = -32004
INTERNAL = -32603
SECRET = "ACME-SECRET-PLAN"
STATE_SECRET = "ACME-STATE-SECRET"


@dataclass(frozen=True)
class Case:
    """A call of a method by the outsider. ``params`` may hold ``{session}``, ``{run}``,
    ``{request}`` and ``{subscription}``: acme's ids, or ids of the same shape that name
    nothing. ``found``: False when the call must be "not found", exactly as for ids that do
    not exist; True when it must succeed with an answer of the caller's own; None when
    either may be (what globex holds itself), as long as nothing of acme comes back."""

    params: dict[str, Any] | None
    found: bool | None = False


CASES: dict[str, list[Case]] = {
    "session.create": [
        Case({}, found=True),
        Case({"metadata": {"about": "{session}"}, "context": {"run": "{run}"}}, found=True),
    ],
    "session.send": [
        Case({"session_id": "{session}", "content": "what was said?"}),
        Case({"session_id": "{session}", "content": "hi", "client_msg_id": "acme-msg-1"}),
        Case({"session_id": "{waiting_session}", "content": "hi", "queue_mode": "interrupt"}),
    ],
    "run.cancel": [Case({"run_id": "{run}"}), Case({"run_id": "{done_run}"})],
    "run.pause": [Case({"run_id": "{run}"}), Case({"run_id": "{done_run}"})],
    "run.resume": [Case({"run_id": "{run}"}), Case({"run_id": "{done_run}"})],
    "permission.respond": [
        Case({"request_id": "{request}", "approve": True}),
        Case({"request_id": "{request}", "approve": False, "scope": "always"}),
    ],
    "events.subscribe": [
        Case({"session_id": "{session}"}),
        Case({"session_id": "{session}", "from_seq": 0}),
        Case({"session_id": "{waiting_session}", "from_seq": 0}),
    ],
    "events.unsubscribe": [Case({"subscription": "{subscription}"})],
    "state.get": [
        Case({"scope": "session", "key": "plan", "session_id": "{session}"}),
        Case({"scope": "session", "key": "plan", "session_id": "{waiting_session}"}),
        # globex's own global key, once another globex caller wrote it.
        Case({"scope": "global", "key": "plan"}, found=None),
        Case({"scope": "local", "key": "plan"}),
    ],
    "state.set": [
        Case({"scope": "session", "key": "plan", "value": 2, "session_id": "{session}"}),
        Case({"scope": "global", "key": "plan", "value": "globex's own"}, found=True),
        Case({"scope": "local", "key": "plan", "value": "globex's own"}, found=True),
    ],
    "tools.list": [Case(None, found=True)],
    "models.list": [Case(None, found=True)],
    "ping": [Case(None, found=True)],
}
"""Every method, and how the outsider calls it: a new method needs its cases here."""


@dataclass
class Acme:
    """What acme holds: ids of alice's data, and the texts that are hers alone."""

    ids: dict[str, str]
    texts: list[str] = field(default_factory=list)

    def unknown(self) -> dict[str, str]:
        """Ids of the same shape that name nothing (the last character changed)."""
        return {name: _other_id(value) for name, value in self.ids.items()}

    def secrets(self) -> list[str]:
        return [*self.ids.values(), *self.texts]


def _other_id(value: str) -> str:
    last = "Z" if value[-1] != "Z" else "Y"
    return value[:-1] + last


def _fill(params: Any, ids: dict[str, str]) -> Any:
    if isinstance(params, dict):
        return {key: _fill(value, ids) for key, value in params.items()}
    if isinstance(params, str):
        for name, value in ids.items():
            params = params.replace("{" + name + "}", value)
    return params


def _masked(answer: dict[str, Any], ids: dict[str, str]) -> str:
    """The answer (without its JSON-RPC id) with ``ids`` written as their names."""
    text = json.dumps({k: v for k, v in answer.items() if k != "id"}, sort_keys=True)
    for name, value in sorted(ids.items(), key=lambda item: -len(item[1])):
        text = text.replace(value, "{" + name + "}")
    return text


def test_every_method_has_its_cases() -> None:
    assert set(CASES) == set(METHODS)
    assert all(CASES.values())


async def _acme(gw: Served, alice: Rpc) -> Acme:
    """Alice's session with a finished exchange and state of every scope, and another with
    a run waiting for her approval; alice stays subscribed to both."""
    session_id = (await alice.call("session.create", {"metadata": {"note": SECRET}}))["id"]
    subscription = (await alice.call("events.subscribe", {"session_id": session_id}))[
        "subscription"
    ]
    done = await alice.call("session.send", {"session_id": session_id, "content": SECRET})
    await alice.events_until(ends(done["run_id"]))
    for scope, extra in (("session", {"session_id": session_id}), ("global", {}), ("local", {})):
        await alice.call(
            "state.set", {"scope": scope, "key": "plan", "value": STATE_SECRET, **extra}
        )
    # The scripted writer asks at its first turn: a session of its own.
    waiting_id = (await alice.call("session.create"))["id"]
    await alice.call("events.subscribe", {"session_id": waiting_id})
    waiting = await alice.call(
        "session.send",
        {
            "session_id": waiting_id,
            "content": f"write it {SECRET}",
            "model": "scripted/writer",
            "client_msg_id": "acme-msg-1",
        },
    )
    asked = await alice.events_until(lambda e: e["type"] == "permission_request")
    ids = {
        "session": session_id,
        "waiting_session": waiting_id,
        "run": waiting["run_id"],
        "done_run": done["run_id"],
        "request": asked[-1]["data"]["request_id"],
        "subscription": subscription,
    }
    return Acme(ids=ids, texts=[SECRET, STATE_SECRET, "alice", "acme"])


async def _token(gw: Served, key: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.info.port}") as client:
        response = await client.post("/v1/auth/token", headers=auth(key))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def _walk(outsider: Rpc, acme: Acme) -> list[str]:
    """Every case of every method, as ``outsider``; what went wrong, if anything."""
    wrong = []
    unknown = acme.unknown()
    for method, cases in CASES.items():
        for case in cases:
            params = _fill(case.params, acme.ids)
            answer = await outsider.request(method, params)
            where = f"{method} {case.params}"
            seen = json.dumps(answer)
            # What the caller sent may come back (its own new session's metadata), no more.
            leaked = [text for text in acme.secrets() if text in seen and text not in str(params)]
            if "error" in answer and answer["error"]["code"] == INTERNAL:
                wrong.append(f"{where}: internal error {answer['error']}")
            if case.found is not False:
                if case.found and "error" in answer:
                    wrong.append(f"{where}: refused {answer['error']}")
                if leaked:
                    wrong.append(f"{where}: answers {leaked} of acme: {seen}")
                continue
            if "error" not in answer or answer["error"]["code"] != NOT_FOUND:
                wrong.append(f"{where}: not a not-found answer: {seen}")
                continue
            # Only the ids the caller sent may come back, as they would for unknown ids.
            if any(text in seen for text in acme.texts):
                wrong.append(f"{where}: answers acme's data: {seen}")
            nothing = await outsider.request(method, _fill(case.params, unknown))
            if _masked(answer, acme.ids) != _masked(nothing, unknown):
                wrong.append(f"{where}: told apart from unknown ids: {seen} vs {nothing}")
    return wrong


@pytest.mark.parametrize("as_token", [False, True], ids=["api-key", "access-token"])
async def test_globex_walks_every_method_with_acmes_ids_and_gets_nothing_of_acme(
    tmp_path: Path, as_token: bool
) -> None:
    async with (
        served(ws_settings(tmp_path / "home")) as gw,
        rpc(gw.url, gw.keys.alice) as alice,
    ):
        acme = await _acme(gw, alice)
        _, globex_admin = await KeyStore(gw.app.state, clock=gw.app.clock).create(
            "root", tenant_id="globex", role="admin"
        )
        outsiders = {"user": gw.keys.carol, "admin": globex_admin}
        if as_token:
            outsiders = {who: await _token(gw, key) for who, key in outsiders.items()}

        wrong: dict[str, list[str]] = {}
        heard: dict[str, list[dict[str, Any]]] = {}
        for who, credential in outsiders.items():
            async with rpc(gw.url, credential) as outsider:
                wrong[who] = await _walk(outsider, acme)
                # Acme's streams go on (alice talks, then approves): their events reach
                # alice, none the outsider, whatever it tried to subscribe to.
                if who == "user":
                    again = await alice.call(
                        "session.send", {"session_id": acme.ids["session"], "content": SECRET}
                    )
                    await alice.events_until(ends(again["run_id"]))
                else:
                    approved = await alice.call(
                        "permission.respond", {"request_id": acme.ids["request"], "approve": True}
                    )
                    assert approved["approved"] is True
                    await alice.events_until(ends(acme.ids["run"]))
                assert await outsider.call("ping") == "pong"
                heard[who] = list(outsider.events)

        # Acme's data is as alice left it.
        state = {
            scope: (await alice.call("state.get", {"scope": scope, "key": "plan", **extra}))[
                "value"
            ]
            for scope, extra in (
                ("session", {"session_id": acme.ids["session"]}),
                ("global", {}),
                ("local", {}),
            )
        }
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.info.port}") as client:
            seen = await client.get(
                f"/v1/sessions/{acme.ids['session']}?history_limit=50", headers=auth(gw.keys.alice)
            )
        history = seen.json()["history"]

    assert wrong == {"user": [], "admin": []}
    assert heard == {"user": [], "admin": []}
    assert state == dict.fromkeys(("session", "global", "local"), STATE_SECRET)
    said = [json.dumps(m["content"]) for m in history if m["role"] == "user"]
    assert len(said) == 2  # alice's own two messages
    assert all(SECRET in text for text in said)
