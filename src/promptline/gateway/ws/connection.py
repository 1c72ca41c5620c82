"""One control-plane connection from handshake to close: requests are read and answered in
the order they arrive, every frame out goes through a bounded send queue, and subscriptions
end with the socket.

Close codes: 4401 unauthorized, 4403 origin refused, 4404 the WebSocket channel is off
(``channels.websocket.enabled``), 4429 rate limited at the handshake,
1009 frame too big (the server enforces ``gateway.ws_max_frame_bytes`` before the app reads
the frame), 1013 slow client (more than ``gateway.ws_send_queue`` live events waited for it
beyond a full send queue: reconnect and resubscribe with the last ``seq`` received), 1011 a
subscription failed on the server's side (resubscribe likewise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from promptline.gateway.deps import Gateway, gateway, source_of
from promptline.gateway.ws.context import MethodContext
from promptline.gateway.ws.dispatcher import Dispatcher
from promptline.gateway.ws.handshake import Refusal, admit, selected_subprotocol
from promptline.gateway.ws.outbox import Outbox
from promptline.gateway.ws.protocol import dumps, error_frame, frame_problem
from promptline.gateway.ws.subscriptions import Subscriptions
from promptline.security.auth import Caller

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_SLOW_CLIENT",
    "CLOSE_TOO_BIG",
    "Connection",
    "serve_connection",
]

CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SLOW_CLIENT = 1013
CLOSE_WAIT_SECS = 10.0
"""How long a close frame may wait for a client that reads nothing before the socket is
left to the server to drop."""

_log = logging.getLogger("promptline.gateway.ws")


async def serve_connection(websocket: WebSocket) -> None:
    """Serve a WebSocket on ``/v1/ws`` until either side closes it."""
    admitted = await admit(websocket)
    await websocket.accept(subprotocol=selected_subprotocol(websocket))
    if isinstance(admitted, Refusal):
        # Accepted first so the client reads the close code (a refused handshake is a bare
        # HTTP 403 to it).
        await websocket.close(admitted.code, admitted.reason)
        return
    await Connection(websocket, gateway(websocket), admitted).run()


class Connection:
    """An accepted connection of ``caller``."""

    def __init__(self, websocket: WebSocket, state: Gateway, caller: Caller) -> None:
        settings = state.app.settings.gateway
        self._websocket = websocket
        self._state = state
        self._caller = caller
        self._max_frame = settings.ws_max_frame_bytes
        self._outbox = Outbox(settings.ws_send_queue)
        self._subscriptions = Subscriptions(
            state.app.bus,
            self.send,
            max_queue=settings.ws_send_queue,
            on_lag=self._lagged,
            on_error=self._failed,
        )
        self._dispatcher = Dispatcher(
            MethodContext(state.app, caller, self._subscriptions, source_of(websocket)),
            charge=self._charge,
        )
        self._closing: tuple[int, str] | None = None
        self._stop = asyncio.Event()

    async def send(self, frame: str) -> bool:
        """Queue a frame for the client, waiting while the send queue is full; False when
        it was not taken (the connection is closing)."""
        if self._stop.is_set():
            return False
        return await self._outbox.put(frame)

    def _lagged(self, sub_id: str, last_seq: int | None) -> None:
        self._close(
            CLOSE_SLOW_CLIENT,
            f"slow client: {sub_id} fell behind; resubscribe from the last seq received",
        )

    def _failed(self, sub_id: str) -> None:
        self._close(CLOSE_INTERNAL_ERROR, f"{sub_id} failed; resubscribe from the last seq")

    async def run(self) -> None:
        """Read, answer, forward events; then release everything the connection holds."""
        writer = asyncio.get_running_loop().create_task(self._write(), name="ws writer")
        try:
            await self._read()
        finally:
            self._halt()
            await self._subscriptions.close_all()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if self._closing is not None:
                await self._send_close(*self._closing)

    async def _read(self) -> None:
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                receiving = asyncio.ensure_future(self._websocket.receive())
                await asyncio.wait({receiving, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receiving
                    return
                message = receiving.result()
                if message["type"] == "websocket.disconnect":
                    return
                data = _data_of(message)
                if len(data) > self._max_frame:
                    # The server refuses such frames itself (uvicorn's ws_max_size); this
                    # holds the limit under any other server too.
                    self._close(CLOSE_TOO_BIG, "frame too big")
                    return
                problem = frame_problem(data)
                if problem is not None:
                    await self.send(dumps(error_frame(None, problem)))
                    continue
                answer = await self._dispatcher.handle(data)
                if answer is not None:
                    await self.send(dumps(answer))
        finally:
            stopped.cancel()

    async def _write(self) -> None:
        while True:
            frame = await self._outbox.get()
            if frame is None:
                return
            try:
                await self._websocket.send_text(frame)
            except Exception:  # the client is gone; the read loop hears of it too
                self._halt()
                return

    def _close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = (code, reason)
        self._halt()

    def _halt(self) -> None:
        # Whatever waits to send gives up at once: nothing more goes out but a close frame.
        self._stop.set()
        self._outbox.close()

    async def _send_close(self, code: int, reason: str) -> None:
        ws = self._websocket
        if WebSocketState.DISCONNECTED in (ws.application_state, ws.client_state):
            return
        try:
            # A client that reads nothing may never take the close frame: give up after a
            # while, and the server drops the socket once the app is done with it.
            await asyncio.wait_for(self._websocket.close(code, reason), CLOSE_WAIT_SECS)
        except (TimeoutError, RuntimeError, OSError):
            pass
        except Exception:
            _log.debug("closing a control-plane connection failed", exc_info=True)

    async def _charge(self) -> None:
        if self._state.auth:
            self._state.limiter.take_for(self._caller)
        await self._state.app.quotas.take_request(self._caller)


def _data_of(message: Any) -> str | bytes:
    # A binary frame is read as UTF-8 JSON too (invalid UTF-8 is a parse error).
    text = message.get("text")
    if text is not None:
        return str(text)
    return bytes(message.get("bytes") or b"")
