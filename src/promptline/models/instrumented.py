"""Puts every model call on the record: ``llm_command`` before, ``llm_result`` (usage, cost,
latency, TTFT) after, or ``error`` when it fails; while streaming, each ``llm_delta`` goes to
live subscribers only (transient: not stored, the ``llm_result`` holds the whole answer)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from promptline.core.errors import PromptLineError, ProviderError
from promptline.core.events import (
    GLOBAL_STREAM,
    ErrorData,
    ErrorEvent,
    LlmCommand,
    LlmCommandEvent,
    LlmDelta,
    LlmDeltaEvent,
    LlmResult,
    LlmResultEvent,
    build,
)
from promptline.core.ids import new_id
from promptline.events.protocols import EventBus
from promptline.models.capabilities import ModelCapabilities
from promptline.models.types import ModelRequest, ModelResponse, StreamDelta, ToolSpec

__all__ = ["CallContext", "InstrumentedModel", "ModelCaller", "request_params"]

CapabilitiesLookup = Callable[[str], ModelCapabilities | None]
"""``provider/model`` -> its capabilities and prices, or None when unknown."""


class ModelCaller(Protocol):
    """Anything that answers model requests: a provider, or the router in front of many."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One call; the whole answer."""
        ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        """Deltas, then one final `ModelResponse`."""
        ...


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who and what a call belongs to: copied into the envelope of every event it publishes."""

    session_id: str | None = None
    run_id: str | None = None
    user_id: str | None = None
    agent_id: str | None = None
    tenant_id: str | None = None
    correlation_id: str | None = None
    stream: str | None = None
    """The event stream to record on; unset: the session's (or ``global``)."""


