"""PromptLine as an MCP client: the configured MCP servers' tools registered as
``mcp.<server>.<tool>``, their resources and prompts, kept connected by `McpManager`; the
servers' sampling, elicitation and roots requests answered by `McpHost`.

Importing this package does not import the ``mcp`` SDK; connecting does."""

from promptline.tools.mcp.connection import McpConnection, McpServerUnavailable, RemoteTool
from promptline.tools.mcp.host import CallOrigin, McpHost, elicitation_rule, sampling_rule
from promptline.tools.mcp.manager import (
    ATTACHMENTS_KEY,
    McpManager,
    McpServerStatus,
    PromptInfo,
    ResourceInfo,
    attach,
)
from promptline.tools.mcp.tool import McpTool, registry_name, to_output

__all__ = [
    "ATTACHMENTS_KEY",
    "CallOrigin",
    "McpConnection",
    "McpHost",
    "McpManager",
    "McpServerStatus",
    "McpServerUnavailable",
    "McpTool",
    "PromptInfo",
    "RemoteTool",
    "ResourceInfo",
    "attach",
    "elicitation_rule",
    "registry_name",
    "sampling_rule",
    "to_output",
]
