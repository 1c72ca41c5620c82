"""The HTTP channel: a message routed by ``channels.routes`` (to an agent, and a session per
thread, user or channel) instead of to a session named by the caller; the answer is the
response."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from promptline.channels.base import InboundMessage
from promptline.channels.hub import ChannelHub
from promptline.gateway.deps import CallerDep, gateway, needs

router = APIRouter(prefix="/v1/channels", tags=["channels"])


class ChannelMessage(BaseModel):
    """A message on the HTTP channel."""

    text: str = Field(min_length=1, max_length=200_000, description="What the user says.")
    thread_id: str | None = Field(
        None, max_length=255, description="The conversation within the caller's messages."
    )


class ChannelAnswer(BaseModel):
    """The answer, and where the conversation is kept."""

    text: str
    error: bool
    session_id: str | None
    run_id: str | None
    thread_id: str | None


def _hub(request: Request) -> ChannelHub:
    hub: ChannelHub | None = getattr(request.app.state, "channel_hub", None)
    if hub is None:
        hub = request.app.state.channel_hub = ChannelHub(gateway(request).app)
    return hub


@router.post(
    "/http/messages",
    dependencies=[needs("channels:write")],
    summary="Send a message on the HTTP channel",
    response_model=None,
)
async def send(body: ChannelMessage, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Route the message (channel ``http``, the caller as the user, ``thread_id``) to its
    agent and session, run the agent, and answer with its reply. A failure is an answer
    with ``error: true`` that says what went wrong. While ``channels.http.enabled`` is off
    the answer is 404 ``channel_off``."""
    gateway(request).app.settings.channels.require_on("http")
    message = InboundMessage.of(
        "http", caller.user_id, body.text, thread_id=body.thread_id, tenant_id=caller.tenant_id
    )
    answer = await _hub(request).handle(message)
    return ChannelAnswer(
        text=answer.text,
        error=answer.error,
        session_id=answer.session_id,
        run_id=answer.run_id,
        thread_id=answer.thread_id,
    ).model_dump()
