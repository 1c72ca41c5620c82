"""Model calls on the record (llm_command, llm_result, error; llm_delta live only) and the
usage projection folded from them: its totals equal the sum over the llm_result events."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptline.core.errors import InvalidInputError, ProviderRateLimited
from promptline.core.events import (
    ErrorEvent,
    Event,
    LlmCommandEvent,
    LlmDeltaEvent,
    LlmResult,
    LlmResultEvent,
    MessageReceived,
    MessageReceivedEvent,
)
from promptline.core.messages import Message, Usage
from promptline.events.bus import InProcessEventBus
from promptline.events.content import expand_prompts
from promptline.events.factory import create_event_store
from promptline.events.protocols import EventFilter
from promptline.models.capabilities import ModelCapabilities
from promptline.models.instrumented import CallContext, InstrumentedModel
from promptline.models.scripted import Script, ScriptedProvider
from promptline.models.types import ModelRequest, ModelResponse, ToolSpec
from promptline.models.usage import UsageProjection, UsageTotals, usage_report
from promptline.storage.database import create_engine

PRICED = ModelCapabilities(input_price_per_mtok=2.0, output_price_per_mtok=8.0)
CONTEXT = CallContext(
    session_id="ses_1", run_id="run_1", user_id="ada", agent_id="helper", tenant_id="acme"
)


@pytest.fixture
async def bus(sqlite_url: str) -> AsyncIterator[InProcessEventBus]:
    store = create_event_store(create_engine(sqlite_url), owns_engine=True)
    bus = InProcessEventBus(store)
    yield bus
    await bus.close()
    await store.close()


def scripted(**turns: list[dict[str, object]]) -> ScriptedProvider:
    return ScriptedProvider(
        scripts={name: Script.from_data(data, name=name) for name, data in turns.items()}
    )


def priced(model_id: str) -> ModelCapabilities | None:
    return PRICED if model_id == "scripted/paid" else None


async def events_of(bus: InProcessEventBus) -> list[Event]:
    """The log, each ``llm_command`` with its whole prompt (the store keeps it compact)."""
    return await expand_prompts(bus.store, await bus.store.read_all(EventFilter()))


async def streamed(
    model: InstrumentedModel, request: ModelRequest
) -> tuple[list[Any], list[Event]]:
    """What ``model.stream(request)`` yields, and every event a live subscriber saw."""
    async with model_bus(model).subscribe() as live:
        items = [i async for i in model.stream(request)]
        seen: list[Event] = []
        while not seen or seen[-1].type not in ("llm_result", "error"):
            seen.append(await anext(live))
    return items, seen


def model_bus(model: InstrumentedModel) -> InProcessEventBus:
    bus = model._bus
    assert isinstance(bus, InProcessEventBus)
    return bus


PAID = [{"reply": "Sure.", "usage": {"input_tokens": 1000, "output_tokens": 500}}]


# -- instrumented calls -----------------------------------------------------------------------


async def test_instrumented_complete_publishes_command_then_result_with_cost_and_context(
    bus: InProcessEventBus,
) -> None:
    model = InstrumentedModel(
        scripted(paid=PAID), bus, provider="scripted", capabilities=priced, context=CONTEXT
    )
    request = ModelRequest(
        "paid", [Message(role="user", content="hi")], tools=[ToolSpec(name="add")], temperature=0.2
    )

    response = await model.complete(request)

    command, result = await events_of(bus)
    assert isinstance(command, LlmCommandEvent)
    assert isinstance(result, LlmResultEvent)
    assert command.data.model == "scripted/paid"
    assert command.data.provider == "scripted"
    assert command.data.tools[0]["name"] == "add"
    assert command.data.params == {"temperature": 0.2}
    assert command.data.stream is False
    assert result.data.usage == Usage(input_tokens=1000, output_tokens=500)
    # The scripted provider says 0.0; a response that carries a cost keeps it.
    assert result.data.cost_usd == response.cost_usd == 0.0
    assert result.causation_id == command.id
    assert result.correlation_id == command.correlation_id == command.id
    for event in (command, result):
        assert (event.session_id, event.run_id, event.user_id) == ("ses_1", "run_1", "ada")
        assert (event.agent_id, event.tenant_id) == ("helper", "acme")


class Unpriced:
    """A provider whose responses carry no cost, as HTTP providers' do."""

    name = "acme"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(
            message=Message(role="assistant", content="ok"),
            model=request.model,
            provider="acme",
            usage=Usage(input_tokens=1_000_000, output_tokens=1_000_000),
            latency_ms=12.0,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelResponse]:
        yield await self.complete(request)


