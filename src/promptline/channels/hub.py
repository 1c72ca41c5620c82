"""The hub between channels and the runtime: routes an inbound message, opens (or finds) its
session, runs the agent and hands the answer back for delivery. A message is never dropped:
whatever fails becomes an answer that says so."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from promptline.channels.base import Channel, InboundMessage, MessageSink, OutboundMessage
from promptline.channels.router import ChannelRouter, Route
from promptline.core.errors import ConflictError, NotFoundError, PromptLineError
from promptline.sessions.models import Principal

if TYPE_CHECKING:
    from promptline.app import App

__all__ = ["ChannelHub"]

_log = logging.getLogger("promptline.channels")


class ChannelHub:
    """Connects channels to an app's runtime.

    ``handle`` answers one message (what HTTP-style channels call, and the sink every
    channel gets from `start`); `start` starts channel adapters and delivers their answers.
    """

    def __init__(self, app: App, router: ChannelRouter | None = None) -> None:
        self.app = app
        self.router = router or ChannelRouter(app.settings.channels.routes)
        self._channels: dict[str, Channel] = {}
        self._sessions_seen: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, message: InboundMessage) -> OutboundMessage:
        """Route ``message``, run the agent on its session, and return the answer."""
        route = self.router.route(message)
        principal = Principal(tenant_id=message.tenant_id, user_id=route.owner)
        try:
            await self._open(route, message, principal)
            result = await self.app.runtime.run(
                message.text, session_id=route.session_id, principal=principal, agent=route.agent
            )
        except PromptLineError as exc:
            return self._reply(message, route, f"Sorry, that failed: {exc.message}", error=True)
        except Exception:
            _log.exception("a %s message could not be answered", message.channel)
            return self._reply(message, route, "Sorry, that failed (it is logged).", error=True)
        if not result.ok:
            why = result.error.message if result.error else result.status
            return self._reply(
                message, route, f"Sorry, no answer: {why}", error=True, run_id=result.run_id
            )
        return self._reply(message, route, result.text, run_id=result.run_id)

    async def start(self, channels: Sequence[Channel]) -> None:
        """Start ``channels``; each inbound message is answered and delivered back."""
        for channel in channels:
            self._channels[channel.name] = channel
            await channel.start(self._sink_for(channel))

    async def stop(self) -> None:
        """Stop the channels, after the answers in flight are delivered."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=30)
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.stop()
        self._channels.clear()

    def _sink_for(self, channel: Channel) -> MessageSink:
        async def sink(message: InboundMessage) -> OutboundMessage:
            answer = await self.handle(message)
            try:
                await channel.deliver(answer)
            except Exception:
                _log.exception("delivering an answer on %s failed", channel.name)
            return answer

        return sink

    async def _open(self, route: Route, message: InboundMessage, principal: Principal) -> None:
        if route.session_id in self._sessions_seen:
            return
        sessions = self.app.sessions
        try:
            await sessions.get(route.session_id, principal, history_limit=0)
        except NotFoundError:
            # Made meanwhile by another message of the same conversation: that is fine.
            with contextlib.suppress(ConflictError):
                await sessions.create(
                    principal,
                    channel=message.channel,
                    session_id=route.session_id,
                    metadata={"thread_id": message.thread_id, "agent": route.agent},
                )
        self._sessions_seen.add(route.session_id)

    @staticmethod
    def _reply(
        message: InboundMessage,
        route: Route,
        text: str,
        *,
        error: bool = False,
        run_id: str | None = None,
    ) -> OutboundMessage:
        return OutboundMessage(
            channel=message.channel,
            user_id=message.user_id,
            text=text,
            thread_id=message.thread_id,
            session_id=route.session_id,
            run_id=run_id,
            in_reply_to=message.message_id,
            error=error,
        )
