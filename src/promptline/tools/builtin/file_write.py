"""``file_write``: create, replace or append to a text file of the workspace."""

from __future__ import annotations

import os

from promptline.tools.base import ToolContext, ToolError
from promptline.tools.builtin.workspace import (
    open_in_workspace,
    relative_name,
    resolve_in_workspace,
    workspace_root,
)
from promptline.tools.function import tool

__all__ = ["file_write"]


@tool(name="file_write")
def file_write(path: str, content: str, append: bool = False, *, context: ToolContext) -> str:
    """Write text to a file of the workspace, creating it and its folders if needed.

    Args:
        path: Relative to the workspace root.
        content: The text (UTF-8).
        append: Add to the end of the file instead of replacing it.
    """
    target = resolve_in_workspace(context.workspace, path)
    if target.is_dir():
        raise ToolError(f"{path!r} is a folder, not a file", hint="give the path of a file")
    existed = target.exists()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    data = content.encode("utf-8")
    # The path was checked with its symlinks resolved; it is opened (and its folders made)
    # one folder at a time without following a symlink, so one put in place of a folder or
    # of the file since then is refused instead of written through.
    fd = open_in_workspace(context.workspace, target, path, flags, make_folders=True)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    name = relative_name(workspace_root(context.workspace), target)
    if append and existed:
        return f"appended {len(data)} bytes to {name}"
    return f"{'replaced' if existed else 'created'} {name} ({len(data)} bytes)"
