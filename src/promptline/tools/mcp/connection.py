"""One configured MCP server: its connection (stdio, Streamable HTTP or SSE), kept open by a
task of its own, reconnected with capped exponential backoff when it is lost; the requests
the server makes of PromptLine during a call (sampling, elicitation, roots) go to `McpHost`.
A server over HTTP is reached only where the egress policy allows (`egress_http`)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

from promptline.core.errors import PromptLineError
from promptline.tools.base import ToolError
from promptline.tools.mcp.host import CallOrigin, McpHost, current_call, roots_of

if TYPE_CHECKING:
    import mcp_types
    from mcp import Client
    from mcp.client.session import ClientRequestContext
    from mcp.shared.dispatcher import ProgressFnT

    from promptline.config.plugins import McpServerSettings
    from promptline.security.egress import EgressPolicy, Resolver

__all__ = [
    "ConnectionState",
    "McpConnection",
    "McpServerUnavailable",
    "RemoteTool",
    "egress_refusal",
]

_log = logging.getLogger("promptline.mcp")


class _ParseErrorsReportedOnce(logging.Filter):
    """Drops the SDK's traceback for each stdout line of a server that is not JSON-RPC: the
    connection reports such a server once, by name, and opens it again."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to parse JSONRPC message")


logging.getLogger("mcp.client.stdio").addFilter(_ParseErrorsReportedOnce())

ConnectionState = Literal["idle", "connecting", "connected", "down", "closed"]
"""``idle``: a ``first_use`` server not connected yet; ``connecting``: starting or
initializing; ``connected``; ``down``: lost or never reached, waiting to try again;
``closed``: PromptLine is shutting down."""

BACKOFF_FIRST_SECS = 0.5
BACKOFF_MAX_SECS = 30.0
_MAX_LIST_PAGES = 100
_HTTP_TIMEOUT_SECS = 30.0
_HTTP_READ_TIMEOUT_SECS = 300.0
_STDERR_TAIL_CHARS = 600


def egress_refusal(server: str, url: str, why: str, entry: str) -> str:
    """What a server over HTTP the egress policy refuses is told: the server, its URL, why
    (the address and its kind) and the ``entry`` of ``security.egress_allow`` that allows it."""
    from promptline.security.egress import EGRESS_SETTING

    return (
        f"mcp_servers.{server}: {url} is refused: {why}; add "
        f'"{entry}" to {EGRESS_SETTING} to allow it'
    )


class McpServerUnavailable(ToolError):
    """The MCP server is not connected (never reached, lost, or reconnecting)."""

    code = "mcp_unavailable"


