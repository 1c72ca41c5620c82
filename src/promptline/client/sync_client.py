"""`PromptLine`: the same client for blocking code. It drives an `AsyncPromptLine` on an
event loop in a thread of its own, so both behave alike (errors, streams, resumption)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

from promptline.client.approvals import Approvals
from promptline.client.async_client import AsyncPromptLine
from promptline.client.catalog import Agents, Models, Tools
from promptline.client.events import Events
from promptline.client.http import DEFAULT_TIMEOUT
from promptline.client.portal import Portal
from promptline.client.runs import Runs
from promptline.client.sessions import Sessions
from promptline.client.state import State
from promptline.client.websocket import WebSocketConnection

if TYPE_CHECKING:
    from types import TracebackType

    import httpx

    from promptline.client.backoff import Backoff
    from promptline.client.run_stream import RunStream
    from promptline.client.subscription import Subscription
    from promptline.core.events import Event

__all__ = ["PromptLine", "SyncRunStream", "SyncSubscription", "SyncWebSocketConnection"]

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A")
T = TypeVar("T")


class _Blocking(Generic[A]):
    """The blocking face of one async namespace."""

    def __init__(self, portal: Portal, inner: A) -> None:
        self._portal = portal
        self._inner = inner


def _blocking(
    method: Callable[Concatenate[A, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[_Blocking[A], P], R]:
    """A method that runs the async ``method`` on the portal's loop and waits."""

    @functools.wraps(method)
    def call(self: _Blocking[A], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._portal.call(method(self._inner, *args, **kwargs))

    return call


def _described(
    call: Callable[..., Any], method: Callable[..., Any], returns: str, doc: str
) -> None:
    """Name ``call`` after the async ``method`` it drives, with the parameters of ``method``
    but its own return type and docstring (the async ones speak of ``async with``)."""
    functools.update_wrapper(call, method)
    call.__doc__ = doc
    call.__signature__ = inspect.signature(method).replace(  # type: ignore[attr-defined]
        return_annotation=returns
    )


def _iterating(
    method: Callable[Concatenate[A, P], AsyncIterator[T]], *, returns: str, doc: str
) -> Callable[Concatenate[_Blocking[A], P], Iterator[T]]:
    """A method that reads the async iterator of ``method`` one blocking step at a time."""

    def call(self: _Blocking[A], /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._portal.iterate(method(self._inner, *args, **kwargs))

    _described(call, method, returns, doc)
    return call


def _streaming(
    method: Callable[Concatenate[A, P], RunStream], *, doc: str
) -> Callable[Concatenate[_Blocking[A], P], SyncRunStream]:
    """A method that returns the run stream of ``method``, for blocking code."""

    def call(self: _Blocking[A], /, *args: P.args, **kwargs: P.kwargs) -> SyncRunStream:
        return SyncRunStream(self._portal, method(self._inner, *args, **kwargs))

    _described(call, method, "SyncRunStream", doc)
    return call


def _subscribing(
    method: Callable[Concatenate[A, P], Coroutine[Any, Any, Subscription]], *, doc: str
) -> Callable[Concatenate[_Blocking[A], P], SyncSubscription]:
    """A method that opens the subscription of ``method`` on the portal's loop."""

    def call(self: _Blocking[A], /, *args: P.args, **kwargs: P.kwargs) -> SyncSubscription:
        return SyncSubscription(
            self._portal, self._portal.call(method(self._inner, *args, **kwargs))
        )

    _described(call, method, "SyncSubscription", doc)
    return call


class SyncRunStream:
    """A run's events for blocking code (see `RunStream`): ``with`` it, iterate it."""

    def __init__(self, portal: Portal, inner: RunStream) -> None:
        self._portal = portal
        self.inner = inner

    @property
    def run_id(self) -> str | None:
        return self.inner.run_id

    @property
    def final(self) -> Event | None:
        """The event that ended the run, once seen."""
        return self.inner.final

    @property
    def output(self) -> str:
        """The final answer's text ("" until the run completed)."""
        return self.inner.output

    def start(self) -> SyncRunStream:
        """Start the run (once)."""
        self._portal.call(self.inner.start())
        return self

    def __iter__(self) -> Iterator[Event]:
        return self._portal.iterate(self.inner)

    def text(self) -> Iterator[str]:
        """The answer's text as it is written."""
        return self._portal.iterate(self.inner.text())

    def wait(self) -> Event:
        """Read the rest of the run; the event that ended it."""
        return self._portal.call(self.inner.wait())

    def cancel(self, reason: str = "cancelled by the client") -> None:
        """Cancel the run in the gateway."""
        self._portal.call(self.inner.cancel(reason))

    def close(self) -> None:
        """Stop reading (the run goes on)."""
        self._portal.call(self.inner.aclose())

    def __enter__(self) -> SyncRunStream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncSubscription:
    """A session's events over the WebSocket for blocking code (see `Subscription`)."""

    def __init__(self, portal: Portal, inner: Subscription) -> None:
        self._portal = portal
        self.inner = inner

    @property
    def last_seq(self) -> int | None:
        return self.inner.last_seq

    def __iter__(self) -> Iterator[Event]:
        return self._portal.iterate(self.inner)

    def next(self, timeout: float | None = None) -> Event:
        """The next event, waiting at most ``timeout`` seconds (`TimeoutError` after)."""
        return self._portal.call(self.inner.next(timeout))

    def close(self) -> None:
        self._portal.call(self.inner.close())

    def __enter__(self) -> SyncSubscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncSessions(_Blocking[Sessions]):
    __doc__ = Sessions.__doc__
    create = _blocking(Sessions.create)
    list = _blocking(Sessions.list)
    get = _blocking(Sessions.get)
    set_sandbox = _blocking(Sessions.set_sandbox)
    delete = _blocking(Sessions.delete)
    export = _blocking(Sessions.export)
    import_ = _blocking(Sessions.import_)
    search = _blocking(Sessions.search)
    send = _blocking(Sessions.send)
    send_and_wait = _blocking(Sessions.send_and_wait)
    iterate = _iterating(
        Sessions.iterate,
        returns="Iterator[Session]",
        doc="Every session the caller may see, page after page.",
    )
    stream = _streaming(
        Sessions.stream,
        doc="Send a message and read its run's events as they happen (``with`` it).",
    )


class SyncRuns(_Blocking[Runs]):
    __doc__ = Runs.__doc__
    list = _blocking(Runs.list)
    get = _blocking(Runs.get)
    cancel = _blocking(Runs.cancel)
    pause = _blocking(Runs.pause)
    resume = _blocking(Runs.resume)


class SyncApprovals(_Blocking[Approvals]):
    __doc__ = Approvals.__doc__
    list = _blocking(Approvals.list)
    respond = _blocking(Approvals.respond)


class SyncEvents(_Blocking[Events]):
    __doc__ = Events.__doc__
    list = _blocking(Events.list)
    tail = _iterating(
        Events.tail,
        returns="Iterator[Event]",
        doc="The session's events after ``from_seq`` over SSE, reopened where it stopped.",
    )
    subscribe = _subscribing(
        Events.subscribe,
        doc="The session's events over the WebSocket, resumed after a disconnect.",
    )


class SyncState(_Blocking[State]):
    __doc__ = State.__doc__
    get = _blocking(State.get)
    set = _blocking(State.set)
    delete = _blocking(State.delete)


class SyncAgents(_Blocking[Agents]):
    __doc__ = Agents.__doc__
    list = _blocking(Agents.list)
    get = _blocking(Agents.get)


class SyncTools(_Blocking[Tools]):
    __doc__ = Tools.__doc__
    list = _blocking(Tools.list)


class SyncModels(_Blocking[Models]):
    __doc__ = Models.__doc__
    list = _blocking(Models.list)
    catalogue = _blocking(Models.catalogue)


class SyncWebSocketConnection(_Blocking[WebSocketConnection]):
    """The WebSocket control plane for blocking code (see `WebSocketConnection`)."""

    ping = _blocking(WebSocketConnection.ping)
    create_session = _blocking(WebSocketConnection.create_session)
    send = _blocking(WebSocketConnection.send)
    cancel_run = _blocking(WebSocketConnection.cancel_run)
    pause_run = _blocking(WebSocketConnection.pause_run)
    resume_run = _blocking(WebSocketConnection.resume_run)
    respond = _blocking(WebSocketConnection.respond)
    get_state = _blocking(WebSocketConnection.get_state)
    set_state = _blocking(WebSocketConnection.set_state)
    list_tools = _blocking(WebSocketConnection.list_tools)
    list_models = _blocking(WebSocketConnection.list_models)
    call = _blocking(WebSocketConnection.call)
    close = _blocking(WebSocketConnection.close)
    subscribe = _subscribing(
        WebSocketConnection.subscribe,
        doc="The session's events after ``from_seq``, resumed after a disconnect.",
    )
    stream = _streaming(
        WebSocketConnection.stream,
        doc="Send a message and read its run's events as they happen.",
    )

    def __enter__(self) -> SyncWebSocketConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PromptLine:
    """A blocking client of a PromptLine gateway, with the methods of `AsyncPromptLine`::

        with PromptLine("http://127.0.0.1:8080", api_key="pl_...") as client:
            session = client.sessions.create()
            with client.sessions.stream(session.id, "hello") as run:
                for text in run.text():
                    print(text, end="")

    It runs an event loop in a daemon thread; close the client (or use ``with``) to stop it.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        backoff: Backoff | None = None,
        websocket_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._portal = Portal()

        async def build() -> AsyncPromptLine:
            return AsyncPromptLine(
                base_url,
                api_key,
                timeout=timeout,
                backoff=backoff,
                websocket_url=websocket_url,
                headers=headers,
                transport=transport,
            )

        self.inner = self._portal.call(build())
        """The async client this one drives."""
        self.base_url = self.inner.base_url
        portal, inner = self._portal, self.inner
        self.sessions = SyncSessions(portal, inner.sessions)
        self.runs = SyncRuns(portal, inner.runs)
        self.approvals = SyncApprovals(portal, inner.approvals)
        self.events = SyncEvents(portal, inner.events)
        self.state = SyncState(portal, inner.state)
        self.agents = SyncAgents(portal, inner.agents)
        self.tools = SyncTools(portal, inner.tools)
        self.models = SyncModels(portal, inner.models)

    def websocket(self) -> SyncWebSocketConnection:
        """The client's shared WebSocket connection, opened on first use."""
        return SyncWebSocketConnection(self._portal, self._portal.call(self.inner.websocket()))

    def connect(self, *, compression: bool = False) -> SyncWebSocketConnection:
        """A new WebSocket connection of its own, open (close it, or use ``with``);
        ``compression`` as in `AsyncPromptLine.connect`."""
        connection = self.inner.connect(compression=compression)
        return SyncWebSocketConnection(self._portal, self._portal.call(connection.open()))

    def close(self) -> None:
        """Close the connections and stop the client's loop."""
        if self._portal.loop.is_closed():
            return
        try:
            self._portal.call(self.inner.aclose())
        finally:
            self._portal.close()

    def __enter__(self) -> PromptLine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PromptLine {self.base_url}>"
