"""Shared pieces of the runtime tests: a runtime built by hand, fake model callers that
answer from a function or block until released, and readers of the recorded events."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from promptline.core.errors import ProviderRequestRejected
from promptline.core.events import AgentLifecycleEvent, Event
from promptline.core.messages import Message, ToolCall, Usage
from promptline.events.bus import InProcessEventBus
from promptline.events.content import expand_prompts
from promptline.events.protocols import EventStore
from promptline.models.instrumented import ModelCaller
from promptline.models.scripted import Script, ScriptedProvider
from promptline.models.types import ModelRequest, ModelResponse, StreamDelta
from promptline.runtime import Agent, RunServices, Runtime
from promptline.sessions import Principal, SessionManager
from promptline.tools.base import Tool
from promptline.tools.executor import Authorization, CallScope, PermissionGate, ToolExecutor
from promptline.tools.function import FunctionTool, tool
from promptline.tools.registry import ToolRegistry

Answer = str | Message | ModelResponse
Reply = Callable[[ModelRequest], Answer | Awaitable[Answer]]


def scripted(turns: list[dict[str, Any]], *, name: str = "script") -> ScriptedProvider:
    """A scripted provider serving ``turns`` as the model ``name``."""
    return ScriptedProvider(scripts={name: Script.from_data(turns, name=name)})


def response(answer: Answer, request: ModelRequest, usage: Usage | None = None) -> ModelResponse:
    """``answer`` as the response a provider would give to ``request``."""
    if isinstance(answer, ModelResponse):
        return answer
    message = answer if isinstance(answer, Message) else Message(role="assistant", content=answer)
    return ModelResponse(
        message=message,
        model=request.model,
        provider="fake",
        finish_reason="tool_calls" if message.tool_calls else "stop",
        usage=usage or Usage(input_tokens=10, output_tokens=2),
        cost_usd=0.0,
    )


def calling(name: str, arguments: dict[str, Any] | None = None, *, call_id: str = "") -> Message:
    """An assistant message that calls tool ``name``."""
    call = ToolCall(name=name, arguments=arguments or {}, **({"id": call_id} if call_id else {}))
    return Message(role="assistant", content="", tool_calls=[call])


DEFAULT = Agent(name="assistant", model="script")
"""The agent of the runtimes built by `make_runtime`, unless a test names others."""


class HarnessFactory(Protocol):
    def __call__(
        self,
        models: ModelCaller,
        tools: Iterable[Tool] = (),
        *,
        agents: Iterable[Agent] = (DEFAULT,),
        runtime_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> Harness:
        """A runtime built by hand over ``models`` and ``tools``."""
        ...


class FakeModel:
    """A `ModelCaller` whose answer to each request is ``reply(request)`` (text, a message or
    a whole response, possibly awaited). Keeps every request it was sent.

    Like the real providers, it refuses a conversation in which an assistant's tool call is
    not answered by a tool message before the conversation goes on.
    """

    def __init__(self, reply: Reply | None = None) -> None:
        self.reply: Reply = reply or (lambda _: "ok")
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        check_tool_calls_answered(request)
        self.requests.append(request)
        answer = self.reply(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return response(answer, request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        answer = await self.complete(request)
        if answer.message.text:
            yield StreamDelta(text=answer.message.text)
        yield answer


def check_tool_calls_answered(request: ModelRequest) -> None:
    """`ProviderRequestRejected` (as OpenAI and Anthropic answer with a 400) when a tool call
    is not followed by its result before the next other message."""
    waiting: set[str] = set()
    for message in request.messages:
        if message.role == "tool":
            waiting.discard(message.tool_call_id or "")
            continue
        if waiting:
            raise ProviderRequestRejected(
                f"tool calls {sorted(waiting)} have no tool message answering them",
                provider="fake",
                model=request.model,
                status=400,
            )
        waiting = {call.id for call in message.tool_calls}


class BlockingModel(FakeModel):
    """Answers like `FakeModel`, but the calls numbered in ``blocking`` (1 is the first; all
    when None) signal ``entered`` and wait for ``release``. With ``swallow_cancel`` a
    blocked call ignores its first cancellation (a wedged call) and signals ``swallowed``."""

    def __init__(
        self,
        reply: Reply | None = None,
        *,
        blocking: Iterable[int] | None = None,
        swallow_cancel: bool = False,
    ) -> None:
        super().__init__(reply)
        self.blocking = None if blocking is None else set(blocking)
        self.calls = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.swallowed = asyncio.Event()
        self._swallow = swallow_cancel

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.blocking is None or self.calls in self.blocking:
            self.entered.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                if not self._swallow:
                    raise
                self._swallow = False
                self.swallowed.set()
                await self.release.wait()
                raise
        return await super().complete(request)


class Gate:
    """A read-only tool ``wait_here`` that waits inside its call until the test opens the
    gate (``open``); ``entered`` is set once it is called."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.calls = 0

        @tool(name="wait_here", read_only=True)
        async def wait_here() -> str:
            """Wait until the test lets go."""
            self.calls += 1
            self.entered.set()
            await self.open.wait()
            return "done"

        self.tool: FunctionTool = wait_here


class RecordingGate:
    """A `PermissionGate` that allows everything and keeps the scope of each call."""

    def __init__(self) -> None:
        self.scopes: list[CallScope] = []

    async def authorize(self, tool: Tool, call: ToolCall, scope: CallScope) -> Authorization:
        self.scopes.append(scope)
        return Authorization(allowed=True, decided_by="test")


