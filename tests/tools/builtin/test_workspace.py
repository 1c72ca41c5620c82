"""Workspace confinement: relative paths inside resolve; absolute paths, climbing '..' and
symlinks that lead out are refused with an error naming the rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from promptline.tools.base import ToolError
from promptline.tools.builtin.workspace import relative_name, resolve_in_workspace


def test_a_relative_path_resolves_inside_the_workspace(workspace: Path) -> None:
    root = workspace.resolve()

    assert resolve_in_workspace(workspace, "src/app.py") == root / "src" / "app.py"
    assert resolve_in_workspace(workspace, "a/../b.txt") == root / "b.txt"
    assert resolve_in_workspace(workspace, ".") == root
    assert resolve_in_workspace(workspace, "") == root


@pytest.mark.parametrize("path", ["/etc/passwd", "//etc/passwd", "/"])
def test_absolute_paths_are_refused(workspace: Path, path: str) -> None:
    with pytest.raises(ToolError, match="is absolute: tools may only use paths relative"):
        resolve_in_workspace(workspace, path)


def test_an_absolute_path_into_the_workspace_is_refused_too(workspace: Path) -> None:
    with pytest.raises(ToolError, match="is absolute"):
        resolve_in_workspace(workspace, str(workspace / "file.txt"))


@pytest.mark.parametrize("path", ["..", "../outside/secret.txt", "a/../../outside", "a/b/../../.."])
def test_dot_dot_may_not_climb_above_the_workspace(workspace: Path, path: str) -> None:
    with pytest.raises(ToolError, match=r"'\.\.' may not climb above the workspace root"):
        resolve_in_workspace(workspace, path)


def test_home_shorthand_is_refused(workspace: Path) -> None:
    with pytest.raises(ToolError, match="uses '~'"):
        resolve_in_workspace(workspace, "~/.ssh/id_rsa")


def test_a_nul_character_is_refused(workspace: Path) -> None:
    with pytest.raises(ToolError, match="NUL"):
        resolve_in_workspace(workspace, "a\x00b")


def test_a_symlinked_file_leading_out_is_refused(workspace: Path) -> None:
    (workspace / "link.txt").symlink_to(workspace.parent / "outside" / "secret.txt")

    with pytest.raises(ToolError, match=r"'link\.txt' is a symlink that resolves outside it"):
        resolve_in_workspace(workspace, "link.txt")


def test_a_symlinked_folder_leading_out_is_refused_for_paths_below_it(workspace: Path) -> None:
    (workspace / "docs").mkdir()
    (workspace / "docs" / "escape").symlink_to(workspace.parent / "outside")

    with pytest.raises(ToolError, match="'docs/escape' is a symlink"):
        resolve_in_workspace(workspace, "docs/escape/secret.txt")
    with pytest.raises(ToolError, match="symlink"):
        resolve_in_workspace(workspace, "docs/escape/new-file.txt")


def test_a_symlink_with_a_relative_target_leading_out_is_refused(workspace: Path) -> None:
    (workspace / "up").symlink_to("../outside")

    with pytest.raises(ToolError, match="symlink"):
        resolve_in_workspace(workspace, "up/secret.txt")


def test_a_symlink_followed_by_dot_dot_is_judged_where_it_really_leads(workspace: Path) -> None:
    (workspace.parent / "outside" / "deep").mkdir()
    (workspace / "deep").symlink_to(workspace.parent / "outside" / "deep")

    # Lexically 'deep/../x' is 'x', but the kernel goes through the link first.
    with pytest.raises(ToolError, match="symlink"):
        resolve_in_workspace(workspace, "deep/../secret.txt")


def test_symlinks_that_stay_inside_are_followed(workspace: Path) -> None:
    (workspace / "real").mkdir()
    (workspace / "alias").symlink_to(workspace / "real")

    assert resolve_in_workspace(workspace, "alias/f.txt") == workspace.resolve() / "real" / "f.txt"


def test_a_workspace_reached_through_a_symlink_works(tmp_path: Path, workspace: Path) -> None:
    via = tmp_path / "via"
    via.symlink_to(workspace)

    assert resolve_in_workspace(via, "f.txt") == workspace.resolve() / "f.txt"


def test_without_following_the_last_part_a_link_is_the_link_itself(workspace: Path) -> None:
    link = workspace / "link.txt"
    link.symlink_to(workspace.parent / "outside" / "secret.txt")

    assert resolve_in_workspace(workspace, "link.txt", follow_last=False) == (
        workspace.resolve() / "link.txt"
    )
    assert link.is_symlink()
    with pytest.raises(ToolError, match="names the workspace itself"):
        resolve_in_workspace(workspace, ".", follow_last=False)
    with pytest.raises(ToolError, match=r"'\.\.' may not climb"):
        resolve_in_workspace(workspace, "..", follow_last=False)


def test_a_missing_workspace_is_made_on_first_use(tmp_path: Path) -> None:
    target = resolve_in_workspace(tmp_path / "new" / "ws", "a.txt")

    assert (tmp_path / "new" / "ws").is_dir()
    assert target == (tmp_path / "new" / "ws" / "a.txt").resolve()


def test_a_workspace_that_cannot_be_made_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")

    with pytest.raises(ToolError, match="cannot be made"):
        resolve_in_workspace(tmp_path / "file" / "ws", "a.txt")


def test_relative_names_are_shown_with_slashes(workspace: Path) -> None:
    root = workspace.resolve()

    assert relative_name(root, root / "a" / "b.txt") == "a/b.txt"
    assert relative_name(root, root) == "."
    assert os.sep not in relative_name(root, root / "x")
