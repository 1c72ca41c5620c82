"""The permission gate in the tool executor: every outcome a call can get (allow, deny, ask
answered once / for the session / always, refused, unanswered, answered after a restart),
grants, alerts, and changes that apply to the next call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from security_support import STUCK, TOOLS, next_event, next_request, scope, settings

from promptline.config import Settings
from promptline.core.clock import ManualClock
from promptline.core.events import SecurityAlertEvent
from promptline.core.messages import ToolCall, ToolResult
from promptline.events.bus import InProcessEventBus
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter, EventStore
from promptline.security import PermissionManager, build_permissions
from promptline.state.sql import SqlStateStore
from promptline.storage.database import create_engine
from promptline.tools.executor import CallScope, ToolExecutor
from promptline.tools.registry import ToolRegistry

ManagerFactory = Callable[[Settings], PermissionManager]

SEED = {
    "tools": {
        "file_read": "allow",
        "file_write": "ask",
        "file_delete": "deny",
        "shell_execute": {
            "mode": "allow",
            "when": {"command": ["git status", "ls *"]},
            "otherwise": "ask",
        },
        "git_*": "ask",
    },
    "security": {"require_approval": True},
    "permissions": {"approval_timeout_secs": 60},
}


class Harness:
    """An executor whose gate is a `PermissionManager`, as the runtime wires it."""

    def __init__(self, manager: PermissionManager, bus: InProcessEventBus) -> None:
        self.manager = manager
        self.executor = ToolExecutor(ToolRegistry(TOOLS), bus, gate=manager)
        self.requests = bus.subscribe(EventFilter(types=frozenset({"permission_request"})))

    async def call(self, name: str, where: CallScope | None = None, **arguments: Any) -> ToolResult:
        return await self.executor.execute(
            ToolCall(name=name, arguments=arguments), where or scope()
        )

    def start(
        self, name: str, where: CallScope | None = None, **arguments: Any
    ) -> asyncio.Task[ToolResult]:
        return asyncio.create_task(self.call(name, where, **arguments))

    async def answer(self, approve: bool = True, **kw: Any) -> str:
        """Answer the next request; returns its id."""
        request = await next_request(self.requests)
        await self.manager.respond(request.data.request_id, approve=approve, **kw)
        return request.data.request_id


@pytest.fixture
def harness(make_manager: ManagerFactory, bus: InProcessEventBus) -> Harness:
    return Harness(make_manager(settings(**SEED)), bus)


def outcome(result: ToolResult) -> str:
    return str(result.metadata["outcome"])


async def asked(store: EventStore) -> int:
    return await store.count(EventFilter(types=frozenset({"permission_request"})))


# -- policy answers -------------------------------------------------------------------------


async def test_allow_runs_the_tool_without_asking(harness: Harness, store: EventStore) -> None:
    result = await harness.call("file_read", path="a.txt")

    assert outcome(result) == "ok"
    assert result.text == "contents of a.txt"
    assert await asked(store) == 0


async def test_deny_refuses_and_tells_the_model_which_rule(
    harness: Harness, store: EventStore
) -> None:
    result = await harness.call("file_delete", path="a.txt")

    assert outcome(result) == "denied"
    assert result.is_error
    assert "the global rule 'file_delete' (tools.file_delete) denies it" in result.text
    assert await asked(store) == 0


async def test_a_denied_destructive_tool_raises_a_security_alert(
    harness: Harness, bus: InProcessEventBus
) -> None:
    alerts = bus.subscribe(EventFilter(types=frozenset({"security_alert"})))

    await harness.call("file_delete", path="a.txt")

    alert = await next_event(alerts)
    assert isinstance(alert, SecurityAlertEvent)
    assert alert.data.kind == "destructive_tool_denied"
    assert alert.data.details["tool"] == "file_delete"
    assert alert.data.details["level"] == "global"
    assert (alert.session_id, alert.user_id) == ("s1", "alice")


async def test_no_alert_when_the_audit_log_is_off(
    make_manager: ManagerFactory, bus: InProcessEventBus, store: EventStore
) -> None:
    h = Harness(make_manager(settings(**{**SEED, "security": {"audit_log": False}})), bus)

    await h.call("file_delete", path="a.txt")

    assert await store.count(EventFilter(types=frozenset({"security_alert"}))) == 0


async def test_an_argument_condition_allows_listed_commands_and_asks_for_others(
    harness: Harness,
) -> None:
    assert outcome(await harness.call("shell_execute", command="ls -la")) == "ok"

    task = harness.start("shell_execute", command="rm -rf /")
    request = await next_request(harness.requests)
    assert request.data.arguments == {"command": "rm -rf /"}
    assert "matches none of its patterns" in (request.data.reason or "")
    await harness.manager.respond(request.data.request_id, approve=False, decided_by="alice")

    assert outcome(await task) == "denied"


# -- ask --------------------------------------------------------------------------------------


async def test_ask_approved_once_runs_this_call_and_asks_again_next_time(
    harness: Harness, store: EventStore
) -> None:
    task = harness.start("file_write", path="a", text="hi")
    await harness.answer(decided_by="alice")
    assert outcome(await asyncio.wait_for(task, STUCK)) == "ok"

    again = harness.start("file_write", path="b", text="hi")
    await harness.answer(decided_by="alice")
    assert outcome(await again) == "ok"
    assert await asked(store) == 2


async def test_the_request_names_the_call_and_the_rule_that_asked(harness: Harness) -> None:
    task = harness.start("file_write", path="a", text="hi")

    request = await next_request(harness.requests)

    assert request.data.call_id is not None
    assert (
        request.data.reason == "the global rule 'file_write' (tools.file_write) asks for approval"
    )
    await harness.manager.respond(request.data.request_id, approve=True)
    assert (await task).call_id == request.data.call_id


async def test_ask_approved_for_the_session_stops_asking_in_that_session_only(
    harness: Harness, store: EventStore
) -> None:
    task = harness.start("git_commit", message="m")
    await harness.answer(scope="session", decided_by="alice")
    assert outcome(await task) == "ok"

    assert outcome(await harness.call("git_commit", message="again")) == "ok"
    assert await asked(store) == 1

    elsewhere = harness.start("git_commit", scope("s2"), message="m")
    await harness.answer(approve=False)
    assert outcome(await elsewhere) == "denied"
    assert await asked(store) == 2


async def test_ask_approved_always_stops_asking_that_user_in_every_session(
    harness: Harness, store: EventStore
) -> None:
    task = harness.start("file_write", path="a", text="x")
    await harness.answer(scope="always", decided_by="alice")
    await task

    assert outcome(await harness.call("file_write", scope("s7"), path="a", text="x")) == "ok"
    assert await asked(store) == 1

    other = harness.start("file_write", scope("s7", user="bob"), path="a", text="x")
    await harness.answer(approve=False)
    assert outcome(await other) == "denied"


async def test_ask_refused_tells_the_model_who_refused_and_why(harness: Harness) -> None:
    task = harness.start("file_write", path="a", text="x")
    await harness.answer(approve=False, decided_by="alice", reason="wrong folder")

    result = await task

    assert outcome(result) == "denied"
    assert "alice refused it: wrong folder" in result.text


async def test_ask_unanswered_in_time_is_refused(harness: Harness, clock: ManualClock) -> None:
    task = harness.start("file_write", path="a", text="x")
    await next_request(harness.requests)

    clock.advance(60)
    [expired] = await harness.manager.broker.expire_due()
    result = await task

    assert expired.decided_by == "timeout"
    assert outcome(result) == "denied"
    assert "nobody answered the permission request in time" in result.text


async def test_a_grant_never_lifts_a_deny(harness: Harness) -> None:
    task = harness.start("git_commit", message="m")
    await harness.answer(scope="always")
    await task

    harness.manager.policy.set_rule("global", None, "git_commit", "deny")

    assert outcome(await harness.call("git_commit", message="m")) == "denied"


async def test_the_sessions_own_rules_apply(harness: Harness) -> None:
    own = scope(rules={"file_write": "allow", "file_read": "deny"})

    assert outcome(await harness.call("file_write", own, path="a", text="x")) == "ok"
    assert outcome(await harness.call("file_read", own, path="a")) == "denied"


async def test_a_rule_changed_at_run_time_applies_to_the_next_call(harness: Harness) -> None:
    harness.manager.policy.set_rule("user", "alice", "file_write", "allow")
    assert outcome(await harness.call("file_write", path="a", text="x")) == "ok"

    harness.manager.policy.set_rule("session", "s1", "file_write", "deny")
    assert outcome(await harness.call("file_write", path="a", text="x")) == "denied"

    harness.manager.policy.remove_rule("session", "s1", "file_write")
    assert outcome(await harness.call("file_write", path="a", text="x")) == "ok"


async def test_reload_applies_new_rules_and_timeout(harness: Harness, clock: ManualClock) -> None:
    harness.manager.reload(
        settings(tools={"file_delete": "ask"}, permissions={"approval_timeout_secs": 5})
    )

    task = harness.start("file_delete", path="a")
    request = await next_request(harness.requests)
    assert request.data.expires_at is not None
    assert (request.data.expires_at - clock.now()).total_seconds() == 5
    assert request.data.destructive is True
    await harness.manager.respond(request.data.request_id, approve=True)
    assert outcome(await task) == "ok"


async def test_an_approval_that_cannot_be_asked_for_is_a_refusal(
    harness: Harness, store: EventStore
) -> None:
    await harness.manager.close()

    result = await harness.call("file_write", path="a", text="x")

    assert outcome(result) == "denied"
    assert "could not be asked for" in result.text
    assert await asked(store) == 0


# -- restarts ---------------------------------------------------------------------------------


class Process:
    """One run of the program over the shared database: log, bus, state and gate."""

    def __init__(self, url: str, clock: ManualClock) -> None:
        self.store = create_event_store(create_engine(url), owns_engine=True)
        self.state = SqlStateStore(create_engine(url), clock=clock, owns_engine=True)
        self.bus = InProcessEventBus(self.store)
        self.manager = build_permissions(settings(**SEED), self.bus, self.store, self.state, clock)
        self.harness = Harness(self.manager, self.bus)

    async def stop(self) -> None:
        await self.manager.close()
        await self.bus.close()
        await self.store.close()
        await self.state.close()


@pytest.fixture
async def processes(sqlite_url: str, clock: ManualClock) -> AsyncIterator[list[Process]]:
    made: list[Process] = []
    yield made
    for process in made:
        await process.stop()


async def test_a_request_answered_after_a_restart_is_recorded_and_its_grant_kept(
    sqlite_url: str, clock: ManualClock, processes: list[Process]
) -> None:
    first = Process(sqlite_url, clock)
    processes.append(first)
    task = first.harness.start("file_write", path="a", text="x")
    request = await next_request(first.harness.requests)
    # The process goes away mid-wait: the call never runs, the request stays pending.
    await first.manager.close()
    assert outcome(await task) == "denied"
    await first.stop()
    processes.remove(first)

    second = Process(sqlite_url, clock)
    processes.append(second)
    assert await second.manager.recover() == []
    [pending] = await second.manager.pending("s1")
    assert pending.request_id == request.data.request_id

    answered = await second.manager.respond(
        pending.request_id, approve=True, scope="always", decided_by="alice"
    )

    assert answered.approved
    assert await second.manager.pending() == []
    granted = await second.store.read_all(EventFilter(types=frozenset({"permission_granted"})))
    assert [e.causation_id for e in granted] == [request.id]
    assert outcome(await second.harness.call("file_write", path="a", text="x")) == "ok"


async def test_a_request_overdue_at_restart_is_recorded_as_expired(
    sqlite_url: str, clock: ManualClock, processes: list[Process]
) -> None:
    first = Process(sqlite_url, clock)
    processes.append(first)
    task = first.harness.start("file_write", path="a", text="x")
    request = await next_request(first.harness.requests)
    await first.manager.close()
    assert outcome(await task) == "denied"
    await first.stop()
    processes.remove(first)
    clock.advance(3600)

    second = Process(sqlite_url, clock)
    processes.append(second)
    [expired] = await second.manager.recover()

    assert (expired.request_id, expired.decided_by) == (request.data.request_id, "expired")
    assert await second.manager.pending() == []


async def test_patterns_cover_namespaced_mcp_tools(
    make_manager: ManagerFactory, bus: InProcessEventBus
) -> None:
    h = Harness(
        make_manager(settings(tools={"mcp.*": "deny", "mcp.github.*": "allow", "git_*": "allow"})),
        bus,
    )

    assert outcome(await h.call("mcp.github.create_issue", title="t")) == "ok"
    assert outcome(await h.call("git_commit", message="m")) == "ok"
    h.manager.policy.set_rule("agent", "coder", "mcp.*", {"mode": "deny", "final": True})
    denied = await h.call("mcp.github.create_issue", scope(agent="coder"), title="t")
    assert outcome(denied) == "denied"
    assert "agent rule 'mcp.*' for 'coder'" in denied.text
