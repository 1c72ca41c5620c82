"""The OpenAI Responses API: ``POST /v1/responses`` (streamed or not) runs an agent as
``POST /v1/chat/completions`` does, and answers with a ``response`` object whose output items
are the run's: the text of its model calls as ``message`` items, and each tool call the agent
made, on the server, as a ``function_call`` item followed by its ``function_call_output``.

``previous_response_id`` continues a response's conversation: for a run without a session,
the new run's history is the earlier run's (its request's instructions left out) and its
messages, kept with the new run in the log like every run's history; a run in a session
continues the session. Every request goes through `Runtime.submit`, so a response is durable
like any run, and an ``Idempotency-Key`` makes a retry safe.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from promptline.core.errors import ConflictError, InvalidInputError
from promptline.core.events import MessageSentEvent, RunQueuedEvent
from promptline.core.messages import Message, ToolCall
from promptline.events.protocols import EventFilter
from promptline.gateway.deps import CallerDep, gateway, needs
from promptline.gateway.errors import OpenAIRoute
from promptline.gateway.openai_wire import (
    INSTRUCTIONS,
    RESPONSE_PREFIX,
    ResponseHead,
    ResponseRequest,
    function_call_item,
    function_call_output_item,
    message_item,
    output_items,
    response_input,
    run_of_response,
)
from promptline.gateway.routes.messages import REPLAYED_HEADER
from promptline.gateway.routes.openai_compat import (
    RUN_HEADER,
    SESSION_HEADER,
    EventStream,
    IdempotencyHeader,
    SessionHeader,
    conversation_session,
    failed,
    failure,
    target,
)
from promptline.gateway.service import MAX_CONTENT_CHARS, visible_run, visible_session
from promptline.runtime.answer import RunAnswer
from promptline.runtime.recovery import conversation

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.runtime.records import RunRecord
    from promptline.runtime.run import RunResult
    from promptline.security.auth import Caller
    from promptline.sessions.models import Session

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


@router.post(
    "/responses",
    dependencies=[needs("runs:write")],
    summary="Run an agent, OpenAI Responses style",
    response_model=None,
    responses={200: {"description": "A response, or (stream) its SSE events"}},
)
async def create_response(
    body: ResponseRequest,
    request: Request,
    caller: CallerDep,
    x_session_id: SessionHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Run the agent ``model`` names on the last input item (the user's new message); the
    response's output is what the run said and did."""
    app = gateway(request).app
    turn = response_input(body)
    if len(turn.message.text) > MAX_CONTENT_CHARS:
        raise InvalidInputError(
            f"the new message is longer than {MAX_CONTENT_CHARS} characters", field="input"
        )
    agent, model = target(
        app,
        body.model,
        temperature=body.temperature,
        max_tokens=body.max_output_tokens,
        stream=body.stream,
    )
    previous = None
    if body.previous_response_id is not None:
        previous = await _previous(app, caller, body.previous_response_id)
    in_session = x_session_id is not None or (previous is not None and previous.session_id)
    if in_session and turn.instructions is not None:
        raise InvalidInputError(
            "instructions are not supported for a run in a session: its runs have their "
            "agent's system prompt, and what a request adds to a session stays in it",
            hint="leave out instructions, or run without X-Session-Id (and continue with "
            "previous_response_id)",
            field="instructions",
        )
    session = await _session(app, caller, x_session_id, previous)
    headers: dict[str, str] = {}
    if session is not None:
        accepted = await app.runtime.submit(
            turn.message,
            session_id=session.id,
            principal=caller.principal,
            agent=agent,
            model=model,
            idempotency_key=idempotency_key,
        )
        headers[SESSION_HEADER] = session.id
    else:
        history = [turn.instructions] if turn.instructions is not None else []
        if previous is not None:
            history += await _history_of(app, previous.run_id)
        accepted = await app.runtime.submit(
            turn.message,
            principal=caller.principal,
            agent=agent,
            model=model,
            history=[*history, *turn.history],
            idempotency_key=idempotency_key,
        )
    run_id = accepted.answer_run_id
    headers[RUN_HEADER] = run_id
    answer = None
    if accepted.replayed:
        headers[REPLAYED_HEADER] = "true"
    else:
        # No await since the message was taken: the subscription sees every event of the run.
        answer = RunAnswer(
            app.bus,
            run_id,
            deltas=body.stream,
            thinking=agent.use_chain_of_thought,
            everything=body.stream,
        )
    head = ResponseHead(
        id=f"{RESPONSE_PREFIX}{run_id}",
        created_at=int(app.clock.now().timestamp()),
        model=body.model,
        instructions=body.instructions,
        previous_response_id=body.previous_response_id,
        temperature=body.temperature,
        max_output_tokens=body.max_output_tokens,
        metadata=dict(body.metadata or {}),
    )
    if body.stream:
        leave = answer.close if answer is not None else _nothing
        return EventStream(_events(app, run_id, answer, head), on_leave=leave, headers=headers)
    if answer is not None:
        try:
            await answer.wait()
        finally:
            await answer.close()
    result = await app.runtime.outcome(run_id)
    if not result.ok:
        return failed(result, headers, keyed=idempotency_key is not None)
    output = output_items(await _sent(app, run_id))
    document = head.response("completed", output, usage=result.usage)
    return Response(orjson.dumps(document), media_type="application/json", headers=headers)


