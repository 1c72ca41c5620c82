"""``promptline logs``: the end of the resident gateway's log, and (``-f``) what it writes next,
across rotations."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import BinaryIO, TextIO

from promptline.cli.rotating_log import DEFAULT_BACKUPS, backups_of
from promptline.cli.runtime import CliOptions, console, friendly_errors

__all__ = ["FOLLOW_POLL_SECONDS", "last_lines", "logs"]

FOLLOW_POLL_SECONDS = 0.2


def last_lines(
    path: Path, count: int, *, backups: int = DEFAULT_BACKUPS, current: bytes | None = None
) -> list[str]:
    """The last ``count`` lines of the log at ``path``, reaching into its rotated copies when
    the current file holds fewer. ``current`` is the current file's content, when read already."""
    if count <= 0:
        return []
    files = backups_of(path, backups)
    if current is None:
        texts = [_read(file) for file in files]
    else:
        texts = [current.decode("utf-8", errors="replace")] + [_read(f) for f in files[1:]]
    found: list[str] = []
    for text in texts:  # newest first
        if text:
            found = text.splitlines()[-(count - len(found)) :] + found
        if len(found) >= count:
            break
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def logs(options: CliOptions, *, lines: int, follow: bool) -> None:
    """Print the last ``lines`` lines; with ``follow``, keep printing until Ctrl-C."""
    from promptline.cli.daemon import gateway_files

    path = gateway_files().log_file
    handle = _open_at_start(path)
    if handle is None and not follow:
        console(stderr=True).print(
            f"no gateway log yet ({path}): `promptline start` writes it", markup=False
        )
        return
    # What is printed and what is followed are cut at the same byte: nothing twice, none lost.
    current = handle.read() if handle is not None else b""
    out = sys.stdout
    for line in last_lines(path, lines, current=current):
        out.write(line + "\n")
    out.flush()
    if handle is not None and not follow:
        handle.close()
    if follow:
        with friendly_errors():
            _follow(path, out, handle)


def _follow(path: Path, out: TextIO, handle: BinaryIO | None) -> None:
    while True:
        if handle is None:
            handle = _open_at_start(path)
        if handle is not None:
            chunk = handle.read()
            if chunk:
                out.write(chunk.decode("utf-8", errors="replace"))
                out.flush()
            elif _replaced(path, handle):
                # Rotated: what was written to the old file has been read; go on in the new one.
                handle.close()
                handle = _open_at_start(path)
                continue
        time.sleep(FOLLOW_POLL_SECONDS)


def _open_at_start(path: Path) -> BinaryIO | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


def _replaced(path: Path, handle: BinaryIO) -> bool:
    try:
        current = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(handle.fileno())
    return current.st_ino != opened.st_ino or current.st_size < handle.tell()
