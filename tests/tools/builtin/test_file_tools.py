"""file_read, file_write and file_delete: what they do inside the workspace, the limits they
keep, and their refusal to leave it."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptline.tools.base import ToolError
from promptline.tools.builtin import file_delete, file_read, file_write
from promptline.tools.builtin.file_read import MAX_READ_BYTES, MAX_READ_CHARS
from tools.support import call, listing

# --- file_read -----------------------------------------------------------------------------


async def test_file_read_returns_the_whole_text(workspace: Path) -> None:
    (workspace / "a.txt").write_text("one\ntwo\nthree\n")

    assert await call(file_read, workspace, path="a.txt") == "one\ntwo\nthree\n"


async def test_file_read_returns_a_range_of_lines(workspace: Path) -> None:
    (workspace / "a.txt").write_text("".join(f"line {n}\n" for n in range(1, 11)))

    text = await call(file_read, workspace, path="a.txt", offset=3, limit=2)

    assert text == "line 3\nline 4\n"


async def test_file_read_says_where_to_go_on_when_the_file_does_not_fit(workspace: Path) -> None:
    line = "x" * 99 + "\n"
    count = MAX_READ_CHARS // 100 + 50
    (workspace / "big.txt").write_text(line * count)

    text = await call(file_read, workspace, path="big.txt")

    shown = MAX_READ_CHARS // 100
    assert text.startswith(line * shown)
    assert text.endswith(
        f"[lines 1-{shown} of {count}; the rest did not fit in one answer: "
        f"call file_read with offset={shown + 1} to read on]"
    )
    rest = await call(file_read, workspace, path="big.txt", offset=shown + 1)
    assert rest == line * 50


async def test_file_read_refuses_binary_files(workspace: Path) -> None:
    (workspace / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    with pytest.raises(ToolError, match=r"'image\.png' is a binary file"):
        await call(file_read, workspace, path="image.png")


async def test_file_read_refuses_huge_files(workspace: Path) -> None:
    with (workspace / "huge.log").open("wb") as handle:
        handle.truncate(MAX_READ_BYTES + 1)  # sparse: no need to write 10 MiB

    with pytest.raises(ToolError, match="more than file_read's limit of 10 MiB") as caught:
        await call(file_read, workspace, path="huge.log")
    assert "codebase_search" in (caught.value.hint or "")


async def test_file_read_decodes_invalid_utf8_with_replacement_characters(
    workspace: Path,
) -> None:
    (workspace / "latin1.txt").write_bytes("café\n".encode("latin-1"))

    assert await call(file_read, workspace, path="latin1.txt") == "caf\ufffd\n"


@pytest.mark.parametrize(
    ("setup", "path", "message"),
    [
        (None, "missing.txt", "there is no file 'missing.txt'"),
        ("folder", "folder", "is a folder, not a file"),
        ("empty", "empty.txt", None),
    ],
)
async def test_file_read_reports_missing_files_and_folders(
    workspace: Path, setup: str | None, path: str, message: str | None
) -> None:
    if setup == "folder":
        (workspace / "folder").mkdir()
    if setup == "empty":
        (workspace / "empty.txt").write_text("")

    if message is None:
        assert await call(file_read, workspace, path=path) == "(the file is empty)"
        return
    with pytest.raises(ToolError, match=message):
        await call(file_read, workspace, path=path)


async def test_file_read_refuses_an_offset_past_the_end(workspace: Path) -> None:
    (workspace / "a.txt").write_text("one\n")

    with pytest.raises(ToolError, match=r"offset 5 is past the end of 'a\.txt', which has 1 lines"):
        await call(file_read, workspace, path="a.txt", offset=5)


def test_file_read_arguments_are_bounded() -> None:
    with pytest.raises(Exception, match="greater than or equal to 1"):
        file_read.validate({"path": "a", "offset": 0})
    assert file_read.read_only


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("../outside/secret.txt", r"'\.\.' may not climb"),
        ("/etc/passwd", "is absolute"),
        ("leak.txt", "symlink that resolves outside"),
        ("leakdir/secret.txt", "symlink that resolves outside"),
    ],
)
async def test_file_read_cannot_leave_the_workspace(workspace: Path, path: str, rule: str) -> None:
    (workspace / "leak.txt").symlink_to(workspace.parent / "outside" / "secret.txt")
    (workspace / "leakdir").symlink_to(workspace.parent / "outside")

    with pytest.raises(ToolError, match=rule):
        await call(file_read, workspace, path=path)


# --- file_write ----------------------------------------------------------------------------


async def test_file_write_creates_a_file_and_its_folders(workspace: Path) -> None:
    answer = await call(file_write, workspace, path="notes/day/1.md", content="# Day 1\n")

    assert (workspace / "notes" / "day" / "1.md").read_text() == "# Day 1\n"
    assert answer == "created notes/day/1.md (8 bytes)"


async def test_file_write_replaces_or_appends(workspace: Path) -> None:
    (workspace / "log.txt").write_text("old\n")

    replaced = await call(file_write, workspace, path="log.txt", content="new\n")
    appended = await call(file_write, workspace, path="log.txt", content="more\n", append=True)

    assert (workspace / "log.txt").read_text() == "new\nmore\n"
    assert replaced == "replaced log.txt (4 bytes)"
    assert appended == "appended 5 bytes to log.txt"


async def test_file_write_writes_utf8(workspace: Path) -> None:
    await call(file_write, workspace, path="u.txt", content="naïve ✓")

    assert (workspace / "u.txt").read_bytes() == "naïve ✓".encode()


async def test_file_write_refuses_a_folder_and_a_file_in_the_way(workspace: Path) -> None:
    (workspace / "dir").mkdir()
    (workspace / "file").write_text("x")

    with pytest.raises(ToolError, match="is a folder"):
        await call(file_write, workspace, path="dir", content="x")
    with pytest.raises(ToolError, match="a part of the path is a file"):
        await call(file_write, workspace, path="file/child.txt", content="x")


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("../outside/new.txt", r"'\.\.' may not climb"),
        ("/tmp/new.txt", "is absolute"),
        ("leak.txt", "symlink that resolves outside"),
        ("leakdir/new.txt", "symlink that resolves outside"),
        ("leakdir/sub/new.txt", "symlink that resolves outside"),
    ],
)
async def test_file_write_cannot_leave_the_workspace(workspace: Path, path: str, rule: str) -> None:
    outside = workspace.parent / "outside"
    (workspace / "leak.txt").symlink_to(outside / "secret.txt")
    (workspace / "leakdir").symlink_to(outside)

    with pytest.raises(ToolError, match=rule):
        await call(file_write, workspace, path=path, content="pwned")

    assert (outside / "secret.txt").read_text() == "top secret\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


# --- file_delete ---------------------------------------------------------------------------


async def test_file_delete_removes_a_file(workspace: Path) -> None:
    (workspace / "a.txt").write_text("x")

    assert await call(file_delete, workspace, path="a.txt") == "deleted a.txt"
    assert not (workspace / "a.txt").exists()
    assert file_delete.destructive


async def test_file_delete_removes_folders_only_when_asked_if_not_empty(workspace: Path) -> None:
    (workspace / "empty").mkdir()
    (workspace / "full" / "sub").mkdir(parents=True)
    (workspace / "full" / "sub" / "f.txt").write_text("x")

    assert await call(file_delete, workspace, path="empty") == "deleted the empty folder empty"
    with pytest.raises(ToolError, match="is a folder that is not empty") as caught:
        await call(file_delete, workspace, path="full")
    assert caught.value.hint == "pass recursive=true to delete it with everything in it"
    answer = await call(file_delete, workspace, path="full", recursive=True)

    assert answer == "deleted the folder full and the 2 entries in it"
    assert listing(workspace) == []


async def test_file_delete_removes_a_symlink_not_its_target(workspace: Path) -> None:
    outside = workspace.parent / "outside"
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    (workspace / "linkdir").symlink_to(outside)

    await call(file_delete, workspace, path="link.txt")
    await call(file_delete, workspace, path="linkdir", recursive=True)

    assert listing(workspace) == []
    assert (outside / "secret.txt").read_text() == "top secret\n"


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("../outside/secret.txt", r"'\.\.' may not climb"),
        ("/etc/hostname", "is absolute"),
        ("linkdir/secret.txt", "symlink that resolves outside"),
        (".", "names the workspace itself"),
    ],
)
async def test_file_delete_cannot_leave_the_workspace(
    workspace: Path, path: str, rule: str
) -> None:
    (workspace / "linkdir").symlink_to(workspace.parent / "outside")

    with pytest.raises(ToolError, match=rule):
        await call(file_delete, workspace, path=path)

    assert (workspace.parent / "outside" / "secret.txt").exists()


async def test_file_delete_reports_a_missing_path(workspace: Path) -> None:
    with pytest.raises(ToolError, match="there is no file or folder 'ghost'"):
        await call(file_delete, workspace, path="ghost")
