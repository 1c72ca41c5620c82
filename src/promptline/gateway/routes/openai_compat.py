"""The OpenAI-compatible API: ``POST /v1/chat/completions`` (streamed or not) runs an agent,
``GET /v1/models`` lists the agents and models and ``GET /v1/models/{id}`` names one, so any
OpenAI client can talk to PromptLine (`promptline.gateway.routes.responses` speaks the
Responses API). Errors on these routes come in OpenAI's shape (`OpenAIRoute`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptline.core.errors import (
    ConflictError,
    InvalidInputError,
    ModelNotFoundError,
    NotFoundError,
    PromptLineError,
)
from promptline.gateway.deps import CallerDep, check_scope, gateway, needs
from promptline.gateway.deps import caller as request_caller
from promptline.gateway.errors import OpenAIRoute, openai_error, openai_error_body
from promptline.gateway.limits import is_json, replay_body
from promptline.gateway.openai_wire import (
    AGENT_PREFIX,
    ChatCompletionRequest,
    chat_input,
    completion_chunk,
    completion_json,
    finish_reason,
)
from promptline.gateway.routes.messages import REPLAYED_HEADER
from promptline.gateway.service import MAX_CONTENT_CHARS, visible_session
from promptline.models.types import ModelRequest
from promptline.runtime.answer import RunAnswer
from promptline.runtime.ingress import MAX_IDEMPOTENCY_KEY

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.runtime.agent import Agent
    from promptline.runtime.run import RunResult
    from promptline.security.auth import Caller
    from promptline.sessions.models import Session

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)

SESSION_HEADER = "X-Session-Id"
RUN_HEADER = "X-Run-Id"

# The run failed, so retrying would start another run (and repeat its tool calls): the
# `openai` client retries 409, 429 and 5xx answers unless told not to.
_NO_RETRY = {"X-Should-Retry": "false"}
_FAILED_STATUS = {"capability_missing": 400, "invalid_input": 400}
SESSION_CHANNEL = "http"
"""The channel of a session an ``X-Session-Id`` of the client's own making starts."""


@router.get(
    "/models", dependencies=[needs("catalog:read")], summary="List agents and models (OpenAI shape)"
)
async def list_models(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every agent as ``agent/NAME`` and every configured model id, in OpenAI's list shape
    (``kind`` and ``description`` are PromptLine's own)."""
    app = gateway(request).app
    created = int(app.clock.now().timestamp())
    data = [_agent_json(agent, created) for agent in app.runtime.agents.values()]
    data += [_model_json(model_id, created) for model_id in app.router.model_ids]
    return {"object": "list", "data": data}


@router.get(
    "/models/{model_id:path}",
    dependencies=[needs("catalog:read")],
    summary="One agent or model (OpenAI shape)",
)
async def retrieve_model(model_id: str, request: Request, caller: CallerDep) -> dict[str, Any]:
    """The agent (``agent/NAME``) or model ``model_id`` as `GET /v1/models` lists it; 404
    (``model_not_found``) for anything else."""
    app = gateway(request).app
    created = int(app.clock.now().timestamp())
    if model_id.startswith(AGENT_PREFIX):
        agent = app.runtime.agents.get(model_id[len(AGENT_PREFIX) :])
        if agent is not None:
            return _agent_json(agent, created)
    elif model_id in app.router.model_ids:
        return _model_json(model_id, created)
    agents = ", ".join(f"{AGENT_PREFIX}{name}" for name in app.runtime.agents)
    raise ModelNotFoundError(
        f"no agent or model {model_id!r}",
        hint=f"name an agent ({agents}) or a configured model "
        f"({', '.join(app.router.model_ids) or 'none'}); GET /v1/models lists both",
        model=model_id,
    )


def _agent_json(agent: Agent, created: int) -> dict[str, Any]:
    return {
        "id": f"{AGENT_PREFIX}{agent.name}",
        "object": "model",
        "created": created,
        "owned_by": "promptline",
        "kind": "agent",
        "description": agent.description,
    }


def _model_json(model_id: str, created: int) -> dict[str, Any]:
    provider, slash, _ = model_id.partition("/")
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": provider if slash else "promptline",
        "kind": "model",
    }


async def conversation_session(app: App, caller: Caller, session_id: str) -> Session:
    """The session an ``X-Session-Id`` names: the caller's (or one it may see), or, for a
    well-formed id no session has, a new session the caller owns (a client may make up its
    conversation ids). An id another tenant's or user's session has is 404, as for one the
    caller may not see."""
    try:
        return await visible_session(app, caller, session_id)
    except NotFoundError:
        pass
    try:
        return await app.sessions.create(
            caller.principal, channel=SESSION_CHANNEL, session_id=session_id
        )
    except ConflictError:
        # Someone else's, or another request starting it first: the caller may see only
        # the latter.
        return await visible_session(app, caller, session_id)
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"X-Session-Id {session_id!r} cannot name a new session: {exc.message}",
            hint="use letters, digits and _ . : @ - (at most 64), or an id a session has",
            field="X-Session-Id",
        ) from None