@dataclass
class Harness:
    """A runtime built by hand over an event store and bus, with the pieces kept at hand."""

    store: EventStore
    bus: InProcessEventBus
    services: RunServices
    runtime: Runtime
    sessions: SessionManager | None = None
    engine: AsyncEngine | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def events(self, stream: str) -> list[Event]:
        """Every event of ``stream`` (a session id, or a run id for a run without one), each
        ``llm_command`` with its whole prompt (the log keeps it compact)."""
        return await expand_prompts(self.store, await self.store.read_stream(stream))

    async def wait_for(self, predicate: Callable[[Event], bool], *, limit: float = 5.0) -> Event:
        """The first event in the log (recorded already, or to come) that ``predicate`` likes;
        fails after ``limit`` seconds."""
        async with asyncio.timeout(limit), self.bus.subscribe(from_position=0) as subscription:
            async for event in subscription:
                if predicate(event):
                    return event
        raise AssertionError("the event bus closed")

    def restarted(
        self,
        models: ModelCaller,
        tools: Iterable[Tool] = (),
        *,
        agents: Iterable[Agent] = (DEFAULT,),
        **options: Any,
    ) -> Harness:
        """A new runtime over the same log (and sessions), as the next process would build
        it after this one stopped; call ``runtime.recover()`` on it."""
        services = build_services(
            self.store, self.bus, models, tools, self.services.workspaces_dir, **options
        )
        runtime = Runtime(services, {a.name: a for a in agents}, sessions=self.sessions)
        again = Harness(self.store, self.bus, services, runtime, self.sessions, self.engine)
        self.extra.setdefault("restarts", []).append(again)
        return again

    def crash(self) -> None:
        """What SIGKILL does to the runs in flight: nothing more of theirs is written (what
        they had buffered is lost) and they stop where they are."""
        self.runtime._closing = True  # nothing more starts in the dead process
        for run in self.runtime.active:
            run.events.seal()
            run.events.close_with = _nothing  # type: ignore[method-assign]
            run.leave_now()

    async def close(self) -> None:
        for again in self.extra.get("restarts", []):
            for run in again.runtime.active:
                run.cancel("test over", by="test")
            await again.runtime.shutdown(grace=2)
        for run in self.runtime.active:
            run.cancel("test over", by="test")
        tasks = [r.task for r in self.runtime.active if r.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        # Also waits for the session projections the runtime brings up to date after runs.
        await self.runtime.shutdown(grace=2)
        await self.bus.close()
        if self.engine is not None:
            await self.engine.dispose()


async def _nothing(*_: Any) -> None:
    return None


def build_services(
    store: EventStore,
    bus: InProcessEventBus,
    models: ModelCaller,
    tools: Iterable[Tool],
    workspaces: Path,
    *,
    gate: PermissionGate | None = None,
    **options: Any,
) -> RunServices:
    """Run services over ``store``/``bus`` with ``tools`` in a registry of their own."""
    executor = ToolExecutor(ToolRegistry(list(tools)), bus, gate=gate, max_timeout=10)
    return RunServices(
        bus=bus, store=store, models=models, executor=executor, workspaces_dir=workspaces, **options
    )


def types(events: Iterable[Event]) -> list[str]:
    """The types of ``events``, in order."""
    return [e.type for e in events]


def of_type(events: Iterable[Event], kind: str) -> list[Any]:
    """The events of one type."""
    return [e for e in events if e.type == kind]


def states(events: Iterable[Event]) -> list[str]:
    """The lifecycle states ``events`` moved to, in order."""
    return [e.data.to_state for e in of_type(events, "agent_lifecycle")]


def only(events: Iterable[Event], kind: str) -> Any:
    """The one event of type ``kind``."""
    found = of_type(events, kind)
    assert len(found) == 1, f"expected one {kind}, got {types(events)}"
    return found[0]


def agents(*items: Agent) -> Mapping[str, Agent]:
    """Agents by name."""
    return {a.name: a for a in items}


@tool(read_only=True, inline=True)
def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def moved_to(state: str, run_id: str) -> Callable[[Event], bool]:
    """Matches the lifecycle event of run ``run_id`` moving to ``state``."""
    return lambda e: (
        isinstance(e, AgentLifecycleEvent) and e.run_id == run_id and e.data.to_state == state
    )


def echo(request: ModelRequest) -> str:
    """A model's reply that names the last user message it was sent."""
    users = [m.text for m in request.messages if m.role == "user"]
    return f"answer to {users[-1]}"


async def open_session(h: Harness, who: Principal | None = None) -> str:
    """A new session of ``who`` (alice) in the harness's session store; its id."""
    assert h.sessions is not None
    return (await h.sessions.create(who or Principal(user_id="alice"), channel="cli")).id


class Stuck:
    """Two tools that block until the test lets go: ``lookup`` (read-only, so idempotent) and
    ``charge`` (not idempotent); each counts its calls."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.calls = {"lookup": 0, "charge": 0}

        async def wait(name: str) -> str:
            self.calls[name] += 1
            self.entered.set()
            await self.open.wait()
            return f"{name} done"

        @tool(name="lookup", read_only=True)
        async def lookup() -> str:
            """Look something up."""
            return await wait("lookup")

        @tool(name="charge")
        async def charge() -> str:
            """Charge a card."""
            return await wait("charge")

        self.tools = [lookup, charge]


def calls_then_answers(name: str) -> FakeModel:
    def reply(request: ModelRequest) -> Message | str:
        if request.messages[-1].role == "tool":
            return f"after {name}: {request.messages[-1].text}"
        return calling(name, call_id=f"call_{name}")

    return FakeModel(reply)
