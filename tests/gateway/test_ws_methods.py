"""Every control-plane method on a real server: sessions, messages, run controls, approvals,
subscriptions, state, the catalogue and ping; and what another tenant's (or another user's)
caller gets for ids that are not theirs: "not found", exactly as for ids that do not exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ws_support import Rpc, Served, alice_on, ends, rpc, served, wait_until, ws_settings

from promptline.events import EventFilter
from promptline.events.bus import InProcessEventBus

NOT_FOUND = -32004


async def _session(client: Rpc) -> str:
    return str((await client.call("session.create"))["id"])


async def _waiting_for_approval(client: Rpc, session_id: str) -> tuple[str, str]:
    """Start a run that asks to write a file; its id and its permission request's id."""
    await client.call("events.subscribe", {"session_id": session_id})
    started = await client.call(
        "session.send",
        {"session_id": session_id, "content": "write it", "model": "scripted/writer"},
    )
    asked = await client.events_until(lambda e: e["type"] == "permission_request")
    return started["run_id"], asked[-1]["data"]["request_id"]


async def test_session_create_records_the_caller_and_what_it_was_given(tmp_path: Path) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        session = await client.call(
            "session.create",
            {
                "agent": "assistant",
                "context": {"topic": "tests"},
                "metadata": {"ticket": 7},
                "ttl_secs": 3600,
            },
        )
        plain = await client.call("session.create", {})
        unknown_agent = await client.error("session.create", {"agent": "nobody"})

    assert session["id"].startswith("ses_")
    assert (session["tenant_id"], session["user_id"]) == ("acme", "alice")
    assert session["channel"] == "websocket"
    assert session["context"] == {"topic": "tests"}
    assert session["metadata"] == {"ticket": 7, "agent": "assistant"}
    assert session["expires_at"] is not None
    assert plain["metadata"] == {}
    assert unknown_agent["code"] == -32602  # as REST: 422, a value the caller got wrong
    assert unknown_agent["data"]["details"]["field"] == "agent"


async def test_session_create_gives_a_sandbox_only_for_a_caller_with_the_scope(
    tmp_path: Path,
) -> None:
    async with served(ws_settings(tmp_path / "home")) as gw:
        async with rpc(gw.url, gw.keys.alice) as client:
            refused = await client.error("session.create", {"sandbox": "docker"})
        async with rpc(gw.url, gw.keys.acme_admin) as client:
            made = await client.call("session.create", {"sandbox": "docker"})

    assert refused["data"]["code"] == "permission_denied"
    assert refused["data"]["details"]["scope"] == "sessions:sandbox"
    assert made["sandbox"] == "docker"


async def test_session_send_starts_a_run_that_answers_in_the_session(tmp_path: Path) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        session_id = await _session(client)
        await client.call("events.subscribe", {"session_id": session_id})
        started = await client.call(
            "session.send", {"session_id": session_id, "content": "hello there"}
        )
        seen = await client.events_until(ends(started["run_id"]))
        empty = await client.error("session.send", {"session_id": session_id, "content": ""})

    assert started == {
        "run_id": started["run_id"],
        "session_id": session_id,
        "status": "started",
        "position": 0,
    }
    assert seen[-1]["type"] == "run_completed"
    assert "offline demo model" in seen[-1]["data"]["output"]["content"][0]["text"]
    assert "llm_delta" in {e["type"] for e in seen}  # the agent streams
    assert empty["code"] == -32602


async def test_session_send_answers_once_the_message_and_its_run_are_in_the_log(
    tmp_path: Path,
) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (gw, client):
        session_id = await _session(client)
        await client.call("events.subscribe", {"session_id": session_id})
        started = await client.call("session.send", {"session_id": session_id, "content": "hi"})
        # Read the log the moment the answer is in: nothing may still be on its way there.
        logged = await gw.app.events.read_stream(session_id)
        seen = await client.events_until(ends(started["run_id"]))

    mine = [e for e in logged if e.run_id == started["run_id"]]
    assert [e.type for e in mine[:2]] == ["message_received", "run_queued"]
    # The live feed: the answer's deltas (transient, seq 0) between its command and result.
    kinds = [e["type"] for e in seen]
    first, last = kinds.index("llm_delta"), len(kinds) - kinds[::-1].index("llm_delta") - 1
    assert kinds.index("llm_command") < first
    assert last < kinds.index("llm_result")
    assert {e["seq"] for e in seen if e["type"] == "llm_delta"} == {0}
    assert (
        "".join(e["data"]["text"] for e in seen if e["type"] == "llm_delta")
        == next(e for e in seen if e["type"] == "llm_result")["data"]["message"]["content"][0][
            "text"
        ]
    )