SessionHeader = Annotated[
    str | None,
    Header(
        description="Continue this session (a new id of the client's making starts one): "
        "only the new user message is added."
    ),
]
"""The ``X-Session-Id`` header of the OpenAI-compatible routes (the parameter's name)."""

IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="A unique value per request: a retry with the same key gets the "
        "first run's answer and starts nothing new, even across restarts.",
        max_length=MAX_IDEMPOTENCY_KEY,
    ),
]
"""The ``Idempotency-Key`` header of the OpenAI-compatible routes."""


@router.post(
    "/chat/completions",
    dependencies=[needs("runs:write")],
    summary="Run an agent, OpenAI chat-completions style",
    response_model=None,
    responses={200: {"description": "A chat.completion, or (stream) SSE chat.completion.chunk"}},
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    caller: CallerDep,
    x_session_id: SessionHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Run the agent ``model`` names (``agent/NAME``, or ``provider/model`` for the default
    agent with that model) on the last user message; the answer is the run's final answer."""
    app = gateway(request).app
    chat = chat_input(body)
    if len(chat.message.text) > MAX_CONTENT_CHARS:
        raise InvalidInputError(
            f"the new message is longer than {MAX_CONTENT_CHARS} characters",
            field=f"messages.{len(body.messages) - 1}.content",
        )
    agent, model = target(
        app,
        body.model,
        temperature=body.temperature,
        max_tokens=body.output_limit,
        stream=body.stream,
    )
    headers: dict[str, str] = {}
    if x_session_id is not None:
        session = await conversation_session(app, caller, x_session_id)
        accepted = await app.runtime.submit(
            chat.message,
            session_id=session.id,
            principal=caller.principal,
            agent=agent,
            model=model,
            idempotency_key=idempotency_key,
        )
        headers[SESSION_HEADER] = session.id
    else:
        accepted = await app.runtime.submit(
            chat.message,
            principal=caller.principal,
            agent=agent,
            model=model,
            history=chat.history,
            idempotency_key=idempotency_key,
        )
    run_id = accepted.answer_run_id
    headers[RUN_HEADER] = run_id
    reply = _Reply(
        id=f"chatcmpl-{run_id}",
        created=int(app.clock.now().timestamp()),
        model=body.model,
        include_usage=body.include_usage,
    )
    keyed = idempotency_key is not None
    answer = None
    if accepted.replayed:
        # A retry: the first request's run answers (waited for if it is still going).
        headers[REPLAYED_HEADER] = "true"
    else:
        # No await since the message was taken: the subscription sees every event of the run.
        answer = RunAnswer(app.bus, run_id, deltas=body.stream, thinking=agent.use_chain_of_thought)
    if body.stream:
        leave = answer.close if answer is not None else _nothing
        return EventStream(_frames(app, run_id, answer, reply), on_leave=leave, headers=headers)
    if answer is not None:
        try:
            await answer.wait()
        finally:
            await answer.close()
    result = await app.runtime.outcome(run_id)
    if not result.ok:
        return failed(result, headers, keyed=keyed)
    document = completion_json(
        id=reply.id,
        created=reply.created,
        model=reply.model,
        content=result.text,
        finish=finish_reason(answer.finish_reason if answer is not None else None),
        usage=result.usage,
    )
    return Response(orjson.dumps(document), media_type="application/json", headers=headers)


def target(
    app: App,
    name: str,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
    stream: bool = False,
) -> tuple[Agent, str | None]:
    """The agent to run for the request's ``model`` (``name``) and the model to run it with
    (None: the agent's own), with the request's overrides."""
    runtime = app.runtime
    if name.startswith(AGENT_PREFIX):
        agent_name = name[len(AGENT_PREFIX) :]
        if not agent_name:
            raise NotFoundError(
                "model 'agent/' names no agent",
                hint=f"write agent/NAME; agents: {', '.join(runtime.agents)}",
            )
        agent, model = runtime.agent(agent_name), None
    else:
        _check_model(app, name)
        agent, model = runtime.agent(None), name
    changes: dict[str, Any] = {}
    if temperature is not None:
        changes["temperature"] = temperature
    if max_tokens is not None:
        changes["max_tokens"] = max_tokens
    if stream and not agent.stream:
        changes["stream"] = True  # the answer can only stream if the model calls do
    return (agent.evolve(**changes) if changes else agent), model


def _check_model(app: App, model: str) -> None:
    router = app.router
    if model in router.model_ids:
        return
    try:
        router.plan(ModelRequest(model=model, messages=[]))
    except ModelNotFoundError:
        agents = ", ".join(f"{AGENT_PREFIX}{name}" for name in app.runtime.agents)
        raise ModelNotFoundError(
            f"no agent or model {model!r}",
            hint=f"name an agent ({agents}) or a configured model "
            f"({', '.join(router.model_ids) or 'none'}); GET /v1/models lists both",
            model=model,
        ) from None
    except PromptLineError:
        return  # a known model that this empty probe does not suit: the run will tell


class _Reply:
    """What every chunk (or the completion) of one answer repeats."""

    __slots__ = ("created", "id", "include_usage", "model")

    def __init__(self, *, id: str, created: int, model: str, include_usage: bool) -> None:
        self.id = id
        self.created = created
        self.model = model
        self.include_usage = include_usage

    def chunk(self, **fields: Any) -> bytes:
        data = completion_chunk(
            id=self.id,
            created=self.created,
            model=self.model,
            with_usage=self.include_usage,
            **fields,
        )
        return _frame(data)


def _frame(data: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


_DONE = b"data: [DONE]\n\n"


async def _frames(
    app: App, run_id: str, answer: RunAnswer | None, reply: _Reply
) -> AsyncGenerator[bytes, None]:
    """The SSE frames of a streamed answer: the role, the text as it streams (whole at the
    end when it did not stream, or for a retry, which has no ``answer`` to follow), the finish
    reason, the usage (when asked), ``[DONE]``; an error frame when the run fails."""
    yield reply.chunk(delta={"role": "assistant", "content": ""})
    if answer is not None:
        async for text in answer.pieces():
            yield reply.chunk(delta={"content": text})
        if answer.closed:
            return  # the client left
    result = await app.runtime.outcome(run_id)
    if result.ok:
        if not (answer is not None and answer.answer_streamed) and result.text:
            yield reply.chunk(delta={"content": result.text})
        yield reply.chunk(finish=finish_reason(answer.finish_reason if answer else None))
        if reply.include_usage:
            yield reply.chunk(usage=result.usage)
    else:
        _, body = failure(result)
        yield _frame(body)
    yield _DONE


async def _nothing() -> None:
    return None


def failure(result: RunResult) -> tuple[int, dict[str, Any]]:
    """The status and error body (OpenAI's shape) of a run that did not complete."""
    details: dict[str, Any] = {"run_id": result.run_id, "session_id": result.session_id}
    if result.status == "failed" and result.error is not None:
        error = result.error
        code = error.code
        status = _FAILED_STATUS.get(code, 502 if code.startswith("provider_") else 500)
        if code == "budget_exceeded":
            # A spending budget used up (it names its scope), or a conversation too long
            # for the model's context window.
            status = 429 if "scope" in error.details else 400
        message = f"the run failed: {error.message}"
        details.update(error.details)
    elif result.status == "interrupted":
        code, status = "run_interrupted", 503
        message = (
            "the server stopped during the run, which goes on after the restart: send the "
            "request again with the same Idempotency-Key to get its answer"
        )
    else:
        code, status = "run_cancelled", 409
        message = "the run was cancelled before it answered"
    return status, openai_error_body(status, code, message, details=details)


def failed(result: RunResult, headers: Mapping[str, str], *, keyed: bool = False) -> Response:
    """The error response to a request whose run did not complete."""
    status, body = failure(result)
    # A retry would start another run, unless the request has an idempotency key and the
    # run was only cut short by a restart: then the retry gets that run's answer.
    retry = {} if keyed and result.status == "interrupted" else _NO_RETRY
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**headers, **retry},
    )