async def test_instrumented_prices_a_response_from_the_capabilities(
    bus: InProcessEventBus,
) -> None:
    def lookup(model_id: str) -> ModelCapabilities | None:
        return PRICED if model_id == "acme/m" else None

    model = InstrumentedModel(Unpriced(), bus, provider="acme", capabilities=lookup)

    response = await model.complete(ModelRequest("m", [Message(role="user", content="x")]))

    result = (await events_of(bus))[-1]
    assert isinstance(result, LlmResultEvent)
    assert response.cost_usd == result.data.cost_usd == pytest.approx(10.0)
    assert result.data.latency_ms == 12.0


async def test_instrumented_unknown_price_leaves_the_cost_empty(bus: InProcessEventBus) -> None:
    model = InstrumentedModel(Unpriced(), bus, provider="acme", capabilities=lambda _: None)

    response = await model.complete(ModelRequest("m", [Message(role="user", content="x")]))

    assert response.cost_usd is None


async def test_instrumented_stream_publishes_each_delta_then_the_result(
    bus: InProcessEventBus,
) -> None:
    provider = scripted(s=[{"reply": "one two three"}])
    model = InstrumentedModel(provider, bus, provider="scripted", context=CONTEXT)

    request = ModelRequest("s", [Message(role="user", content="x")])
    items, events = await streamed(model, request)

    deltas = [e for e in events if isinstance(e, LlmDeltaEvent)]
    assert [type(e) for e in events] == [LlmCommandEvent, *[LlmDeltaEvent] * 3, LlmResultEvent]
    # Live only: the log has the command and the result, which holds the whole answer.
    stored = await events_of(bus)
    assert [e.id for e in stored] == [events[0].id, events[-1].id]
    assert all(d.seq == 0 and d.stream == stored[0].stream for d in deltas)
    assert "".join(d.data.text for d in deltas) == "one two three"
    assert [d.data.index for d in deltas] == [0, 1, 2]
    assert all(d.causation_id == events[0].id for d in deltas)
    final = items[-1]
    assert isinstance(final, ModelResponse)
    result = events[-1]
    assert isinstance(result, LlmResultEvent)
    assert result.data.ttft_ms == final.ttft_ms is not None
    assert isinstance(events[0], LlmCommandEvent)
    assert events[0].data.stream is True


async def test_instrumented_stream_without_deltas_publishes_command_and_result_only(
    bus: InProcessEventBus,
) -> None:
    model = InstrumentedModel(scripted(s=[{"reply": "a b c"}]), bus, publish_deltas=False)

    async for _ in model.stream(ModelRequest("s", [Message(role="user", content="x")])):
        pass

    assert [e.type for e in await events_of(bus)] == ["llm_command", "llm_result"]


async def test_instrumented_stream_tool_call_deltas_are_published(
    bus: InProcessEventBus,
) -> None:
    provider = scripted(t=[{"tool_calls": [{"name": "add", "arguments": {"a": 1}}]}])
    model = InstrumentedModel(provider, bus)

    _, events = await streamed(model, ModelRequest("t", [Message(role="user", content="x")]))

    deltas = [e for e in events if isinstance(e, LlmDeltaEvent)]
    assert deltas[0].data.tool_call is not None
    assert deltas[0].data.tool_call["name"] == "add"
    assert deltas[1].data.tool_call is not None
    assert deltas[1].data.tool_call["arguments"] == '{"a": 1}'


@pytest.mark.parametrize("stream", [False, True])
async def test_instrumented_failure_publishes_an_error_event_and_raises(
    bus: InProcessEventBus, stream: bool
) -> None:
    provider = scripted(busy=[{"error": {"kind": "rate_limited", "retry_after": 3}}])
    model = InstrumentedModel(provider, bus, provider="scripted", context=CONTEXT)
    request = ModelRequest("busy", [Message(role="user", content="x")])

    async def call() -> None:
        if stream:
            async for _ in model.stream(request):
                pass
        else:
            await model.complete(request)

    with pytest.raises(ProviderRateLimited):
        await call()

    command, error = await events_of(bus)
    assert isinstance(error, ErrorEvent)
    assert error.data.code == "provider_rate_limited"
    assert error.data.source == "models"
    assert error.data.details["retryable"] is True
    assert error.data.details["model"] == "scripted/busy"
    assert error.causation_id == command.id
    assert error.session_id == "ses_1"


# -- the projection ---------------------------------------------------------------------------


def result_event(
    *,
    user: str | None = "ada",
    session: str | None = "ses_1",
    agent: str | None = "helper",
    provider: str = "openai",
    model: str = "gpt-4o",
    usage: Usage | None = None,
    cost: float | None = 0.5,
    ts: datetime | None = None,
) -> LlmResultEvent:
    return LlmResultEvent(
        user_id=user,
        session_id=session,
        agent_id=agent,
        ts=ts or datetime(2025, 3, 1, 12, tzinfo=UTC),
        data=LlmResult(model=model, provider=provider, usage=usage or Usage(), cost_usd=cost),
    )