@dataclass(frozen=True, slots=True)
class RemoteTool:
    """A tool as an MCP server lists it (what is kept in the tool-list cache)."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    read_only_hint: bool | None = None
    destructive_hint: bool | None = None
    idempotent_hint: bool | None = None
    task_support: str | None = None
    """The tool's ``execution.taskSupport`` (2025-11-25): ``required`` means it only runs
    as a task, which PromptLine does not start, so such a tool is not offered."""

    @classmethod
    def of(cls, tool: mcp_types.Tool) -> RemoteTool:
        """The listing entry ``tool`` of the SDK."""
        hints = tool.annotations
        execution = tool.execution
        return cls(
            name=tool.name,
            description=tool.description or "",
            input_schema=dict(tool.input_schema),
            title=tool.title or (hints.title if hints else None),
            read_only_hint=hints.read_only_hint if hints else None,
            destructive_hint=hints.destructive_hint if hints else None,
            idempotent_hint=hints.idempotent_hint if hints else None,
            task_support=execution.task_support if execution else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (for the cache)."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "title": self.title,
            "read_only_hint": self.read_only_hint,
            "destructive_hint": self.destructive_hint,
            "idempotent_hint": self.idempotent_hint,
            "task_support": self.task_support,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RemoteTool:
        """The inverse of `to_dict`."""
        return cls(
            name=str(data["name"]),
            description=str(data.get("description") or ""),
            input_schema=dict(data.get("input_schema") or {}),
            title=data.get("title"),
            read_only_hint=data.get("read_only_hint"),
            destructive_hint=data.get("destructive_hint"),
            idempotent_hint=data.get("idempotent_hint"),
            task_support=data.get("task_support"),
        )


_T = TypeVar("_T")

ProgressCallback: TypeAlias = "ProgressFnT"
ToolsListener = Callable[["McpConnection", list[RemoteTool]], None]


class McpConnection:
    """The connection to one MCP server.

    A task of its own opens the SDK's ``Client`` (so the SDK's task groups are entered and
    left by the same task), lists the tools, hands them to ``on_tools``, and then waits until
    the connection is lost or closed. A lost connection (the process exited, the stream
    ended, the server wrote something that is not JSON-RPC) is opened again after
    ``backoff_first`` seconds, doubling up to ``backoff_max``; every attempt is logged.
    Calls from other tasks use the open client; a call while the server is down gets
    `McpServerUnavailable` at once.

    PromptLine declares roots (the workspaces of the calls in flight) to every server, and
    sampling and elicitation to servers connected once a `host` is set (`McpManager.bind`).

    A server over HTTP is reached only where ``egress`` allows (by default public addresses
    only; the app passes ``security.egress_allow``), its names looked up with ``resolver``
    (by default the system's): a refused one stays ``down`` with an error that names the
    address, its kind and the entry to add.
    """

    def __init__(
        self,
        name: str,
        settings: McpServerSettings,
        *,
        on_tools: ToolsListener | None = None,
        log_dir: Path | None = None,
        backoff_first: float = BACKOFF_FIRST_SECS,
        backoff_max: float = BACKOFF_MAX_SECS,
        egress: EgressPolicy | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        if egress is None:
            from promptline.security.egress import EgressPolicy

            egress = EgressPolicy()
        self.egress = egress
        self._resolver = resolver
        self._on_tools = on_tools
        self._log_dir = log_dir
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self.state: ConnectionState = "idle"
        self.error: str | None = None
        self.last_connected: datetime | None = None
        self.failures = 0
        """Failed attempts in a row (0 once connected)."""
        self.retry_at: float | None = None
        """When the next attempt starts (``time.monotonic()``), while ``down``."""
        self.protocol_version: str | None = None
        self.server_info: str | None = None
        self.tools: list[RemoteTool] | None = None
        """The tools of the last listing (None before the first)."""
        self.host: McpHost | None = None
        """Answers the server's sampling and elicitation requests (None: not offered; set
        before connecting, as the capabilities are declared then)."""
        self._calls: dict[int, CallOrigin] = {}
        self._roots: tuple[CallOrigin, ...] = ()
        self._roots_told: frozenset[str] = frozenset()
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost_reason: str | None = None
        self._changed = asyncio.Event()
        self._refresh_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._startup: asyncio.Timeout | None = None
        self._startup_aborted: str | None = None
        self._stderr_path: Path | None = None
        self._stderr_offset = 0

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def transport(self) -> str:
        """stdio, streamable_http or sse."""
        return self.settings.kind

    def start(self) -> None:
        """Start connecting (in the background); nothing happens if already started."""
        if self._task is None and not self._stop.is_set():
            self._set_state("connecting")
            # Not inside the call that may have started it: the connection outlives it.
            context = contextvars.copy_context()
            context.run(current_call.set, None)
            self._task = asyncio.create_task(self._run(), name=f"mcp-{self.name}", context=context)

    @property
    def started(self) -> bool:
        """True once `start` was called (the server is connected or being connected)."""
        return self._task is not None

    async def wait_settled(self, within: float) -> ConnectionState:
        """Wait (at most ``within`` s) until the first attempt has connected or failed."""
        deadline = time.monotonic() + within
        while self.state == "connecting":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return self.state

    async def close(self) -> None:
        """Disconnect and stop reconnecting."""
        self._stop.set()
        self._abort_startup("PromptLine is shutting down")
        task, self._task = self._task, None
        if task is not None:
            try:
                # The SDK bounds its own shutdown (a stdio server gets a few seconds to exit).
                await asyncio.wait_for(asyncio.shield(task), 15.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            except Exception:
                _log.exception("closing MCP server %s failed", self.name)
        for pending in list(self._background):
            pending.cancel()
        self._set_state("closed")

    async def client(self) -> Client:
        """The open client, connecting an ``idle`` server first and waiting for one being
        connected (at most its ``startup_timeout_secs``); `McpServerUnavailable` otherwise."""
        if self.state == "idle" or (self._task is None and self.state != "closed"):
            self.start()
        if self.state == "connecting":
            await self.wait_settled(float(self.settings.startup_timeout_secs))
        client = self._client
        if self.state == "connected" and client is not None:
            return client
        raise self._unavailable()

    def _unavailable(self) -> McpServerUnavailable:
        if self.state == "closed":
            return McpServerUnavailable(f"MCP server {self.name!r} is closed")
        if self.state == "connecting":
            return McpServerUnavailable(
                f"MCP server {self.name!r} did not finish connecting within "
                f"{self.settings.startup_timeout_secs:g} s",
                hint="try again in a moment; `promptline mcp list` shows its state",
            )
        retry = ""
        if self.retry_at is not None:
            retry = f"; next attempt in {max(self.retry_at - time.monotonic(), 0):.1f} s"
        return McpServerUnavailable(
            f"MCP server {self.name!r} is not connected: {self.error or 'connection lost'}{retry}",
            hint="it is reconnected automatically; `promptline mcp list` shows its state, "
            f"the server's own output is in {self._stderr_path}"
            if self._stderr_path
            else "it is reconnected automatically; `promptline mcp list` shows its state",
        )

    # -- calls --------------------------------------------------------------------------------

    async def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any],
        progress: ProgressCallback | None = None,
        origin: CallOrigin | None = None,
    ) -> mcp_types.CallToolResult:
        """Call ``tool`` for the tool call ``origin`` (None: the operator's own call); a lost
        connection or a protocol error becomes `ToolError`. Requests the server makes
        meanwhile are answered for ``origin``."""
        client = await self.client()
        key = id(origin)
        if origin is not None:
            self._calls[key] = origin
        token = current_call.set(origin)
        try:
            if origin is not None:
                await self._tell_roots(client)
            return await self._request(
                f"calling {tool}",
                lambda: client.call_tool(tool, arguments, progress_callback=progress),
                origin,
            )
        finally:
            current_call.reset(token)
            if origin is not None:
                self._calls.pop(key, None)

    async def list_resources(self) -> list[mcp_types.Resource]:
        """Every resource the server lists."""
        client = await self.client()

        async def page(cursor: str | None) -> tuple[list[mcp_types.Resource], str | None]:
            result = await client.list_resources(cursor=cursor)
            return result.resources, result.next_cursor

        return await self._request("listing resources", lambda: _all_pages(page))

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult:
        """The contents of resource ``uri``."""
        client = await self.client()
        return await self._request(f"reading {uri}", lambda: client.read_resource(uri))

    async def list_prompts(self) -> list[mcp_types.Prompt]:
        """Every prompt the server lists."""
        client = await self.client()

        async def page(cursor: str | None) -> tuple[list[mcp_types.Prompt], str | None]:
            result = await client.list_prompts(cursor=cursor)
            return result.prompts, result.next_cursor

        return await self._request("listing prompts", lambda: _all_pages(page))

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None = None
    ) -> mcp_types.GetPromptResult:
        """Prompt ``name`` rendered with ``arguments``."""
        client = await self.client()
        return await self._request(
            f"getting prompt {name}", lambda: client.get_prompt(name, arguments)
        )

    async def _request(
        self, what: str, send: Callable[[], Awaitable[_T]], origin: CallOrigin | None = None
    ) -> _T:
        from mcp.client.extension import UnexpectedClaimedResult
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        try:
            return await send()
        except MCPError as exc:
            if origin is not None and origin.refusals and exc.code != CONNECTION_CLOSED:
                # The call failed on PromptLine's own refusal: say that, not the echo of it.
                raise ToolError(
                    f"MCP server {self.name!r} could not finish {what}: {origin.refusals[-1]}"
                ) from None
            if exc.code == CONNECTION_CLOSED:
                self._mark_lost(self._lost_reason or "the connection closed")
                raise ToolError(
                    f"MCP server {self.name!r} lost the connection while {what}: "
                    f"{self._lost_reason or 'the connection closed'}",
                    hint="it is reconnected automatically; try again in a moment",
                ) from None
            raise ToolError(
                f"MCP server {self.name!r} answered {what} with an error: {exc.message} "
                f"(code {exc.code})",
            ) from None
        except UnexpectedClaimedResult as exc:
            kind = getattr(exc.result, "result_type", None) or type(exc.result).__name__
            raise ToolError(
                f"MCP server {self.name!r} answered {what} with a result of kind {kind!r}, "
                "which PromptLine does not support (it may run the tool as a task)",
                hint="ask the server's maintainers for a plain result",
            ) from None
        except RuntimeError as exc:
            if self._client is None or self._lost.is_set():
                raise ToolError(
                    f"MCP server {self.name!r} lost the connection while {what}: "
                    f"{self._lost_reason or 'the connection closed'}",
                    hint="it is reconnected automatically; try again in a moment",
                ) from None
            raise ToolError(f"MCP server {self.name!r} failed {what}: {exc}") from None
        except (ToolError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise ToolError(
                f"MCP server {self.name!r} failed {what}: {_describe(exc)}",
            ) from None

    # -- what the server asks of PromptLine ----------------------------------------------------

    def _origin(self) -> tuple[CallOrigin | None, str | None, bool]:
        """The call a request of the server belongs to; or None, why it is not known, and
        whether that is because several runs could have made it."""
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        origin = current_call.get()
        calls = list(self._calls.values())
        if origin is not None and any(c is origin for c in calls):
            return origin, None, False
        if self.protocol_version in MODERN_PROTOCOL_VERSIONS:
            # Such a request travels inside its call, in the call's task: none is set there.
            return None, "it was made outside any agent's tool call", False
        if not calls:
            return None, "no tool call of this server was in flight", False
        owners = {(c.run_id, c.session_id, c.user_id, c.tenant_id) for c in calls}
        if len(owners) == 1:
            return calls[0], None, False
        return (
            None,
            f"calls of {len(owners)} runs were in flight and the server's protocol "
            f"({self.protocol_version}) does not say which one asked",
            True,
        )

    async def _on_sampling(
        self, context: ClientRequestContext, params: mcp_types.CreateMessageRequestParams
    ) -> mcp_types.CreateMessageResult | mcp_types.ErrorData:
        import mcp_types as types

        host = self.host
        if host is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message="sampling is not offered")
        origin, unknown, ambiguous = self._origin()
        return await host.sample(self.name, params, origin, unknown, ambiguous=ambiguous)

    async def _on_elicitation(
        self, context: ClientRequestContext, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult | mcp_types.ErrorData:
        import mcp_types as types

        host = self.host
        if host is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message="elicitation is not offered")
        origin, unknown, _ = self._origin()
        return await host.elicit(self.name, params, origin, unknown)

    async def _on_list_roots(self, context: ClientRequestContext) -> mcp_types.ListRootsResult:
        origin, _, _ = self._origin()
        if origin is not None and current_call.get() is origin:
            return roots_of([origin])
        return roots_of(list(self._calls.values()) or list(self._roots))

    async def _tell_roots(self, client: Client) -> None:
        """Keep the roots the workspaces of the calls in flight (the last ones between
        calls), telling a server of an older protocol when they change (2026-07-28 servers
        ask with each call instead)."""
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        calls = tuple(self._calls.values())
        told = frozenset(str(c.workspace) for c in calls)
        if told == self._roots_told:
            return
        self._roots, self._roots_told = calls, told
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return
        import mcp_types as types

        try:
            await client.session.send_notification(types.RootsListChangedNotification(params=None))
        except Exception as exc:  # the call itself says whether the connection is gone
            _log.debug("MCP server %s: telling it the roots changed failed: %s", self.name, exc)

    # -- the connection task ------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop.is_set():
            self._set_state("connecting")
            self._lost = asyncio.Event()
            self._lost_reason = None
            self._startup_aborted = None
            try:
                await self._session()
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # an ExceptionGroup from the SDK's task groups too
                self.error = self._startup_error(exc)
            else:
                self.error = self._lost_reason or "the connection was lost"
            finally:
                self._client = None
            if self._stop.is_set():
                break
            self.failures += 1
            delay = min(self._backoff_first * 2 ** (self.failures - 1), self._backoff_max)
            self.retry_at = time.monotonic() + delay
            _log.warning(
                "MCP server %s: %s; reconnect attempt %d in %.1f s",
                self.name,
                self.error,
                self.failures,
                delay,
            )
            self._set_state("down")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            self.retry_at = None
        self._set_state("closed")

    async def _session(self) -> None:
        from mcp import Client
        from mcp_types import Implementation

        from promptline import __version__

        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(float(self.settings.startup_timeout_secs)) as startup:
                self._startup = startup
                client = await stack.enter_async_context(
                    Client(
                        self._transport(),
                        message_handler=self._on_message,
                        client_info=Implementation(name="promptline", version=__version__),
                        cache=None,
                        sampling_callback=self._on_sampling if self.host else None,
                        elicitation_callback=self._on_elicitation if self.host else None,
                        list_roots_callback=self._on_list_roots,
                    )
                )
                tools = await self._list_tools(client)
                self._startup = None
            self._client = client
            self.protocol_version = client.protocol_version
            info = client.server_info
            self.server_info = f"{info.name} {info.version}".strip() if info else None
            self.failures = 0
            self.error = None
            self.last_connected = datetime.now(UTC)
            self._publish_tools(tools)
            _log.info(
                "MCP server %s connected (%s, %d tools)", self.name, self.transport, len(tools)
            )
            listener = self._listen_for_changes(client)
            self._set_state("connected")
            try:
                stop = asyncio.ensure_future(self._stop.wait())
                lost = asyncio.ensure_future(self._lost.wait())
                try:
                    await asyncio.wait({stop, lost}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    lost.cancel()
            finally:
                self._client = None
                if listener is not None:
                    listener.cancel()
                    with contextlib.suppress(BaseException):
                        await listener
                if not self._stop.is_set():
                    self._set_state("connecting")

    def _listen_for_changes(self, client: Client) -> asyncio.Task[None] | None:
        """Keep a ``subscriptions/listen`` stream open on 2026-era connections, where change
        notifications come only on such a stream (they reach `_on_message` either way)."""
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        caps = client.server_capabilities
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return None
        if caps.tools is None or not caps.tools.list_changed:
            return None

        async def listen() -> None:
            try:
                async with client.listen(tools_list_changed=True) as subscription:
                    async for _ in subscription:
                        pass  # the notification is also delivered to _on_message
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.debug("MCP server %s: change subscription ended: %s", self.name, exc)

        return asyncio.create_task(listen(), name=f"mcp-{self.name}-listen")

    async def _list_tools(self, client: Client) -> list[RemoteTool]:
        async def page(cursor: str | None) -> tuple[list[RemoteTool], str | None]:
            result = await client.list_tools(cursor=cursor)
            return [RemoteTool.of(t) for t in result.tools], result.next_cursor

        return await _all_pages(page)

    async def refresh_tools(self) -> list[RemoteTool]:
        """List the tools again and hand them to ``on_tools``."""
        async with self._refresh_lock:
            client = await self.client()
            tools = await self._request("listing tools", lambda: self._list_tools(client))
            self._publish_tools(tools)
            return tools

    def _publish_tools(self, tools: list[RemoteTool]) -> None:
        self.tools = tools
        if self._on_tools is not None:
            try:
                self._on_tools(self, tools)
            except Exception:
                _log.exception("MCP server %s: registering its tools failed", self.name)

    async def _on_message(self, message: Any) -> None:
        import mcp_types

        if isinstance(message, mcp_types.ToolListChangedNotification):
            task = asyncio.create_task(self._refresh_after_change())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _refresh_after_change(self) -> None:
        try:
            tools = await self.refresh_tools()
        except PromptLineError as exc:
            _log.warning(
                "MCP server %s: its tool list changed but listing it failed: %s",
                self.name,
                exc.message,
            )
            return
        _log.info("MCP server %s: tool list changed (%d tools)", self.name, len(tools))

    def _abort_startup(self, reason: str) -> None:
        """End a connection attempt still starting at once (its timeout fires now)."""
        startup = self._startup
        if startup is not None and not startup.expired() and self._startup_aborted is None:
            self._startup_aborted = reason
            startup.reschedule(asyncio.get_running_loop().time())

    def _mark_lost(self, reason: str) -> None:
        self._abort_startup(reason)
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    def _on_stream_end(self) -> None:
        if not self._stop.is_set():
            self._mark_lost(self._ended_reason())

    def _on_stream_fault(self, exc: Exception) -> None:
        # stdout must carry JSON-RPC only: after a stray line nothing read can be trusted.
        reason = (
            "the server wrote something that is not a JSON-RPC message"
            + (" on its stdout" if self.transport == "stdio" else "")
            + f": {_first_line(exc)}"
        )
        _log.warning("MCP server %s: %s", self.name, reason)
        self._mark_lost(reason)

    def _ended_reason(self) -> str:
        if self.transport == "stdio":
            tail = self._stderr_tail()
            return "the server process exited" + (f" (its last output: {tail})" if tail else "")
        return "the server closed the connection"

    def _startup_error(self, exc: BaseException) -> str:
        self._startup = None
        if self._startup_aborted is not None:
            return self._startup_aborted
        leaf = _leaf(exc)
        from promptline.security.egress import EgressRefused

        if isinstance(leaf, EgressRefused):
            return egress_refusal(
                self.name, str(self.settings.url), leaf.message, leaf.details["entry"]
            )
        if isinstance(leaf, TimeoutError | asyncio.CancelledError):
            return f"no answer to initialize within {self.settings.startup_timeout_secs:g} s"
        if self._lost_reason is not None:
            return self._lost_reason
        if isinstance(leaf, FileNotFoundError) and self.transport == "stdio":
            return f"cannot start {self.settings.command!r}: no such program"
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        if isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED:
            return self._ended_reason() + " before it was initialized"
        if self.transport != "stdio" and type(leaf).__module__.startswith(("httpx", "httpcore")):
            return f"cannot reach {self.settings.url}: {_describe(leaf)}"
        return _describe(leaf)

    # -- transports ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        kind = self.transport
        if kind == "stdio":
            async with self._stdio() as streams:
                yield streams
            return
        import httpx2

        from promptline.tools.mcp.egress_http import egress_http_client

        headers = dict(self.settings.headers)
        url = str(self.settings.url)
        await self._check_egress(url)
        limits = httpx2.Timeout(_HTTP_TIMEOUT_SECS, read=_HTTP_READ_TIMEOUT_SECS)
        if kind == "sse":
            from mcp.client.sse import sse_client

            def client_factory(
                headers: dict[str, str] | None = None,
                timeout: httpx2.Timeout | None = None,
                auth: httpx2.Auth | None = None,
            ) -> httpx2.AsyncClient:
                return egress_http_client(
                    self.egress,
                    timeout=timeout or limits,
                    resolver=self._resolver,
                    headers=headers,
                    auth=auth,
                )

            async with sse_client(
                url,
                headers=headers,
                timeout=_HTTP_TIMEOUT_SECS,
                sse_read_timeout=_HTTP_READ_TIMEOUT_SECS,
                httpx_client_factory=client_factory,
            ) as (read, write):
                yield _WatchedStream(read, self._on_stream_end, self._on_stream_fault), write
            return
        from mcp.client.streamable_http import streamable_http_client

        async with (
            egress_http_client(
                self.egress, timeout=limits, resolver=self._resolver, headers=headers
            ) as http,
            streamable_http_client(url, http_client=http) as (read, write),
        ):
            yield _WatchedStream(read, self._on_stream_end, self._on_stream_fault), write

    async def _check_egress(self, url: str) -> None:
        """Refuse a server the egress policy does not allow before connecting (`EgressRefused`);
        every connection is checked again as it is opened. A name that cannot be resolved is
        left to the connection, which says so."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        tls = parts.scheme.lower() == "https"
        try:
            await self.egress.checked(
                parts.hostname or "", parts.port or (443 if tls else 80), self._resolver
            )
        except OSError:
            return

    @contextlib.asynccontextmanager
    async def _stdio(self) -> AsyncIterator[Any]:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=str(self.settings.command),
            args=list(self.settings.args),
            env=dict(self.settings.env) or None,
            cwd=self.settings.cwd,
        )
        with self._stderr_file() as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                yield _WatchedStream(read, self._on_stream_end, self._on_stream_fault), write

    @contextlib.contextmanager
    def _stderr_file(self) -> Any:
        """Where the server's stderr goes: ``<logs>/mcp/<server>.log`` (or nowhere)."""
        import os

        if self._log_dir is None:
            with open(os.devnull, "w") as sink:
                yield sink
            return
        from promptline.storage.files import open_private

        path = self._log_dir / f"{self.name}.log"
        self._stderr_path = path
        fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        with open(fd, "a", encoding="utf-8") as sink:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            sink.write(f"--- {stamp} starting {self.settings.command}\n")
            sink.flush()
            self._stderr_offset = sink.tell()
            yield sink

    def _stderr_tail(self) -> str:
        if self._stderr_path is None:
            return ""
        try:
            with open(self._stderr_path, encoding="utf-8", errors="replace") as source:
                source.seek(self._stderr_offset)
                text = source.read()
        except OSError:
            return ""
        lines = [line for line in text.strip().splitlines() if line.strip()]
        tail = " | ".join(lines[-3:])
        return tail[-_STDERR_TAIL_CHARS:]

    def _set_state(self, state: ConnectionState) -> None:
        self.state = state
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class _WatchedStream:
    """A transport's read stream that tells the connection when it ends or yields a fault
    (the SDK only logs those; the connection must know it is gone)."""

    def __init__(
        self, inner: Any, on_end: Callable[[], None], on_fault: Callable[[Exception], None]
    ) -> None:
        self._inner = inner
        self._on_end = on_end
        self._on_fault = on_fault

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        import anyio

        try:
            item = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._on_end()
            raise
        if isinstance(item, Exception):
            self._on_fault(item)
        return item

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> Any:
        import anyio

        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _all_pages(
    page: Callable[[str | None], Awaitable[tuple[list[_T], str | None]]],
) -> list[_T]:
    """The items of every page of a listing, following its cursor (at most
    ``_MAX_LIST_PAGES`` pages, against a server whose cursor never ends)."""
    found: list[_T] = []
    cursor: str | None = None
    for _ in range(_MAX_LIST_PAGES):
        items, cursor = await page(cursor)
        found.extend(items)
        if cursor is None:
            break
    return found


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def _describe(exc: BaseException) -> str:
    leaf = _leaf(exc)
    text = str(leaf).strip() or type(leaf).__name__
    return f"{type(leaf).__name__}: {_first_line_of(text)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    # pydantic's message names the input on its second line: show the offending text.
    marker = "input_value="
    if marker in text:
        start = text.index(marker) + len(marker)
        return text[start:].split(", input_type=")[0][:200]
    return _first_line_of(text)


def _first_line_of(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""