class InstrumentedModel:
    """Wraps a `ModelCaller` so each call publishes its events on ``bus``.

    ``provider`` names the wrapped provider when ``target`` is a single provider that gets
    bare model names, so the command's model id reads ``provider/model``; leave it None for
    a router, which takes full ids. ``capabilities`` prices a response that carries no cost.
    Failures publish an ``error`` event and are raised unchanged.
    """

    def __init__(
        self,
        target: ModelCaller,
        bus: EventBus,
        *,
        provider: str | None = None,
        capabilities: CapabilitiesLookup | None = None,
        context: CallContext | None = None,
        publish_deltas: bool = True,
    ) -> None:
        """Wrap ``target``; ``context`` is the default for calls that pass none."""
        self._target = target
        self._bus = bus
        self._provider = provider
        self._capabilities = capabilities
        self._context = context or CallContext()
        self._publish_deltas = publish_deltas

    @property
    def name(self) -> str:
        """The wrapped provider's name (``models`` for a router)."""
        return self._provider or str(getattr(self._target, "name", "models"))

    async def complete(
        self, request: ModelRequest, *, context: CallContext | None = None
    ) -> ModelResponse:
        """Call the target once, publishing the command, then the result or the error."""
        ctx = context or self._context
        command = await self._command(request, ctx, stream=False)
        try:
            response = await self._target.complete(request)
        except Exception as exc:
            await self._error(exc, request, ctx, command)
            raise
        return await self._result(response, request, ctx, command)

    async def stream(
        self, request: ModelRequest, *, context: CallContext | None = None
    ) -> AsyncIterator[StreamDelta | ModelResponse]:
        """Stream from the target, publishing the command, each delta (unless turned off;
        transient: delivered live, not stored), then the result or the error; yields what
        the target yields, the cost filled in."""
        ctx = context or self._context
        command = await self._command(request, ctx, stream=True)
        envelope = _envelope(ctx, command)  # the same for every delta of this call
        # A delta is not stored, so nothing fills its stream in: name the command's now.
        envelope["stream"] = ctx.stream or ctx.session_id or GLOBAL_STREAM
        publish = self._bus.publish_transient if self._publish_deltas else None
        index = 0
        try:
            async for item in self._target.stream(request):
                if isinstance(item, ModelResponse):
                    yield await self._result(item, request, ctx, command)
                    continue
                if publish is not None:
                    await publish(
                        LlmDeltaEvent(
                            **envelope,
                            data=LlmDelta(
                                index=index,
                                text=item.text,
                                reasoning=item.reasoning or None,
                                tool_call=(
                                    dataclasses.asdict(item.tool_call) if item.tool_call else None
                                ),
                            ),
                        )
                    )
                index += 1
                yield item
        except Exception as exc:
            await self._error(exc, request, ctx, command)
            raise

    async def aclose(self) -> None:
        """Close the wrapped target if it can be closed."""
        close = getattr(self._target, "aclose", None)
        if close is not None:
            await close()

    # -- events -------------------------------------------------------------------------------

    def _model_id(self, model: str) -> str:
        if self._provider and not model.startswith(f"{self._provider}/"):
            return f"{self._provider}/{model}"
        return model

    async def _command(self, request: ModelRequest, ctx: CallContext, *, stream: bool) -> str:
        model_id = self._model_id(request.model)
        event_id = new_id("evt_")
        event = LlmCommandEvent(
            id=event_id,
            stream=ctx.stream or "",
            tenant_id=ctx.tenant_id,
            user_id=ctx.user_id,
            session_id=ctx.session_id,
            run_id=ctx.run_id,
            agent_id=ctx.agent_id,
            correlation_id=ctx.correlation_id or event_id,
            data=LlmCommand(
                model=model_id,
                provider=model_id.partition("/")[0] if "/" in model_id else self._provider,
                messages=list(request.messages),
                tools=[_tool_dict(tool) for tool in request.tools],
                params=request_params(request),
                stream=stream,
            ),
        )
        await self._bus.publish(event)
        return event.id

    async def _result(
        self, response: ModelResponse, request: ModelRequest, ctx: CallContext, command: str
    ) -> ModelResponse:
        cost = response.cost_usd
        if cost is None:
            cost = self._price(response, request)
            if cost is not None:
                response = dataclasses.replace(response, cost_usd=cost)
        await self._bus.publish(
            build(
                LlmResultEvent,
                **_envelope(ctx, command),
                data=build(
                    LlmResult,
                    model=response.model,
                    provider=response.provider,
                    deployment=response.deployment,
                    message=response.message,
                    finish_reason=response.finish_reason,
                    usage=response.usage,
                    cost_usd=cost,
                    latency_ms=response.latency_ms,
                    ttft_ms=response.ttft_ms,
                ),
            )
        )
        return response

    def _price(self, response: ModelResponse, request: ModelRequest) -> float | None:
        if self._capabilities is None:
            return None
        # The answering model first (a router may have failed over), then the one asked for.
        candidates = [f"{response.provider}/{response.model}", self._model_id(request.model)]
        for model_id in candidates:
            caps = self._capabilities(model_id)
            cost = caps.cost(response.usage) if caps is not None else None
            if cost is not None:
                return cost
        return None

    async def _error(
        self, exc: Exception, request: ModelRequest, ctx: CallContext, command: str
    ) -> None:
        details: dict[str, Any] = {"model": self._model_id(request.model)}
        if isinstance(exc, ProviderError):
            details.update(provider=exc.provider, status=exc.status, retryable=exc.retryable)
        if isinstance(exc, PromptLineError):
            code, message = exc.code, exc.message
            if exc.hint:
                details["hint"] = exc.hint
        else:
            code, message = "internal_error", f"{type(exc).__name__}: {exc}"
        await self._bus.publish(
            ErrorEvent(
                **_envelope(ctx, command),
                data=ErrorData(code=code, message=message, source="models", details=details),
            )
        )


def _tool_dict(tool: ToolSpec) -> dict[str, Any]:
    # Not dataclasses.asdict: that deep-copies the schema on every call; the schema is shared
    # (and never changed) by every call that offers the tool.
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": tool.strict,
    }


def _envelope(ctx: CallContext, command: str) -> dict[str, Any]:
    return {
        "stream": ctx.stream or "",
        "tenant_id": ctx.tenant_id,
        "user_id": ctx.user_id,
        "session_id": ctx.session_id,
        "run_id": ctx.run_id,
        "agent_id": ctx.agent_id,
        "causation_id": command,
        "correlation_id": ctx.correlation_id or command,
    }


def request_params(request: ModelRequest) -> dict[str, Any]:
    """The sampling and format knobs of ``request`` that were set, as plain JSON values."""
    params: dict[str, Any] = {
        "tool_choice": request.tool_choice,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "stop": request.stop,
        "response_format": (
            dataclasses.asdict(request.response_format) if request.response_format else None
        ),
        "task": request.task,
        "tags": request.tags or None,
        "timeout": request.timeout,
    }
    params = {key: value for key, value in params.items() if value is not None}
    if request.extra:
        params["extra"] = dict(request.extra)
    return params
