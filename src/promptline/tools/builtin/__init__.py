"""The tools every installation has: files, shell, git, web and search, all confined to the
call's workspace."""

from __future__ import annotations

from collections.abc import Iterable

from promptline.tools.base import Tool
from promptline.tools.builtin.file_delete import file_delete
from promptline.tools.builtin.file_read import file_read
from promptline.tools.builtin.file_write import file_write
from promptline.tools.builtin.git import git_commit, git_status
from promptline.tools.builtin.search import codebase_search
from promptline.tools.builtin.shell import shell_execute
from promptline.tools.builtin.web import web_get_tool
from promptline.tools.builtin.workspace import resolve_in_workspace

__all__ = [
    "BUILTIN_TOOL_NAMES",
    "builtin_tools",
    "codebase_search",
    "file_delete",
    "file_read",
    "file_write",
    "git_commit",
    "git_status",
    "resolve_in_workspace",
    "shell_execute",
    "web_get_tool",
]

BUILTIN_TOOL_NAMES = (
    "file_read",
    "file_write",
    "file_delete",
    "shell_execute",
    "git_status",
    "git_commit",
    "web_get",
    "codebase_search",
)
"""The built-in tools' names, as the ``tools:`` permissions of the configuration use them."""


def builtin_tools(*, web_allow: Iterable[str] = ()) -> list[Tool]:
    """A fresh list of the built-in tools, in `BUILTIN_TOOL_NAMES` order.

    ``web_allow`` lists the hosts and networks ``web_get`` may reach although they are not
    public (``security.egress_allow``).
    """
    return [
        file_read,
        file_write,
        file_delete,
        shell_execute,
        git_status,
        git_commit,
        web_get_tool(allow=web_allow),
        codebase_search,
    ]
