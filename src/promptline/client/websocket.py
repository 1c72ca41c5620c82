"""The WebSocket control plane (JSON-RPC 2.0 over ``/v1/ws``): requests and their answers,
event subscriptions, and reconnection with backoff that resumes every subscription from the
last seq it delivered."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from promptline.client.backoff import Backoff
from promptline.client.errors import ConnectionLostError, error_from_body, error_from_rpc
from promptline.client.http import user_agent
from promptline.client.models import (
    ApprovalOutcome,
    CatalogueModel,
    RunStatus,
    Session,
    StartedRun,
    StateEntry,
    Tool,
    items_of,
)
from promptline.client.run_stream import RunStream
from promptline.client.subscription import MAX_BUFFER, Subscription
from promptline.core.errors import (
    AuthenticationError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PromptLineError,
    RateLimitedError,
    ServiceUnavailableError,
)
from promptline.core.events import Event, parse_event

if TYPE_CHECKING:
    from types import TracebackType

    from promptline.client.models import GrantScope, Mode, QueueMode, Scope

__all__ = ["WebSocketConnection"]

_log = logging.getLogger("promptline.client")

Head = Callable[[str], Awaitable[int]]
"""The seq of a session's latest event (read over REST): where a subscription "from now on"
starts, so that it can be resumed even before its first event."""

ORPHANS = 1000
"""Notifications kept for a subscription id not known yet (they may overtake its answer)."""


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    on_result: Callable[[Any], None] | None = None


class WebSocketConnection:
    """One WebSocket to the gateway. Open it with ``async with`` (or `open`).

    When the connection drops (not closed by us, nor refused for the key or the origin), it
    reconnects with ``backoff`` and resubscribes every open `Subscription` from the last
    seq it received: a subscriber sees neither a gap nor a duplicate. Requests in flight at the
    drop raise `ConnectionLostError` (they may or may not have been carried out); requests
    made while reconnecting wait for the new connection.

    ``compression`` asks for permessage-deflate (off by default: it costs the gateway about
    35 KiB more per connection); ``max_buffer`` bounds the events a subscription holds unread.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        backoff: Backoff | None = None,
        open_timeout: float = 10.0,
        request_timeout: float | None = 60.0,
        head: Head | None = None,
        compression: bool = False,
        max_buffer: int = MAX_BUFFER,
    ) -> None:
        self.url = url
        self._headers = dict(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.backoff = backoff or Backoff()
        self.open_timeout = open_timeout
        self.request_timeout = request_timeout
        self._head = head
        self._compression = compression
        self._max_buffer = max_buffer
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._subscriptions: set[Subscription] = set()
        self._by_server_id: dict[str, Subscription] = {}
        self._orphans: dict[str, list[Event]] = {}
        self._failure: PromptLineError | None = None
        self._closing = False
        self.reconnections = 0
        """How many times the connection was re-established after a drop."""

    # -- opening and closing ---------------------------------------------------------------

    async def open(self) -> WebSocketConnection:
        """Connect (errors such as a refused key are raised here, not retried)."""
        if self._ws is None:
            await self._connect()
        return self

    async def __aenter__(self) -> WebSocketConnection:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True while a WebSocket is open (False while reconnecting)."""
        return self._ready.is_set()

    async def close(self) -> None:
        """Close the connection; open subscriptions end, requests in flight fail."""
        if self._closing:
            return
        self._closing = True
        self._ready.clear()
        tasks = [t for t in (self._reconnector,) if t is not None]
        for task in tasks:
            task.cancel()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._fail_pending(ConnectionLostError("the connection was closed by the client"))
        for sub in list(self._subscriptions):
            sub.end()
        self._subscriptions.clear()
        self._by_server_id.clear()

    async def drop(self) -> None:
        """Cut the current WebSocket as if the network had (the connection then reconnects
        and resumes): for tests and for trying a deployment's resilience."""
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    async def _connect(self) -> None:
        try:
            ws = await connect(
                self.url,
                additional_headers=self._headers,
                open_timeout=self.open_timeout,
                max_size=None,
                compression="deflate" if self._compression else None,
                user_agent_header=user_agent(),
            )
        except InvalidStatus as exc:
            response = exc.response
            try:
                body = orjson.loads(response.body) if response.body else None
            except orjson.JSONDecodeError:
                body = None
            raise error_from_body(
                response.status_code,
                body,
                retry_after=response.headers.get("Retry-After"),
                fallback=f"the WebSocket handshake at {self.url} was refused "
                f"(HTTP {response.status_code})",
            ) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ServiceUnavailableError(
                f"cannot open a WebSocket to {self.url}: {exc or type(exc).__name__}",
                hint="is `promptline serve` running there, and is the URL right?",
            ) from exc
        self._ws = ws
        self._ready.set()
        self._reader = asyncio.get_running_loop().create_task(self._read(ws))

    # -- requests ----------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - it also bounds a reconnection
        on_result: Callable[[Any], None] | None = None,
    ) -> Any:
        """Send a JSON-RPC request; its result, or its error raised as a typed exception.
        ``timeout`` (default: ``request_timeout``) bounds the wait for the answer, and for a
        connection while reconnecting."""
        limit = self.request_timeout if timeout is None else timeout
        async with asyncio.timeout(limit):
            ws = await self._connection()
            request_id = next(self._ids)
            frame = {"jsonrpc": "2.0", "id": request_id, "method": method}
            if params is not None:
                frame["params"] = dict(params)
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending[request_id] = _Pending(future, on_result)
            try:
                await ws.send(orjson.dumps(frame).decode())
            except ConnectionClosed as closed:
                self._pending.pop(request_id, None)
                if future.done():  # the reader heard of the close first, and said why
                    raise future.exception() or ConnectionLostError("closed") from None
                fatal = _fatal(closed.rcvd.code if closed.rcvd is not None else None)
                raise fatal or ConnectionLostError(
                    f"the connection dropped while sending {method}",
                    hint="it was not carried out; retry",
                ) from None
            try:
                return await future
            finally:
                self._pending.pop(request_id, None)

    async def _connection(self) -> ClientConnection:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closing:
                raise ConnectionLostError("the connection is closed", hint="open a new one")
            ws = self._ws
            if ws is None:
                raise ConnectionLostError("the connection is not open", hint="call open() first")
            if self._ready.is_set():
                return ws
            waiter = asyncio.ensure_future(self._ready.wait())
            try:
                reconnector = self._reconnector
                others = {reconnector} if reconnector is not None else set()
                await asyncio.wait({waiter, *others}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if not self._ready.is_set() and self._failure is None and self._reconnector is None:
                raise ConnectionLostError("the connection could not be re-established")

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(self, session_id: str, *, from_seq: int | None = None) -> Subscription:
        """The session's events after ``from_seq`` (its seq). Iterate the result; close it
        (or use ``async with``) when done.

        None means from now on: the connection reads the session's latest seq first (over
        REST), so that a drop before the first event is resumed from there too. That seq
        comes from the session's record, which may be a few events behind its stream while
        a run writes: such a subscription may start with the last few events before it.
        """
        if from_seq is None and self._head is not None:
            from_seq = await self._head(session_id)
        sub = Subscription(self, session_id, from_seq=from_seq, max_buffer=self._max_buffer)
        while True:
            try:
                await self._subscribe(sub)
                return sub
            except ConnectionLostError:
                if self._failure is not None or self._closing:
                    raise
                # Dropped before the answer: ask again once the connection is back.

    async def _subscribe(self, sub: Subscription) -> None:
        # resume_seq is None only for a live subscription of a connection that cannot read
        # the session's head: resubscribed after a drop, it goes on from then.
        from_seq = sub.resume_seq

        def registered(result: Any) -> None:
            server_id = str(result.get("subscription") if isinstance(result, dict) else result)
            sub.server_id = server_id
            self._by_server_id[server_id] = sub
            self._subscriptions.add(sub)
            for event in self._orphans.pop(server_id, []):
                sub.offer(event)

        await self.call(
            "events.subscribe",
            _params(session_id=sub.session_id, from_seq=from_seq),
            on_result=registered,
        )

    async def resubscribe(self, sub: Subscription) -> None:
        """Subscribe ``sub`` again after the last event it received (it fell behind, or saw
        a gap)."""
        await self._forget(sub)
        try:
            await self._subscribe(sub)
        except ConnectionLostError:
            pass  # the reconnection resubscribes it
        except PromptLineError as exc:
            sub.fail(exc)

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop ``sub`` (called by `Subscription.close`)."""
        self._subscriptions.discard(sub)
        await self._forget(sub)

    async def _forget(self, sub: Subscription) -> None:
        server_id, sub.server_id = sub.server_id, None
        if server_id is None:
            return
        self._by_server_id.pop(server_id, None)
        if self._ready.is_set() and not self._closing:
            with contextlib.suppress(PromptLineError, TimeoutError):
                await self.call("events.unsubscribe", {"subscription": server_id}, timeout=5.0)

    # -- reading -----------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self._dispatch(raw)
        except ConnectionClosed:
            pass
        except Exception:  # a bug here must not leave requests hanging
            _log.exception("the WebSocket reader failed")
            with contextlib.suppress(Exception):
                await ws.close()
        finally:
            if ws is self._ws:
                self._lost(ws.close_code)

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            _log.warning("the gateway sent a frame that is not JSON; ignored")
            return
        if not isinstance(message, dict):
            return
        if message.get("method") == "event":
            self._deliver(message.get("params"))
            return
        request_id = message.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is None or pending.future.done():
            return
        if "error" in message:
            pending.future.set_exception(error_from_rpc(message["error"]))
            return
        result = message.get("result")
        if pending.on_result is not None:
            try:
                pending.on_result(result)
            except Exception as exc:
                pending.future.set_exception(exc)
                return
        pending.future.set_result(result)

    def _deliver(self, params: Any) -> None:
        if not isinstance(params, dict):
            return
        server_id = str(params.get("subscription"))
        try:
            event = parse_event(params.get("event"), lenient=True)
        except PromptLineError:
            _log.warning("the gateway sent an event that is not valid; ignored")
            return
        sub = self._by_server_id.get(server_id)
        if sub is not None:
            sub.offer(event)
            return
        kept = self._orphans.setdefault(server_id, [])
        if sum(len(v) for v in self._orphans.values()) < ORPHANS:
            kept.append(event)

    # -- losing the connection, and coming back ----------------------------------------------

    def _lost(self, code: int | None) -> None:
        self._ready.clear()
        self._by_server_id.clear()
        self._orphans.clear()
        for sub in self._subscriptions:
            sub.server_id = None
        if self._closing:
            return
        fatal = _fatal(code)
        if fatal is not None:
            self._give_up(fatal)
            return
        if code == 4429:
            error: PromptLineError = RateLimitedError(
                "the gateway refused the connection: too many requests for this key",
                retry_after=self.backoff.initial,
            )
        elif code == 1009:
            error = PayloadTooLargeError(
                "the server closed the connection: a frame was too big",
                hint="send less at once (see gateway.ws_max_frame_bytes)",
            )
        else:
            error = ConnectionLostError(
                f"the connection dropped (close code {code}) while waiting for the answer",
                hint="the request may or may not have been carried out; check, then retry",
            )
        self._fail_pending(error)
        if self._reconnector is None:
            self._reconnector = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        last_error: PromptLineError | None = None
        try:
            for delay in self.backoff.delays():
                await asyncio.sleep(delay)
                try:
                    await self._connect()
                except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
                    self._give_up(exc)  # refused, or no WebSocket endpoint there any more
                    return
                except PromptLineError as exc:
                    last_error = exc
                    continue
                try:
                    await self._resubscribe_all()
                except PromptLineError as exc:
                    # Dropped again (or the head could not be read): start over.
                    last_error = exc
                    ws = self._ws
                    if ws is not None:
                        with contextlib.suppress(Exception):
                            await ws.close()
                    continue
                self.reconnections += 1
                return
            self._give_up(
                ConnectionLostError(
                    f"the connection to {self.url} dropped and could not be re-established "
                    f"after {self.backoff.attempts} attempts"
                    + (f": {last_error.message}" if last_error else ""),
                    hint="check that the gateway is up, then open a new connection",
                )
            )
        finally:
            self._reconnector = None

    async def _resubscribe_all(self) -> None:
        for sub in list(self._subscriptions):
            if not sub.active or sub.server_id is not None:
                continue
            try:
                await self._subscribe(sub)
            except (ConnectionLostError, ServiceUnavailableError):
                raise
            except PromptLineError as exc:  # its session is gone, or no longer visible
                self._subscriptions.discard(sub)
                sub.fail(exc)

    def _give_up(self, error: PromptLineError) -> None:
        self._failure = error
        self._ready.clear()
        self._fail_pending(error)
        for sub in list(self._subscriptions):
            sub.fail(error)
        self._subscriptions.clear()

    def _fail_pending(self, error: PromptLineError) -> None:
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(error)

    # -- the methods -------------------------------------------------------------------------

    async def ping(self) -> str:
        """``"pong"`` when the gateway answers."""
        return str(await self.call("ping"))

    async def create_session(
        self,
        *,
        agent: str | None = None,
        channel: str | None = None,
        context: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl_secs: float | None = None,
    ) -> Session:
        """A new session of the caller (``channel`` defaults to ``websocket`` on the server)."""
        params = _params(
            agent=agent, channel=channel, context=context, metadata=metadata, ttl_secs=ttl_secs
        )
        return Session.model_validate(await self.call("session.create", params))

    async def send(
        self,
        session_id: str,
        content: str,
        *,
        agent: str | None = None,
        model: str | None = None,
        mode: Mode | None = None,
        queue_mode: QueueMode | None = None,
    ) -> StartedRun:
        """Add a user message to the session and start the run that answers it."""
        params = _params(
            session_id=session_id,
            content=content,
            agent=agent,
            model=model,
            mode=mode,
            queue_mode=queue_mode,
        )
        return StartedRun.model_validate(await self.call("session.send", params))

    def stream(
        self,
        session_id: str,
        content: str,
        *,
        agent: str | None = None,
        model: str | None = None,
        mode: Mode | None = None,
        queue_mode: QueueMode | None = None,
        from_seq: int | None = None,
    ) -> RunStream:
        """Send a message and read its run's events as they happen (see `RunStream`).
        ``from_seq`` (the session's ``last_seq``, when known) makes the stream resumable even
        if the connection drops before the run's first event."""
        subscription: Subscription | None = None

        async def opener() -> tuple[AsyncIterator[Event], str | None]:
            nonlocal subscription
            subscription = await self.subscribe(session_id, from_seq=from_seq)
            try:
                started = await self.send(
                    session_id, content, agent=agent, model=model, mode=mode, queue_mode=queue_mode
                )
            except BaseException:
                await subscription.close()
                raise
            return subscription, started.run_id

        async def close() -> None:
            if subscription is not None:
                await subscription.close()

        return RunStream(opener, session_id=session_id, cancel=self.cancel_run, close=close)

    async def cancel_run(self, run_id: str) -> RunStatus:
        """Cancel a run."""
        return _run_status(run_id, await self.call("run.cancel", {"run_id": run_id}))

    async def pause_run(self, run_id: str) -> RunStatus:
        """Pause a run at its next safe point."""
        return _run_status(run_id, await self.call("run.pause", {"run_id": run_id}))

    async def resume_run(self, run_id: str) -> RunStatus:
        """Resume a paused run."""
        return _run_status(run_id, await self.call("run.resume", {"run_id": run_id}))

    async def respond(
        self,
        request_id: str,
        *,
        approve: bool,
        scope: GrantScope = "once",
        reason: str | None = None,
        content: dict[str, Any] | None = None,
    ) -> ApprovalOutcome:
        """Answer a permission request (``scope``: once, session or always; ``content``:
        the answer to a question, an MCP server's elicitation)."""
        params = _params(
            request_id=request_id, approve=approve, scope=scope, reason=reason, content=content
        )
        result = await self.call("permission.respond", params)
        return ApprovalOutcome.model_validate(result if isinstance(result, dict) else {})

    async def get_state(
        self, scope: Scope, key: str, *, session_id: str | None = None
    ) -> StateEntry:
        """The value at ``key`` in ``scope`` and its version; `NotFoundError` when none."""
        result = await self.call("state.get", _params(scope=scope, key=key, session_id=session_id))
        return StateEntry.model_validate(result)

    async def set_state(
        self,
        scope: Scope,
        key: str,
        value: Any,
        *,
        expected_version: int | None = None,
        session_id: str | None = None,
    ) -> StateEntry:
        """Store ``value`` at ``key`` in ``scope`` (only over ``expected_version``, when
        given: `ConflictError` otherwise)."""
        params = _params(
            scope=scope, key=key, session_id=session_id, expected_version=expected_version
        )
        params["value"] = value
        return StateEntry.model_validate(await self.call("state.set", params))

    async def list_tools(self) -> list[Tool]:
        """The registered tools."""
        return [Tool.model_validate(t) for t in items_of(await self.call("tools.list"))]

    async def list_models(self) -> list[CatalogueModel]:
        """The model catalogue: capabilities, prices, and whether each is configured."""
        return [CatalogueModel.model_validate(m) for m in items_of(await self.call("models.list"))]


def _params(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _run_status(run_id: str, result: Any) -> RunStatus:
    if isinstance(result, dict):
        return RunStatus.model_validate({"run_id": run_id, **result})
    return RunStatus(run_id=run_id, status=str(result))


def _fatal(code: int | None) -> PromptLineError | None:
    if code == 4401:
        return AuthenticationError(
            "the gateway closed the WebSocket: the API key was refused",
            hint="check the key (`promptline keys list`), or make one with `promptline keys "
            "create --user admin --role admin` on the gateway's machine (its first start keeps "
            "an admin key in admin.key in its home folder)",
        )
    if code == 4403:
        return PermissionDeniedError(
            "the gateway closed the WebSocket: this origin is not allowed",
            hint="add it to gateway.allowed_origins",
        )
    return None
