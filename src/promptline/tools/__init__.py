"""Tools: the `Tool` protocol, the ``@tool`` decorator, the registry and the executor."""

from promptline.tools.base import Progress, Tool, ToolCancelled, ToolContext, ToolError, ToolOutput
from promptline.tools.function import FunctionTool, tool
from promptline.tools.registry import ToolRegistry

__all__ = [
    "FunctionTool",
    "Progress",
    "Tool",
    "ToolCancelled",
    "ToolContext",
    "ToolError",
    "ToolOutput",
    "ToolRegistry",
    "tool",
]