async def _previous(app: App, caller: Caller, response_id: str) -> RunRecord:
    """The record of the run that gave ``response_id``, ended (404 for one the caller may not
    see, 409 for one still going)."""
    record = await visible_run(app, caller, run_of_response(response_id))
    if not record.ended:
        raise ConflictError(
            f"response {response_id!r} is still in progress",
            hint="wait for it to complete (stream it, or retry with the same Idempotency-Key) "
            "before continuing it",
            field="previous_response_id",
        )
    return record


async def _session(
    app: App, caller: Caller, session_id: str | None, previous: RunRecord | None
) -> Session | None:
    """The session the run continues: ``X-Session-Id``'s, or that of the previous response's
    run; None for a run without one."""
    earlier = previous.session_id if previous is not None else None
    if session_id is None:
        return None if earlier is None else await visible_session(app, caller, earlier)
    if previous is not None and earlier != session_id:
        raise InvalidInputError(
            f"previous_response_id {previous.run_id!r} is not a response of session {session_id!r}",
            hint="continue a response of the session X-Session-Id names, or leave one out",
            field="previous_response_id",
        )
    return await conversation_session(app, caller, session_id)


async def _history_of(app: App, run_id: str) -> list[Message]:
    """The conversation a run without a session had by its end: the history its request
    gave (without that request's instructions), its input and its messages."""
    events = await app.events.read_all(EventFilter(run_id=run_id))
    queued = next((e for e in events if isinstance(e, RunQueuedEvent)), None)
    given = queued.data.history if queued is not None else []
    return [m for m in given if not m.metadata.get(INSTRUCTIONS)] + conversation(events)


async def _sent(app: App, run_id: str) -> list[Message]:
    """The messages run ``run_id`` sent (its answers and its tool results), in order."""
    events = await app.events.read_all(
        EventFilter(run_id=run_id, types=frozenset({"message_sent"}))
    )
    return [e.data.message for e in events if isinstance(e, MessageSentEvent)]


async def _nothing() -> None:
    return None


