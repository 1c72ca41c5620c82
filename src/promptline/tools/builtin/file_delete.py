"""``file_delete``: remove a file (or a folder) of the workspace."""

from __future__ import annotations

import errno
import os
import shutil
import stat

from promptline.tools.base import ToolContext, ToolError
from promptline.tools.builtin.workspace import (
    folder_in_workspace,
    relative_name,
    resolve_in_workspace,
    workspace_root,
)
from promptline.tools.function import tool

__all__ = ["file_delete"]


@tool(name="file_delete", destructive=True)
def file_delete(path: str, recursive: bool = False, *, context: ToolContext) -> str:
    """Delete a file or an empty folder of the workspace (a symlink itself, not its target).

    Args:
        path: Relative to the workspace root.
        recursive: Also delete a folder that is not empty, with all it holds.
    """
    target = resolve_in_workspace(context.workspace, path, follow_last=False)
    name = relative_name(workspace_root(context.workspace), target)
    # The folder holding it is reached without following a symlink, and the entry removed
    # from there: a folder swapped for a symlink since the check cannot lead out.
    with folder_in_workspace(context.workspace, target.parent, path) as folder:
        try:
            found = os.stat(target.name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            raise ToolError(f"there is no file or folder {path!r} in the workspace") from None
        if not stat.S_ISDIR(found.st_mode):
            os.unlink(target.name, dir_fd=folder)
            return f"deleted {name}"
        if not recursive:
            try:
                os.rmdir(target.name, dir_fd=folder)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise ToolError(
                    f"{path!r} is a folder that is not empty",
                    hint="pass recursive=true to delete it with everything in it",
                ) from None
            return f"deleted the empty folder {name}"
        count = sum(1 for _ in target.rglob("*"))
        shutil.rmtree(target.name, dir_fd=folder)
    return f"deleted the folder {name} and the {count} entries in it"
