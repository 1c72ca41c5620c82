"""``file_read``: a text file of the workspace, whole or a range of its lines."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import Field

from promptline.tools.base import ToolContext, ToolError
from promptline.tools.builtin.text_files import read_text_page
from promptline.tools.builtin.workspace import open_in_workspace, resolve_in_workspace
from promptline.tools.function import tool

__all__ = ["MAX_READ_BYTES", "MAX_READ_CHARS", "file_read"]

MAX_READ_BYTES = 10 * 1024 * 1024
"""Larger files are refused: reading them whole would flood the model's context."""

MAX_READ_CHARS = 30_000
"""The most text one call returns (whole lines, below the executor's default output limit, so
the answer ends with where to go on rather than being cut in the middle)."""


@tool(name="file_read", read_only=True)
def file_read(
    path: str,
    offset: Annotated[int, Field(ge=1)] = 1,
    limit: Annotated[int, Field(ge=1)] | None = None,
    *,
    context: ToolContext,
) -> str:
    """Read a text file of the workspace: all of it, or `limit` lines from line `offset`.

    Args:
        path: Relative to the workspace root.
        offset: The first line, counting from 1.
        limit: Lines to return; default: as many as fit in one answer.
    """
    target = resolve_in_workspace(context.workspace, path)
    if not target.exists():
        raise ToolError(
            f"there is no file {path!r} in the workspace",
            hint="check the name; codebase_search or shell_execute 'ls' show what is there",
        )
    if target.is_dir():
        raise ToolError(
            f"{path!r} is a folder, not a file",
            hint="list it with shell_execute 'ls', or search it with codebase_search",
        )
    fd = open_in_workspace(context.workspace, target, path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        return read_text_page(
            handle,
            path,
            tool="file_read",
            offset=offset,
            limit=limit,
            max_bytes=MAX_READ_BYTES,
            max_chars=MAX_READ_CHARS,
            too_big_hint="find the lines you need with codebase_search, or read a part with "
            "shell_execute (head, tail, sed -n)",
            binary_hint="inspect it with shell_execute (file, xxd | head) if you must",
        )