async def test_run_pause_resume_and_cancel_control_a_run_in_flight(tmp_path: Path) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        session_id = await _session(client)
        run_id, _ = await _waiting_for_approval(client, session_id)

        paused = await client.call("run.pause", {"run_id": run_id})
        resumed = await client.call("run.resume", {"run_id": run_id})
        cancelled = await client.call("run.cancel", {"run_id": run_id})
        seen = await client.events_until(ends(run_id))
        again = await client.error("run.cancel", {"run_id": run_id})
        unknown = await client.error("run.cancel", {"run_id": "run_nope"})

    assert paused == {"run_id": run_id, "status": "paused"}
    assert resumed == {"run_id": run_id, "status": "running"}
    assert cancelled == {"run_id": run_id, "status": "cancelled"}
    assert seen[-1]["type"] == "run_cancelled"
    assert again["code"] == -32009  # it has ended: nothing to control
    assert again["data"]["details"]["status"] == "cancelled"
    assert unknown["code"] == NOT_FOUND


async def test_permission_respond_answers_the_request_and_the_run_goes_on(tmp_path: Path) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (gw, client):
        session_id = await _session(client)
        run_id, request_id = await _waiting_for_approval(client, session_id)

        outcome = await client.call(
            "permission.respond",
            {"request_id": request_id, "approve": True, "reason": "fine"},
        )
        seen = await client.events_until(ends(run_id))
        twice = await client.error(
            "permission.respond", {"request_id": request_id, "approve": False}
        )
        audit = await gw.app.events.read_all(EventFilter(types=frozenset({"audit"})))

    assert outcome["request_id"] == request_id
    assert outcome["approved"] is True
    assert outcome["status"] == "granted"
    assert outcome["scope"] == "once"
    assert outcome["decided_by"] == "alice"
    assert outcome["tool"] == "file_write"
    assert "permission_granted" in [e["type"] for e in seen]
    assert seen[-1]["type"] == "run_completed"
    assert (tmp_path / "home" / "workspace" / "n.txt").read_text() == "x"
    assert twice["code"] == -32009  # an answer cannot be changed
    assert twice["data"]["details"]["status"] == "granted"
    # The audit trail adds the connection's key and address to the answer.
    [answered] = [e.data for e in audit if e.data.action == "approval.granted"]
    assert (answered.actor, answered.target, answered.source) == ("alice", request_id, "127.0.0.1")
    assert answered.key_id is not None


async def test_events_subscribe_several_streams_unsubscribe_and_all_end_with_the_socket(
    tmp_path: Path,
) -> None:
    async with served(ws_settings(tmp_path / "home")) as gw:
        bus = gw.app.bus
        assert isinstance(bus, InProcessEventBus)
        before = bus.subscriber_count
        async with rpc(gw.url, gw.keys.alice) as client:
            first, second = await _session(client), await _session(client)
            sub_a = await client.call("events.subscribe", {"session_id": first, "from_seq": 0})
            sub_b = await client.call("events.subscribe", {"session_id": second, "from_seq": 0})
            sub_c = await client.call("events.subscribe", {"session_id": first})
            got = [await client.next_event(), await client.next_event()]
            assert bus.subscriber_count == before + 3

            gone = await client.call("events.unsubscribe", {"subscription": sub_a["subscription"]})
            unknown = await client.error("events.unsubscribe", {"subscription": "sub_999"})
            await wait_until(lambda: bus.subscriber_count == before + 2, "unsubscribed")
            started = await client.call("session.send", {"session_id": first, "content": "hello"})
            live = []
            while not live or not ends(started["run_id"])(live[-1]["event"]):
                live.append(await client.next_event())
        await wait_until(lambda: bus.subscriber_count == before, "every subscription ended")

    ids = {sub_a["subscription"], sub_b["subscription"], sub_c["subscription"]}
    assert len(ids) == 3
    assert sorted((g["subscription"], g["event"]["type"]) for g in got) == sorted(
        [(sub_a["subscription"], "session_created"), (sub_b["subscription"], "session_created")]
    )
    assert gone == {"subscription": sub_a["subscription"], "session_id": first}
    assert unknown["code"] == NOT_FOUND
    # Only the live subscription (from now on) of the first session is left.
    assert {n["subscription"] for n in live} == {sub_c["subscription"]}
    stored = [n["event"]["seq"] for n in live if n["event"]["seq"]]  # deltas: seq 0
    assert stored == list(range(2, 2 + len(stored)))