class _Emitter:
    """The SSE events of one streamed response, numbered, and its output items as they
    stand (the last ``response`` object carries them)."""

    def __init__(self, head: ResponseHead) -> None:
        self.head = head
        self.items: list[dict[str, Any]] = []
        self._seq = 0
        self._open: int | None = None  # the index of the message item text streams into
        self._text = ""

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return f"event: {kind}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"

    def lifecycle(self, kind: str, status: str, **options: Any) -> bytes:
        return self.event(kind, response=self.head.response(status, self.items, **options))

    def text(self, piece: str) -> list[bytes]:
        """A piece of the text a model call streams: into the open message item."""
        frames = []
        if self._open is None:
            index = self._open = len(self.items)
            item = {**message_item(f"msg_{self.head.id}_{index}", ""), "content": []}
            item["status"] = "in_progress"
            self.items.append(item)
            self._text = ""
            frames.append(self.event("response.output_item.added", output_index=index, item=item))
            frames.append(self._content("response.content_part.added", index, part=_part("")))
        self._text += piece
        frames.append(self._content("response.output_text.delta", self._open, delta=piece))
        return frames

    def message(self, message: Message) -> list[bytes]:
        """A message the run sent: its text closes the streamed item (or is one whole), its
        tool calls are ``function_call`` items, a tool result a ``function_call_output``."""
        frames: list[bytes] = []
        if message.role == "tool":
            frames += self.close()
            if message.tool_call_id:
                frames += self._whole(function_call_output_item(message))
        elif message.role == "assistant":
            if message.text and self._open is None:
                frames += self.text(message.text)
            frames += self.close(message.text)
            for call in message.tool_calls:
                frames += self._call(call)
        return frames

    def close(self, text: str | None = None) -> list[bytes]:
        """Finish the open message item (with ``text`` as its final text, when given: the
        streamed text lacks what a model did not stream)."""
        index = self._open
        if index is None:
            return []
        self._open = None
        final = self._text if text is None else text
        done = message_item(self.items[index]["id"], final)
        self.items[index] = done
        return [
            self._content("response.output_text.done", index, text=final),
            self._content("response.content_part.done", index, part=_part(final)),
            self.event("response.output_item.done", output_index=index, item=done),
        ]

    def _call(self, call: ToolCall) -> list[bytes]:
        item = function_call_item(call)
        index = len(self.items)
        self.items.append(item)
        added = {**item, "arguments": "", "status": "in_progress"}
        arguments = {"item_id": item["id"], "output_index": index}
        return [
            self.event("response.output_item.added", output_index=index, item=added),
            self.event(
                "response.function_call_arguments.delta", **arguments, delta=item["arguments"]
            ),
            self.event(
                "response.function_call_arguments.done", **arguments, arguments=item["arguments"]
            ),
            self.event("response.output_item.done", output_index=index, item=item),
        ]

    def _whole(self, item: dict[str, Any]) -> list[bytes]:
        index = len(self.items)
        self.items.append(item)
        return [
            self.event("response.output_item.added", output_index=index, item=item),
            self.event("response.output_item.done", output_index=index, item=item),
        ]

    def _content(self, kind: str, index: int, **fields: Any) -> bytes:
        """An event about the text of the message item at ``index``."""
        if kind.startswith("response.output_text."):
            fields["logprobs"] = []
        return self.event(
            kind, item_id=self.items[index]["id"], output_index=index, content_index=0, **fields
        )


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


async def _events(
    app: App, run_id: str, answer: RunAnswer | None, head: ResponseHead
) -> AsyncGenerator[bytes, None]:
    """The SSE events of a streamed response: ``response.created`` and ``in_progress``, then
    the output items as the run makes them (text as the model streams it), then
    ``response.completed`` with the whole response, or ``response.failed`` with its error.
    A retry, which has no ``answer`` to follow, gets the recorded items at once."""
    out = _Emitter(head)
    yield out.lifecycle("response.created", "in_progress")
    yield out.lifecycle("response.in_progress", "in_progress")
    if answer is not None:
        async for step in answer.steps():
            if isinstance(step, str):
                frames = out.text(step)
            elif isinstance(step, MessageSentEvent):
                frames = out.message(step.data.message)
            else:
                continue
            for frame in frames:
                yield frame
        if answer.closed:
            return  # the client left
    result = await app.runtime.outcome(run_id)
    if answer is None:
        for message in await _sent(app, run_id):
            for frame in out.message(message):
                yield frame
    for frame in out.close():
        yield frame
    if result.ok:
        yield out.lifecycle("response.completed", "completed", usage=result.usage)
        return
    status = "cancelled" if result.status == "cancelled" else "failed"
    yield out.lifecycle("response.failed", status, usage=result.usage, error=_error_of(result))


def _error_of(result: RunResult) -> dict[str, Any]:
    """The ``error`` of a response whose run did not complete (OpenAI's ``server_error``
    code, with PromptLine's code and details beside it)."""
    _, body = failure(result)
    error: Mapping[str, Any] = body["error"]
    return {
        "code": "server_error",
        "message": error["message"],
        "type": error["type"],
        "param": None,
        "details": {"code": error["code"], **error.get("details", {})},
    }