def summed(events: list[LlmResultEvent]) -> UsageTotals:
    total = UsageTotals()
    for e in events:
        u = e.data.usage
        total += UsageTotals(
            1,
            u.input_tokens,
            u.output_tokens,
            u.cached_tokens,
            u.reasoning_tokens,
            e.data.cost_usd or 0.0,
            int(e.data.cost_usd is None),
        )
    return total


def same(a: UsageTotals, b: UsageTotals) -> bool:
    ints = ("calls", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")
    return (
        all(getattr(a, f) == getattr(b, f) for f in ints)
        and a.unpriced_calls == b.unpriced_calls
        and math.isclose(a.cost_usd, b.cost_usd, rel_tol=1e-9, abs_tol=1e-12)
    )


def test_usage_projection_ignores_events_other_than_llm_result() -> None:
    projection = UsageProjection()

    projection.apply(MessageReceivedEvent(data=MessageReceived(message=Message(role="user"))))

    assert projection.total == UsageTotals()


def test_usage_projection_groups_by_user_session_agent_model_and_utc_day() -> None:
    late = datetime(2025, 3, 1, 23, 30, tzinfo=UTC) + timedelta(hours=1)  # March 2nd, UTC
    events = [
        result_event(usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=2)),
        result_event(user="bob", agent=None, model="deepseek-chat", provider="deepseek", ts=late),
        result_event(cost=None, usage=Usage(reasoning_tokens=7)),
    ]
    projection = UsageProjection()
    for event in events:
        projection.apply(event)

    ada = projection.get("user", "ada")
    assert (ada.calls, ada.input_tokens, ada.cached_tokens, ada.reasoning_tokens) == (2, 10, 2, 7)
    assert ada.cost_usd == 0.5
    assert ada.unpriced_calls == 1
    assert set(projection.by("model")) == {"openai/gpt-4o", "deepseek/deepseek-chat"}
    assert projection.get("agent", None).calls == 1
    assert set(projection.by("day")) == {"2025-03-01", "2025-03-02"}
    assert projection.get("user", "nobody") == UsageTotals()
    assert projection.total.calls == 3


def test_usage_projection_refuses_an_unknown_dimension() -> None:
    with pytest.raises(InvalidInputError, match="cannot group usage by 'planet'"):
        UsageProjection().by("planet")  # type: ignore[arg-type]


random_results = st.lists(
    st.builds(
        result_event,
        user=st.sampled_from(["ada", "bob", None]),
        session=st.sampled_from(["ses_1", "ses_2", None]),
        agent=st.sampled_from(["a", "b", None]),
        provider=st.sampled_from(["openai", "kimi"]),
        model=st.sampled_from(["m1", "m2"]),
        usage=st.builds(
            Usage,
            input_tokens=st.integers(0, 10**7),
            output_tokens=st.integers(0, 10**6),
            cached_tokens=st.integers(0, 10**6),
            reasoning_tokens=st.integers(0, 10**6),
        ),
        cost=st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
        ts=st.datetimes(
            min_value=datetime(2024, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
        ),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(random_results)
def test_usage_projection_totals_equal_the_sum_over_llm_results(
    events: list[LlmResultEvent],
) -> None:
    projection = UsageProjection()
    for event in events:
        projection.apply(event)

    assert same(projection.total, summed(events))
    keys = {
        "user": lambda e: e.user_id,
        "session": lambda e: e.session_id,
        "agent": lambda e: e.agent_id,
        "model": lambda e: f"{e.data.provider}/{e.data.model}",
        "day": lambda e: e.ts.date().isoformat(),
    }
    for dimension, key in keys.items():
        groups = projection.by(dimension)  # type: ignore[arg-type]
        assert sum(t.calls for t in groups.values()) == len(events)
        for value, totals in groups.items():
            assert same(totals, summed([e for e in events if key(e) == value]))


async def test_usage_report_from_the_log_equals_the_sum_of_recorded_results(
    bus: InProcessEventBus,
) -> None:
    provider = scripted(paid=PAID * 3, free=[{"reply": "a"}, {"reply": "b"}])
    ada = InstrumentedModel(provider, bus, provider="scripted", context=CONTEXT)
    bob = InstrumentedModel(provider, bus, provider="scripted", context=CallContext(user_id="bob"))
    await ada.complete(ModelRequest("paid", [Message(role="user", content="1")]))
    await bob.complete(ModelRequest("paid", [Message(role="user", content="2")]))
    async for _ in ada.stream(ModelRequest("free", [Message(role="user", content="3")])):
        pass

    everything = await usage_report(bus.store)
    only_ada = await usage_report(bus.store, user_id="ada")

    results = [e for e in await events_of(bus) if isinstance(e, LlmResultEvent)]
    assert same(everything.total, summed(results))
    assert same(only_ada.total, summed([e for e in results if e.user_id == "ada"]))
    assert everything.total.calls == 3
    assert everything.get("model", "scripted/paid").input_tokens == 2000
    assert set(only_ada.by("user")) == {"ada"}
    assert everything.last_position == results[-1].position