async def test_state_get_and_set_in_every_scope(tmp_path: Path) -> None:
    async with (
        served(ws_settings(tmp_path / "home")) as gw,
        rpc(gw.url, gw.keys.alice) as alice,
        rpc(gw.url, gw.keys.bob) as bob,
        rpc(gw.url, gw.keys.carol) as carol,
    ):
        session_id = await _session(alice)
        shared = await alice.call(
            "state.set", {"scope": "global", "key": "plan", "value": {"v": 1}}
        )
        seen_by_bob = await bob.call("state.get", {"scope": "global", "key": "plan"})
        not_globex = await carol.error("state.get", {"scope": "global", "key": "plan"})

        mine = await alice.call("state.set", {"scope": "local", "key": "k", "value": [1]})
        not_bobs = await bob.error("state.get", {"scope": "local", "key": "k"})

        on_session = await alice.call(
            "state.set",
            {"scope": "session", "key": "draft", "value": "text", "session_id": session_id},
        )
        read_back = await alice.call(
            "state.get", {"scope": "session", "key": "draft", "session_id": session_id}
        )
        cas = await alice.call(
            "state.set",
            {
                "scope": "session",
                "key": "draft",
                "value": "more",
                "session_id": session_id,
                "expected_version": 1,
            },
        )
        lost_race = await alice.error(
            "state.set",
            {
                "scope": "session",
                "key": "draft",
                "value": "late",
                "session_id": session_id,
                "expected_version": 1,
            },
        )
        no_session = await alice.error("state.get", {"scope": "session", "key": "draft"})
        stray_session = await alice.error(
            "state.get", {"scope": "local", "key": "k", "session_id": session_id}
        )
        bad_scope = await alice.error("state.get", {"scope": "tenant", "key": "k"})

    assert shared["value"] == {"v": 1}
    assert shared["version"] == 1
    assert seen_by_bob["value"] == {"v": 1}
    assert not_globex["code"] == NOT_FOUND
    assert mine == {**mine, "scope": "local", "key": "k", "value": [1], "session_id": None}
    assert not_bobs["code"] == NOT_FOUND
    assert on_session["session_id"] == session_id
    assert read_back["value"] == "text"
    assert cas["version"] == 2
    assert cas["value"] == "more"
    assert lost_race["code"] == -32009
    assert lost_race["data"]["code"] == "conflict"
    assert no_session["code"] == stray_session["code"] == bad_scope["code"] == -32602
    # The tenant's global state is kept under its own prefix in the store.
    stored = await gw.app.state.get("global", "tenants/acme/plan")
    assert stored is not None
    assert stored.value == {"v": 1}


async def test_tools_list_models_list_and_ping(tmp_path: Path) -> None:
    async with alice_on(ws_settings(tmp_path / "home")) as (_, client):
        tools = await client.call("tools.list")
        models = await client.call("models.list", {})
        pong = await client.call("ping")

    by_name = {tool["name"]: tool for tool in tools["items"]}
    assert by_name["file_write"]["permission"] == "ask"
    assert by_name["file_read"]["read_only"] is True
    assert "scripted/demo" in {model["id"] for model in models["items"]}
    assert pong == "pong"


async def _alices_run(gw: Served, client: Rpc) -> dict[str, Any]:
    session_id = await _session(client)
    run_id, request_id = await _waiting_for_approval(client, session_id)
    await client.call(
        "state.set",
        {"scope": "session", "key": "k", "value": 1, "session_id": session_id},
    )
    return {"session_id": session_id, "run_id": run_id, "request_id": request_id}


@pytest.mark.parametrize("intruder", ["carol", "bob"])
async def test_another_callers_ids_are_not_found_for_every_method(
    tmp_path: Path, intruder: str
) -> None:
    """carol is of another tenant; bob is another user of alice's tenant (not an admin)."""
    async with (
        served(ws_settings(tmp_path / "home")) as gw,
        rpc(gw.url, gw.keys.alice) as alice,
        rpc(gw.url, getattr(gw.keys, intruder)) as other,
    ):
        ids = await _alices_run(gw, alice)
        sid = ids["session_id"]
        refused = {
            "session.send": await other.error("session.send", {"session_id": sid, "content": "hi"}),
            "events.subscribe": await other.error(
                "events.subscribe", {"session_id": sid, "from_seq": 0}
            ),
            "state.get": await other.error(
                "state.get", {"scope": "session", "key": "k", "session_id": sid}
            ),
            "state.set": await other.error(
                "state.set", {"scope": "session", "key": "k", "value": 2, "session_id": sid}
            ),
            "run.cancel": await other.error("run.cancel", {"run_id": ids["run_id"]}),
            "run.pause": await other.error("run.pause", {"run_id": ids["run_id"]}),
            "permission.respond": await other.error(
                "permission.respond", {"request_id": ids["request_id"], "approve": True}
            ),
        }
        unknown_session = await other.error(
            "session.send", {"session_id": "ses_01M8HYWW54JAZRJDERAV4CKJF5", "content": "x"}
        )
        admin_sees = None
        if intruder == "bob":
            async with rpc(gw.url, gw.keys.acme_admin) as admin:
                admin_sees = await admin.call(
                    "state.get", {"scope": "session", "key": "k", "session_id": sid}
                )
        still_alices = await alice.call(
            "state.get", {"scope": "session", "key": "k", "session_id": sid}
        )
        await alice.call("run.cancel", {"run_id": ids["run_id"]})

    for method, error in refused.items():
        assert error["code"] == NOT_FOUND, method
        assert error["data"]["code"] == "not_found", method
    # The same answer as for an id that does not exist at all.
    assert refused["session.send"]["data"]["code"] == unknown_session["data"]["code"]
    assert still_alices["value"] == 1
    if admin_sees is not None:  # a tenant's admin does see it
        assert admin_sees["value"] == 1
