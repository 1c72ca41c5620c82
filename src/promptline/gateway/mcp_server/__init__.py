"""PromptLine as an MCP server: its agents (and, with ``mcp_server.expose_tools``, its tools)
as MCP tools, on stdin/stdout (``promptline mcp serve``) and at ``/mcp`` on the gateway.

The ``mcp`` SDK takes half a second to import, so it is loaded only when a server is built:
by ``promptline mcp serve``, and by the gateway on the first ``/mcp`` request."""

from promptline.gateway.mcp_server.http import McpEndpoint, mount_mcp
from promptline.gateway.mcp_server.protocol import build_server
from promptline.gateway.mcp_server.service import (
    AGENT_INPUT_SCHEMA,
    AGENT_OUTPUT_SCHEMA,
    CALLER_SCOPE_KEY,
    CHANNEL,
    LOCAL_CALLER,
    SERVER_NAME,
    McpService,
    Offer,
    Outcome,
    ProgressReport,
    UnknownToolError,
    tool_name,
)
from promptline.gateway.mcp_server.stdio import serve_stdio, stdio_wire

__all__ = [
    "AGENT_INPUT_SCHEMA",
    "AGENT_OUTPUT_SCHEMA",
    "CALLER_SCOPE_KEY",
    "CHANNEL",
    "LOCAL_CALLER",
    "SERVER_NAME",
    "McpEndpoint",
    "McpService",
    "Offer",
    "Outcome",
    "ProgressReport",
    "UnknownToolError",
    "build_server",
    "mount_mcp",
    "serve_stdio",
    "stdio_wire",
    "tool_name",
]
