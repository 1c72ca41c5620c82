"""``file_delete``: remove a file (or a folder) of the workspace."""

from __future__ import annotations

import shutil

from promptline.tools.base import ToolContext, ToolError
from promptline.tools.builtin.workspace import relative_name, resolve_in_workspace, workspace_root
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
    if target.is_symlink() or target.is_file():
        target.unlink()
        return f"deleted {name}"
    if not target.exists():
        raise ToolError(f"there is no file or folder {path!r} in the workspace")
    if not recursive:
        if any(target.iterdir()):
            raise ToolError(
                f"{path!r} is a folder that is not empty",
                hint="pass recursive=true to delete it with everything in it",
            )
        target.rmdir()
        return f"deleted the empty folder {name}"
    count = sum(1 for _ in target.rglob("*"))
    shutil.rmtree(target)
    return f"deleted the folder {name} and the {count} entries in it"
