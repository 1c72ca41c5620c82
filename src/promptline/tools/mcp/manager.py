"""`McpManager`: the connections to the configured MCP servers, their tools kept registered
as ``mcp.<server>.<tool>``, their resources and prompts, and attaching those to sessions."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from promptline.core.errors import InvalidInputError, NotFoundError
from promptline.storage.files import write_atomically
from promptline.tools.base import ToolOutput
from promptline.tools.mcp.connection import (
    ConnectionState,
    McpConnection,
    ProgressCallback,
    RemoteTool,
)
from promptline.tools.mcp.host import McpHost
from promptline.tools.mcp.tool import McpTool, registry_name, to_output
from promptline.tools.registry import ToolRegistry, matches

if TYPE_CHECKING:
    from promptline.config.plugins import McpServerSettings
    from promptline.security.egress import EgressPolicy, Resolver
    from promptline.sessions.manager import SessionManager
    from promptline.sessions.models import Principal, Session

__all__ = [
    "ATTACHMENTS_KEY",
    "MAX_ATTACHMENT_CHARS",
    "McpManager",
    "McpServerStatus",
    "PromptInfo",
    "ResourceInfo",
]

_log = logging.getLogger("promptline.mcp")

ATTACHMENTS_KEY = "attachments"
"""Key of a session's context holding what was attached to it (rendered into the system
prompt of its runs)."""

MAX_ATTACHMENT_CHARS = 20_000
"""Longest text one attachment keeps (the rest is cut, saying so)."""

_CACHE_VERSION = 1


@dataclass(frozen=True, slots=True)
class McpServerStatus:
    """What `McpManager.status` says about one server."""

    name: str
    transport: str
    connect: str
    enabled: bool
    state: ConnectionState | str
    error: str | None = None
    tools: int = 0
    skipped: tuple[str, ...] = ()
    skipped_reasons: tuple[str, ...] = ()
    """Why each tool of ``skipped`` is not offered (in the same order)."""
    last_connected: datetime | None = None
    failures: int = 0
    retry_in: float | None = None
    protocol_version: str | None = None
    server: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "name": self.name,
            "transport": self.transport,
            "connect": self.connect,
            "enabled": self.enabled,
            "state": self.state,
            "error": self.error,
            "tools": self.tools,
            "skipped": list(self.skipped),
            "skipped_reasons": dict(zip(self.skipped, self.skipped_reasons, strict=True)),
            "last_connected": self.last_connected.isoformat() if self.last_connected else None,
            "failures": self.failures,
            "retry_in": None if self.retry_in is None else round(self.retry_in, 1),
            "protocol_version": self.protocol_version,
            "server": self.server,
        }


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """A resource an MCP server offers."""

    uri: str
    name: str
    description: str = ""
    mime_type: str | None = None


@dataclass(frozen=True, slots=True)
class PromptInfo:
    """A prompt an MCP server offers, with the names of its arguments."""

    name: str
    description: str = ""
    arguments: tuple[str, ...] = ()
    required: tuple[str, ...] = field(default=())


class McpManager:
    """The MCP servers PromptLine uses.

    ``start`` connects the ``connect: start`` servers concurrently (each bounded by its
    ``startup_timeout_secs``; one that fails is logged and shown by `status`, never failing
    the start). A ``connect: first_use`` server is connected when one of its tools is first
    called: its tools are registered from the list cached at its last connection
    (``<cache_dir>/<server>.json``); a server never connected before has no such list and is
    connected at start once to learn it. Each connection's tool list is kept registered in
    ``registry`` as ``mcp.<server>.<tool>``, and follows it when the server reconnects or
    announces that its tools changed. Servers over HTTP are reached only where ``egress``
    allows (by default public addresses only), their names looked up with ``resolver``.
    """

    def __init__(
        self,
        servers: Mapping[str, McpServerSettings],
        registry: ToolRegistry | None = None,
        *,
        cache_dir: Path | None = None,
        log_dir: Path | None = None,
        backoff_first: float | None = None,
        backoff_max: float | None = None,
        egress: EgressPolicy | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.registry = registry if registry is not None else ToolRegistry()
        self._settings = dict(servers)
        self._cache_dir = cache_dir
        self._connections: dict[str, McpConnection] = {}
        self._skipped: dict[str, dict[str, str]] = {}
        self._registered: dict[str, int] = {}
        self._started = False
        self._closed = False
        backoff: dict[str, float] = {}
        if backoff_first is not None:
            backoff["backoff_first"] = backoff_first
        if backoff_max is not None:
            backoff["backoff_max"] = backoff_max
        for name, settings in self._settings.items():
            if settings.enabled:
                self._connections[name] = McpConnection(
                    name,
                    settings,
                    on_tools=self._sync_tools,
                    log_dir=log_dir,
                    egress=egress,
                    resolver=resolver,
                    **backoff,
                )

    # -- lifecycle ----------------------------------------------------------------------------

    def bind(self, host: McpHost) -> None:
        """Answer the servers' sampling and elicitation requests with ``host`` (the running
        app's runtime and permissions). Call it before `start`: servers connected before
        are not offered them until they reconnect."""
        for connection in self._connections.values():
            connection.host = host

    @property
    def servers(self) -> list[str]:
        """Every configured server name (enabled or not), in config order."""
        return list(self._settings)

    async def start(self, *, connect_all: bool = False) -> None:
        """Register cached tool lists and connect the servers that connect at start (every
        enabled one with ``connect_all``); waits until each connected or failed once."""
        if self._started or self._closed:
            return
        self._started = True
        waiting: list[McpConnection] = []
        for name, connection in self._connections.items():
            cached = None if connect_all else self._load_cache(name)
            if connection.settings.connect == "first_use" and cached is not None:
                self._sync_tools(connection, cached, cache=False)
                continue
            connection.start()
            waiting.append(connection)
        if waiting:
            await asyncio.gather(
                *(c.wait_settled(float(c.settings.startup_timeout_secs) + 5.0) for c in waiting)
            )
        for connection in waiting:
            if connection.state != "connected":
                _log.warning("MCP server %s did not start: %s", connection.name, connection.error)

    async def close(self) -> None:
        """Disconnect every server and unregister their tools."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(c.close() for c in self._connections.values()))
        for name in self._connections:
            self._unregister(name)

    def status(self) -> list[McpServerStatus]:
        """One line per configured server: state, last error, tool count, last connection."""
        now = time.monotonic()
        found: list[McpServerStatus] = []
        for name, settings in self._settings.items():
            connection = self._connections.get(name)
            if connection is None:
                found.append(
                    McpServerStatus(
                        name=name,
                        transport=settings.kind,
                        connect=settings.connect,
                        enabled=False,
                        state="disabled",
                    )
                )
                continue
            found.append(
                McpServerStatus(
                    name=name,
                    transport=settings.kind,
                    connect=settings.connect,
                    enabled=True,
                    state=connection.state,
                    error=connection.error,
                    tools=self._registered.get(name, 0),
                    skipped=tuple(self._skipped.get(name, {})),
                    skipped_reasons=tuple(self._skipped.get(name, {}).values()),
                    last_connected=connection.last_connected,
                    failures=connection.failures,
                    retry_in=None
                    if connection.retry_at is None
                    else max(connection.retry_at - now, 0.0),
                    protocol_version=connection.protocol_version,
                    server=connection.server_info,
                )
            )
        return found

    def connection(self, server: str) -> McpConnection:
        """The connection of ``server``; `NotFoundError` for an unknown or disabled one."""
        found = self._connections.get(server)
        if found is not None:
            return found
        if server in self._settings:
            raise NotFoundError(
                f"MCP server {server!r} is disabled",
                hint=f"set mcp_servers.{server}.enabled to true",
            )
        known = ", ".join(self._settings) or "none"
        raise NotFoundError(
            f"no MCP server {server!r} is configured (configured: {known})",
            hint="add it under mcp_servers in the configuration",
        )

    # -- tools --------------------------------------------------------------------------------

    def skipped(self, server: str) -> dict[str, str]:
        """The tools of ``server`` that are not offered, each with why (an invalid input
        schema, or it runs only as a task)."""
        return dict(self._skipped.get(server, {}))

    async def tools(self, server: str) -> list[McpTool]:
        """The usable tools of ``server`` (connecting it if it is not yet), filtered by its
        ``tools`` patterns; tools with an invalid schema are left out."""
        connection = self.connection(server)
        if connection.tools is None or not connection.started:
            await connection.refresh_tools()
        return [
            tool
            for name in self.registry.names()
            if name.startswith(f"mcp.{server}.")
            and isinstance(tool := self.registry.get(name), McpTool)
            and tool.connection is connection
        ]

    async def call(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> ToolOutput:
        """Call ``tool`` (its name on the server) directly, its arguments checked against
        its schema first. Not subject to the permission policy: for operators (the CLI)."""
        connection = self.connection(server)
        arguments = dict(arguments or {})
        mcp_tool = None
        for candidate in await self.tools(server):
            if candidate.remote.name == tool or candidate.name == tool:
                mcp_tool = candidate
                break
        if mcp_tool is None:
            names = sorted(t.name for t in connection.tools or [])
            raise NotFoundError(
                f"MCP server {server!r} has no usable tool {tool!r}",
                hint=f"its tools: {', '.join(names) or 'none'}",
            )
        mcp_tool.validate(arguments)
        result = await connection.call_tool(mcp_tool.remote.name, arguments, progress)
        return to_output(result)

    def _sync_tools(
        self, connection: McpConnection, tools: list[RemoteTool], *, cache: bool = True
    ) -> None:
        """Register ``tools`` of ``connection`` in place of the ones registered before."""
        server = connection.name
        patterns = connection.settings.tools
        built: list[McpTool] = []
        skipped: dict[str, str] = {}
        for remote in tools:
            full = registry_name(server, remote.name)
            if patterns is not None and not any(
                matches(p, remote.name) or matches(p, full) for p in patterns
            ):
                continue
            try:
                if remote.task_support == "required":
                    raise InvalidInputError(
                        "it runs only as a task (taskSupport: required), and PromptLine "
                        "calls tools directly"
                    )
                built.append(McpTool.build(connection, remote))
            except InvalidInputError as exc:
                skipped[remote.name] = exc.message
                _log.warning(
                    "MCP server %s: skipping tool %s: %s", server, remote.name, exc.message
                )
        self._unregister(server)
        if not self._closed:
            for tool in built:
                self.registry.register(tool, replace=True)
            self._registered[server] = len(built)
        self._skipped[server] = skipped
        if cache:
            self._save_cache(connection, tools)

    def _unregister(self, server: str) -> None:
        with contextlib.suppress(NotFoundError):
            self.registry.unregister(f"mcp.{server}.*")
        self._registered[server] = 0

    # -- the tool-list cache ------------------------------------------------------------------

    def _cache_path(self, server: str) -> Path | None:
        return None if self._cache_dir is None else self._cache_dir / f"{server}.json"

    def _load_cache(self, server: str) -> list[RemoteTool] | None:
        path = self._cache_path(server)
        if path is None or not path.is_file():
            return None
        try:
            data = orjson.loads(path.read_bytes())
            if data.get("version") != _CACHE_VERSION:
                return None
            if data.get("fingerprint") != _fingerprint(self._settings[server]):
                return None  # the server's endpoint changed since
            return [RemoteTool.from_dict(t) for t in data["tools"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            _log.warning("ignoring the cached tool list of MCP server %s: %s", server, exc)
            return None

    def _save_cache(self, connection: McpConnection, tools: list[RemoteTool]) -> None:
        path = self._cache_path(connection.name)
        if path is None:
            return
        data = {
            "version": _CACHE_VERSION,
            "fingerprint": _fingerprint(connection.settings),
            "saved_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "tools": [t.to_dict() for t in tools],
        }
        try:
            write_atomically(path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            _log.warning("could not cache the tool list of MCP server %s: %s", connection.name, exc)

    # -- resources and prompts ----------------------------------------------------------------

    async def resources(self, server: str) -> list[ResourceInfo]:
        """The resources ``server`` lists."""
        found = await self.connection(server).list_resources()
        return [
            ResourceInfo(
                uri=str(r.uri),
                name=r.name,
                description=r.description or "",
                mime_type=r.mime_type,
            )
            for r in found
        ]

    async def read_resource(self, server: str, uri: str) -> str:
        """The contents of resource ``uri`` as text (binary parts are described)."""
        import mcp_types as types

        result = await self.connection(server).read_resource(uri)
        texts: list[str] = []
        for item in result.contents:
            if isinstance(item, types.TextResourceContents):
                texts.append(item.text)
            else:
                size = len(item.blob) * 3 // 4
                texts.append(f"[binary contents {item.mime_type or ''}, about {size} bytes]")
        return "\n".join(texts)

    async def prompts(self, server: str) -> list[PromptInfo]:
        """The prompts ``server`` lists."""
        found = await self.connection(server).list_prompts()
        return [
            PromptInfo(
                name=p.name,
                description=p.description or "",
                arguments=tuple(a.name for a in p.arguments or ()),
                required=tuple(a.name for a in p.arguments or () if a.required),
            )
            for p in found
        ]

    async def get_prompt(
        self, server: str, name: str, arguments: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]:
        """Prompt ``name`` rendered by the server: its messages as (role, text)."""
        import mcp_types as types

        result = await self.connection(server).get_prompt(
            name, {k: str(v) for k, v in (arguments or {}).items()}
        )
        messages: list[tuple[str, str]] = []
        for message in result.messages:
            content = message.content
            if isinstance(content, types.TextContent):
                text = content.text
            elif isinstance(content, types.EmbeddedResource) and isinstance(
                content.resource, types.TextResourceContents
            ):
                text = content.resource.text
            else:
                text = f"[{content.type} content]"
            messages.append((message.role, text))
        return messages

    # -- attaching to sessions ----------------------------------------------------------------

    async def attach_resource(
        self,
        sessions: SessionManager,
        session_id: str,
        principal: Principal,
        server: str,
        uri: str,
    ) -> Session:
        """Read resource ``uri`` and attach it to the session's context, so the agent sees
        it in the session's next runs (attaching it again replaces it)."""
        text = await self.read_resource(server, uri)
        return await attach(
            sessions,
            session_id,
            principal,
            key=f"mcp:{server}:resource:{uri}",
            title=f"{uri} (resource of MCP server {server})",
            text=text,
        )

    async def attach_prompt(
        self,
        sessions: SessionManager,
        session_id: str,
        principal: Principal,
        server: str,
        name: str,
        arguments: Mapping[str, str] | None = None,
    ) -> Session:
        """Render prompt ``name`` and attach its messages to the session's context."""
        messages = await self.get_prompt(server, name, arguments)
        text = "\n".join(f"{role}: {content}" for role, content in messages)
        return await attach(
            sessions,
            session_id,
            principal,
            key=f"mcp:{server}:prompt:{name}",
            title=f"prompt {name} of MCP server {server}",
            text=text,
        )


async def attach(
    sessions: SessionManager,
    session_id: str,
    principal: Principal,
    *,
    key: str,
    title: str,
    text: str,
) -> Session:
    """Add (or replace) attachment ``key`` in the session's ``context["attachments"]``."""
    from promptline.tools.executor import truncate

    session = await sessions.get(session_id, principal, history_limit=0)
    context = dict(session.context)
    current = context.get(ATTACHMENTS_KEY)
    kept = [
        a
        for a in (current if isinstance(current, list) else [])
        if isinstance(a, dict) and a.get("key") != key
    ]
    kept.append({"key": key, "title": title, "text": truncate(text, MAX_ATTACHMENT_CHARS)})
    context[ATTACHMENTS_KEY] = kept
    return await sessions.update(session_id, principal, context=context)


def _fingerprint(settings: McpServerSettings) -> str:
    endpoint = {
        "command": settings.command,
        "args": settings.args,
        "url": settings.url,
        "transport": settings.kind,
    }
    return hashlib.sha256(orjson.dumps(endpoint, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