class EventStream(Response):
    """``text/event-stream`` of ``frames``. A client that leaves stops the frames, not the
    run: ``on_leave`` is called as soon as the connection closes, even between frames."""

    media_type = "text/event-stream"

    def __init__(
        self,
        frames: AsyncGenerator[bytes, None],
        *,
        on_leave: Callable[[], Awaitable[None]],
        headers: Mapping[str, str],
    ) -> None:
        self._frames = frames
        self._on_leave = on_leave
        self.status_code = 200
        self.background = None
        self.init_headers({**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(self._watch(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for frame in self._frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client left mid-stream; its run goes on
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
            await self._on_leave()
            await self._frames.aclose()

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        await self._on_leave()


CHAT_COMPLETIONS_PATH = "/v1/chat/completions"


class ChatCompletionsFastPath:
    """ASGI middleware taking ``POST /v1/chat/completions`` requests that need no more than
    reading: a whole JSON body that parses and validates as `ChatCompletionRequest`, and at
    most one of each header the route reads, within its limits. Those go straight to
    `chat_completions`, authenticated and scope-checked as the route's dependencies would,
    without FastAPI's per-request routing, dependency solving and second body parse; any
    other request (one that fails a check, or is shaped unusually) goes to the declared
    route, which answers it (its error included) as it always has. Errors raised on the way
    answer in OpenAI's shape, as on the route (`OpenAIRoute`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or _route_path(scope) != CHAT_COMPLETIONS_PATH
        ):
            await self.app(scope, receive, send)
            return
        message = await receive()
        if message["type"] != "http.request" or message.get("more_body", False):
            await self.app(scope, _replay_message(message, receive), send)
            return
        body = bytes(message.get("body", b""))
        taken = _take(scope, body)
        if taken is None:
            await self.app(scope, replay_body(body, receive), send)
            return
        parsed, session_id, idempotency_key = taken
        request = Request(scope, receive)
        response: Response
        try:
            found = await request_caller(request)
            check_scope(found, "runs:write")
            response = await chat_completions(
                parsed,
                request,
                found,
                x_session_id=session_id,
                idempotency_key=idempotency_key,
            )
        except Exception as exc:
            response = openai_error(request, exc)
        await response(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the router matches (without the app's ``root_path``)."""
    path = str(scope["path"])
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        return path[len(root) :]
    return path


def _replay_message(message: Message, receive: Receive) -> Receive:
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return message

    return replayed


_READ_HEADERS = {b"content-type", b"x-session-id", b"idempotency-key"}


def _take(scope: Scope, body: bytes) -> tuple[ChatCompletionRequest, str | None, str | None] | None:
    """The request as the route would read it (body, ``X-Session-Id``, ``Idempotency-Key``),
    or None for any request it would not take as it is."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _READ_HEADERS:
            if name in found:
                return None
            found[name] = value.decode("latin-1")
    if not body or not is_json(found.get(b"content-type")):
        return None
    key = found.get(b"idempotency-key")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        parsed = ChatCompletionRequest.model_validate(data)
    except ValidationError:
        return None
    return parsed, found.get(b"x-session-id"), key
