"""Checksums of catalogue entries: SHA-256 of an archive's bytes, and a deterministic SHA-256
of a folder's tree (what `promptline tools checksum PATH` prints for publishers).

The tree checksum hashes, for every regular file and symlink under the folder in the order of
their relative POSIX paths (compared as UTF-8 bytes)::

    b"F" + path + b"\\0" + size as 8 bytes big-endian + content      (a file)
    b"L" + path + b"\\0" + link target + b"\\0"                      (a symlink)

Folders themselves (so empty ones), file modes and times do not count; ``__pycache__`` and
``.git`` folders are skipped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from promptline.core.errors import InvalidInputError, NotFoundError

__all__ = ["SKIPPED_FOLDERS", "checksum", "file_checksum", "tree_checksum", "tree_files"]

SKIPPED_FOLDERS = frozenset({"__pycache__", ".git"})
_CHUNK = 1 << 20


def checksum(path: Path) -> str:
    """The catalogue checksum of ``path``: `tree_checksum` for a folder, `file_checksum` for
    a file (an archive)."""
    if path.is_dir():
        return tree_checksum(path)
    if path.is_file():
        return file_checksum(path)
    raise NotFoundError(f"{path} does not exist", hint="give a folder or an archive")


def file_checksum(path: Path) -> str:
    """SHA-256 of the file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_files(root: Path) -> list[tuple[str, Path]]:
    """``(relative POSIX path, path)`` of every file and symlink under ``root``, sorted as the
    checksum hashes them; `InvalidInputError` for anything else (a device, a socket)."""
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        base = Path(folder)
        for name in list(dirs):
            path = base / name
            if path.is_symlink():
                dirs.remove(name)
                found.append((path.relative_to(root).as_posix(), path))
            elif name in SKIPPED_FOLDERS:
                dirs.remove(name)
        for name in files:
            path = base / name
            if not (path.is_symlink() or path.is_file()):
                raise InvalidInputError(f"{path} is neither a file, a folder nor a symlink")
            found.append((path.relative_to(root).as_posix(), path))
    found.sort(key=lambda item: item[0].encode("utf-8", "surrogateescape"))
    return found


def tree_checksum(root: Path) -> str:
    """The deterministic SHA-256 of the folder ``root`` (see the module docstring)."""
    if not root.is_dir():
        raise NotFoundError(f"{root} is not a folder")
    digest = hashlib.sha256()
    for relative, path in tree_files(root):
        name = relative.encode("utf-8", "surrogateescape")
        if path.is_symlink():
            target = os.readlink(path).encode("utf-8", "surrogateescape")
            digest.update(b"L" + name + b"\0" + target + b"\0")
            continue
        size = path.stat().st_size
        digest.update(b"F" + name + b"\0" + size.to_bytes(8, "big"))
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()
