"""A connection's event subscriptions: each follows one session's stream on the bus from a
cursor, and forwards its events as ``event`` notifications, in seq order, none twice.

A feed waits for room in the connection's send queue; meanwhile the bus keeps at most
``max_queue`` live events for it. A client that lets more pile up is too slow: the bus drops
the feed, and ``on_lag`` hears of it (the connection then closes, and the client resumes from
the last seq it received). Catching up from a cursor never counts as lagging: the bus reads
the store at the pace the client takes events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from promptline.core.errors import InvalidInputError, NotFoundError, SubscriberLagged
from promptline.core.events import encode_event
from promptline.events.protocols import EventBus, EventFilter, Subscription
from promptline.gateway.ws.protocol import dumps, notification

__all__ = ["MAX_SUBSCRIPTIONS", "Subscriptions"]

MAX_SUBSCRIPTIONS = 100
"""Subscriptions one connection may hold at once."""

_log = logging.getLogger("promptline.gateway.ws")


@dataclass
class _Feed:
    session_id: str
    task: asyncio.Task[None]


class Subscriptions:
    """The subscriptions of one connection. ``send`` queues a frame for the client (waiting
    for room) and says whether it was taken (not: the connection is closing, and the feed
    stops). ``on_lag(subscription, last_seq)`` is told when a feed fell behind,
    ``on_error(subscription)`` when one failed (a bug or a broken store: it is logged)."""

    def __init__(
        self,
        bus: EventBus,
        send: Callable[[str], Awaitable[bool]],
        *,
        max_queue: int,
        on_lag: Callable[[str, int | None], None],
        on_error: Callable[[str], None],
    ) -> None:
        self._bus = bus
        self._send = send
        self._max_queue = max_queue
        self._on_lag = on_lag
        self._on_error = on_error
        self._feeds: dict[str, _Feed] = {}
        self._count = 0

    def __len__(self) -> int:
        return len(self._feeds)

    def open(self, session_id: str, from_seq: int | None) -> str:
        """Start following ``session_id`` (whose visibility the caller checked) after
        ``from_seq`` (None: from now on); the new subscription's id.

        The bus subscription is attached before this returns, so nothing published after the
        call is missed; its first notification is sent after whatever the caller queues now
        (the answer to ``events.subscribe``).
        """
        if len(self._feeds) >= MAX_SUBSCRIPTIONS:
            raise InvalidInputError(
                f"a connection holds at most {MAX_SUBSCRIPTIONS} subscriptions",
                hint="unsubscribe from streams you no longer follow",
            )
        self._count += 1
        sub_id = f"sub_{self._count}"
        source = self._bus.subscribe(
            EventFilter(stream=session_id), from_seq=from_seq, max_queue=self._max_queue
        )
        task = asyncio.get_running_loop().create_task(
            self._forward(sub_id, session_id, source), name=f"ws {sub_id} {session_id}"
        )
        self._feeds[sub_id] = _Feed(session_id, task)
        return sub_id

    async def close(self, sub_id: str) -> str:
        """Stop a subscription; returns the session it followed. `NotFoundError` for an id
        this connection does not hold."""
        feed = self._feeds.pop(sub_id, None)
        if feed is None:
            raise NotFoundError(
                f"no subscription {sub_id!r} on this connection",
                hint="use the id events.subscribe returned",
                subscription=sub_id,
            )
        await _stop(feed.task)
        return feed.session_id

    async def close_all(self) -> None:
        """Stop every subscription (the socket is closing)."""
        feeds = list(self._feeds.values())
        self._feeds.clear()
        for feed in feeds:
            await _stop(feed.task)

    async def _forward(self, sub_id: str, session_id: str, source: Subscription) -> None:
        # Every frame is this subscription's head, the event's own JSON as it is (not parsed
        # and written again, nor put in a dict to be encoded), and the closing braces: the
        # bytes `dumps(notification("event", {...}))` would give.
        head = dumps(notification("event", {"subscription": sub_id, "event": None}))
        head = head.removesuffix("null}}")
        try:
            async for event in source:
                frame = f"{head}{encode_event(event).decode()}}}}}"
                if not await self._send(frame):
                    return
        except SubscriberLagged:
            self._on_lag(sub_id, source.last_seq)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("event subscription %s of session %s failed", sub_id, session_id)
            self._on_error(sub_id)
        finally:
            await source.close()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
