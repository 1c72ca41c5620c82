"""What every channel adapter exchanges with the hub: inbound messages, normalised the same
way whatever the platform, and outbound answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from promptline.core.clock import utcnow
from promptline.core.errors import InvalidInputError
from promptline.sessions.models import DEFAULT_TENANT

__all__ = ["Channel", "InboundMessage", "MessageSink", "OutboundMessage", "normalise_text"]

MAX_TEXT_CHARS = 200_000


def normalise_text(text: Any) -> str:
    """The text of a message as every channel hands it on: a string, line ends ``\\n``,
    without surrounding blank space; `InvalidInputError` when there is nothing left."""
    if not isinstance(text, str):
        raise InvalidInputError(f"a message's text must be a string, not {type(text).__name__}")
    cleaned = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not cleaned:
        raise InvalidInputError("the message is empty")
    if len(cleaned) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"the message is longer than {MAX_TEXT_CHARS} characters")
    return cleaned


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message from a channel: who wrote it where (the platform's user and thread ids, in
    the platform's own terms), and what."""

    channel: str
    user_id: str
    text: str
    thread_id: str | None = None
    tenant_id: str = DEFAULT_TENANT
    message_id: str | None = None
    received_at: datetime = field(default_factory=utcnow)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, channel: str, user_id: str, text: Any, **fields: Any) -> InboundMessage:
        """A message with its text normalised (`normalise_text`)."""
        if not isinstance(user_id, str) or not user_id.strip():
            raise InvalidInputError("a message needs the id of the user who wrote it")
        return cls(channel=channel, user_id=user_id.strip(), text=normalise_text(text), **fields)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """An answer to deliver: where (channel, user, thread), what, and from which run."""

    channel: str
    user_id: str
    text: str
    thread_id: str | None = None
    session_id: str | None = None
    run_id: str | None = None
    in_reply_to: str | None = None
    error: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


MessageSink = Callable[[InboundMessage], Awaitable[OutboundMessage]]
"""What a channel hands its inbound messages to (the hub): it answers with the reply."""


class Channel(Protocol):
    """One platform. ``start`` connects and begins handing messages to ``sink``; ``deliver``
    sends an answer; ``stop`` disconnects. Adapters that answer within the request that
    brought the message (HTTP) deliver by returning the sink's answer instead."""

    @property
    def name(self) -> str:
        """The channel's name: ``cli``, ``http``, ``websocket``, ``slack``, ..."""
        ...

    async def start(self, sink: MessageSink) -> None:
        """Connect and hand every inbound message to ``sink``."""
        ...

    async def deliver(self, message: OutboundMessage) -> None:
        """Send ``message`` to its user and thread."""
        ...

    async def stop(self) -> None:
        """Disconnect; messages in flight are answered first."""
        ...
