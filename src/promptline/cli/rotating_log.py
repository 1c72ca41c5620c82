"""A text stream that appends to a log file and rotates it by size (``gateway.log`` ->
``gateway.log.1`` -> ... -> ``gateway.log.N``), for a process whose output has no terminal."""

from __future__ import annotations

import contextlib
import io
import os
import threading
from pathlib import Path

__all__ = ["DEFAULT_BACKUPS", "DEFAULT_MAX_BYTES", "RotatingLog", "backups_of"]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5


class RotatingLog(io.TextIOBase):
    """Append-only writes to ``path``; when a write would take it past ``max_bytes`` the file
    is rotated first, keeping ``backups`` older files.

    With ``redirect_fds`` the process's file descriptors 1 and 2 follow the current file, so
    what bypasses ``sys.stdout``/``sys.stderr`` (a crash of the interpreter, a C library)
    lands in the log too.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        redirect_fds: bool = False,
    ) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._redirect = redirect_fds
        self._lock = threading.Lock()
        self._fd = -1
        self._size = 0
        self._open()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        data = text.encode("utf-8", errors="replace")
        with self._lock:
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self._size += len(data)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered: every write goes straight to the file."""

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        super().close()

    def _open(self) -> None:
        from promptline.storage.files import open_private

        # A log holds what clients asked for: it is readable by its owner only.
        self._fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size
        if self._redirect:
            os.dup2(self._fd, 1)
            os.dup2(self._fd, 2)

    def _rotate(self) -> None:
        os.close(self._fd)
        files = backups_of(self.path, self.backups)
        with contextlib.suppress(FileNotFoundError):
            files[-1].unlink()
        for older, newer in zip(reversed(files[1:]), reversed(files[:-1]), strict=True):
            with contextlib.suppress(FileNotFoundError):
                newer.rename(older)
        self._open()


def backups_of(path: Path, backups: int) -> list[Path]:
    """``path`` and its rotated copies, newest first: ``[log, log.1, ..., log.N]``."""
    return [path] + [path.with_name(f"{path.name}.{n}") for n in range(1, backups + 1)]
