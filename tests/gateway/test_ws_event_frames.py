"""A subscription's event notification: exactly the JSON-RPC frame the protocol's encoder
would write, the event's stored JSON inside it as it is, stored events and live deltas alike."""

from __future__ import annotations

import asyncio

import orjson

from promptline.core.events import (
    ErrorData,
    ErrorEvent,
    LlmDelta,
    LlmDeltaEvent,
    encode_event,
)
from promptline.events.bus import InProcessEventBus
from promptline.events.memory import InMemoryEventStore
from promptline.gateway.ws.protocol import dumps, notification
from promptline.gateway.ws.subscriptions import Subscriptions


async def test_an_event_notification_is_the_protocol_frame_with_the_events_own_json() -> None:
    bus = InProcessEventBus(InMemoryEventStore())
    sent: asyncio.Queue[str] = asyncio.Queue()

    async def send(frame: str) -> bool:
        await sent.put(frame)
        return True

    subs = Subscriptions(bus, send, max_queue=10, on_lag=lambda *_: None, on_error=lambda _: None)
    sub_id = subs.open("ses_1", None)
    stored = await bus.publish(
        ErrorEvent(session_id="ses_1", data=ErrorData(code="t", message='quote " and \\u00e9'))
    )
    live = await bus.publish_transient(
        LlmDeltaEvent(session_id="ses_1", data=LlmDelta(text="Hé \n"))
    )
    try:
        frames = [await asyncio.wait_for(sent.get(), 10) for _ in range(2)]
    finally:
        await subs.close_all()
        await bus.close()

    for frame, event in zip(frames, (stored, live), strict=True):
        expected = notification(
            "event", {"subscription": sub_id, "event": orjson.Fragment(encode_event(event))}
        )
        assert frame == dumps(expected)
        assert orjson.loads(frame)["params"]["event"] == orjson.loads(encode_event(event))
