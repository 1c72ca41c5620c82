"""The output of a tool's command saved to a bounded file of the workspace (head and tail when
huge), so the model can read all of it with ``file_read``."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO

from promptline.storage.files import PRIVATE_FILE_MODE, private_dir
from promptline.tools.base import ToolError
from promptline.tools.builtin.file_read import MAX_READ_BYTES
from promptline.tools.builtin.workspace import resolve_in_workspace, workspace_root

__all__ = ["MAX_OUTPUT_FILE_BYTES", "OUTPUT_FOLDER", "OutputFile"]

OUTPUT_FOLDER = ".promptline/tool-output"
"""Where, in the workspace, the output files of commands are kept."""

MAX_OUTPUT_FILE_BYTES = MAX_READ_BYTES
"""The most an output file holds: as much as ``file_read`` reads, so the model can page
through any of them. A command that prints more has its head and tail kept, and a line in
between says how much was cut; a runaway command cannot fill the disk."""

OUTPUT_FILE_TAIL_BYTES = 1024 * 1024
"""How much of the end of a cut output its file keeps (the only part held in memory)."""


class OutputFile:
    """The whole output of one command in a file of the workspace, up to ``limit`` bytes.

    Past the limit the file keeps the first bytes and, once closed, the last ``tail`` ones
    around a line saying how many were cut; only that tail is held in memory. A write that
    fails (a full disk) stops the writing and is kept in `error`, never raised: the command
    and its answer go on without the file.
    """

    def __init__(
        self,
        file: BinaryIO,
        name: str,
        *,
        limit: int = MAX_OUTPUT_FILE_BYTES,
        tail: int = OUTPUT_FILE_TAIL_BYTES,
    ) -> None:
        self.name = name
        """The file's path relative to the workspace root, with ``/``."""
        self.total = 0
        """Bytes of output written to the file or cut from it."""
        self.error: str | None = None
        self._file = file
        self._tail_limit = min(tail, limit // 2)
        # Room for the line that says what was cut.
        self._head_limit = max(0, limit - self._tail_limit - 160)
        self._head = 0
        self._head_open = True
        self._tail = bytearray()
        self._closed = False
        self._cut = 0

    @classmethod
    def create(
        cls,
        workspace: Path,
        call_id: str,
        *,
        limit: int = MAX_OUTPUT_FILE_BYTES,
        tail: int = OUTPUT_FILE_TAIL_BYTES,
    ) -> OutputFile:
        """A new file in the workspace's `OUTPUT_FOLDER`, named after ``call_id``.

        The name keeps only letters, digits, ``_`` and ``-`` of the id, and gets ``-2``,
        ``-3``... when taken (ids may repeat across runs): an existing file is never
        reopened, and the folder may not lead out of the workspace (`ToolError`). The folder
        gets a ``.gitignore`` so that ``git add --all`` leaves the files out.
        """
        folder = resolve_in_workspace(workspace, OUTPUT_FOLDER)
        try:
            private_dir(folder)
            with contextlib.suppress(FileExistsError), _create(folder / ".gitignore") as ignore:
                ignore.write(b"*\n")
            stem = re.sub(r"[^A-Za-z0-9_-]", "_", call_id)[:64] or "call"
            file = None
            for n in range(1, 101):
                name = f"{stem}.log" if n == 1 else f"{stem}-{n}.log"
                with contextlib.suppress(FileExistsError):
                    file = _create(folder / name)
                    break
            if file is None:  # a hundred calls with this id: stop counting
                name = f"{stem}-{secrets.token_hex(8)}.log"
                file = _create(folder / name)
        except OSError as exc:
            raise ToolError(
                f"cannot save the command's output in {OUTPUT_FOLDER}: {exc.strerror or exc}",
                hint="make the workspace writable, or remove what is in the way there",
            ) from exc
        root = workspace_root(workspace)
        return cls(file, (folder / name).relative_to(root).as_posix(), limit=limit, tail=tail)

    @property
    def cut(self) -> int:
        """Bytes of output the file does not hold (between its head and its tail)."""
        if self._closed:
            return self._cut
        return self.total - self._head - min(len(self._tail), self._tail_limit)

    def write(self, text: str) -> None:
        """Append ``text`` (as UTF-8) to the file, or to the kept tail once the head is full."""
        if self._closed:
            return
        data = text.encode("utf-8", "replace")
        self.total += len(data)
        if self._head_open:
            if len(data) <= self._head_limit - self._head:
                self._put(data)
                self._head += len(data)
                return
            # The head ends here, at the start of a character; the rest begins the tail.
            split = _char_start(data, self._head_limit - self._head, back=True)
            self._put(data[:split])
            self._head += split
            self._head_open = False
            data = data[split:]
        self._tail += data
        if len(self._tail) > 2 * self._tail_limit:
            del self._tail[: len(self._tail) - self._tail_limit]

    def close(self) -> None:
        """Write the kept tail, after a line saying how much was cut, and close the file."""
        if self._closed:
            return
        tail = bytes(self._tail[max(0, len(self._tail) - self._tail_limit) :])
        tail = tail[_char_start(tail, 0) :]
        self._closed = True
        self._cut = self.total - self._head - len(tail)
        if self._cut:
            self._put(
                f"\n[... {self._cut} bytes cut: this file keeps the first {self._head} and the "
                f"last {len(tail)} bytes of the output ...]\n".encode()
            )
        self._put(tail)
        self._tail = bytearray()
        try:
            self._file.close()
        except OSError as exc:
            self.error = self.error or exc.strerror or str(exc)

    def _put(self, data: bytes) -> None:
        if self.error is not None or not data:
            return
        try:
            self._file.write(data)
        except OSError as exc:
            self.error = exc.strerror or str(exc)


def _create(path: Path) -> BinaryIO:
    """``path`` made and opened for writing; never an existing file, never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    return os.fdopen(fd, "wb", buffering=64 * 1024)


def _char_start(data: bytes, index: int, *, back: bool = False) -> int:
    """``index`` moved past UTF-8 continuation bytes (forward, or ``back``) to where a
    character starts, so a cut never splits one."""
    if back:
        while 0 < index < len(data) and data[index] & 0xC0 == 0x80:
            index -= 1
    else:
        while index < len(data) and data[index] & 0xC0 == 0x80:
            index += 1
    return index
