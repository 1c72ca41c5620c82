"""Unpacking an entry safely: archives (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``) and folders
are written into a fresh folder without ever leaving it.

Refused: absolute paths, ``..``, backslashes, hard links, devices and other special files,
symlinks that resolve outside the folder, and more bytes or files than the limits allow
(counted as they are written, not as the archive claims).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from promptline.core.errors import InvalidInputError
from promptline.tools.catalogue.checksum import tree_files

__all__ = [
    "ARCHIVE_SUFFIXES",
    "ArchiveLimits",
    "UnsafeArchiveError",
    "archive_kind",
    "copy_tree",
    "unpack_archive",
]

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_CHUNK = 1 << 20


class UnsafeArchiveError(InvalidInputError):
    """An archive or folder would write outside its destination, or is too big."""

    code = "unsafe_archive"


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """How big an entry may be: the archive file, all its files unpacked, their number."""

    max_archive_bytes: int = 100 * 1024 * 1024
    max_unpacked_bytes: int = 256 * 1024 * 1024
    max_files: int = 10_000


def archive_kind(path: Path) -> str | None:
    """``tar`` or ``zip`` for a supported archive name, else None."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    return None


class _Writer:
    """Writes members under ``root``: files and folders at once, symlinks at the end (so
    nothing is ever written through a link), then checks where every link leads."""

    def __init__(self, root: Path, limits: ArchiveLimits, origin: str) -> None:
        self.root = root
        self.limits = limits
        self.origin = origin
        self.written = 0
        self.count = 0
        self.links: list[tuple[str, str]] = []
        root.mkdir(parents=True, exist_ok=True)

    def refuse(self, member: str, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{self.origin}: {member!r} {why}; nothing was installed",
            hint="the publisher must fix the entry",
        )

    def clean(self, member: str) -> str:
        """The member's relative path, checked."""
        if not member or "\0" in member or "\\" in member:
            raise self.refuse(member, "is not a valid relative path")
        if member.startswith("/") or (len(member) > 1 and member[1] == ":"):
            raise self.refuse(member, "is an absolute path")
        parts = [p for p in member.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(member, "climbs out with '..'")
        return "/".join(parts)

    def _count(self) -> None:
        self.count += 1
        if self.count > self.limits.max_files:
            raise self.refuse(self.origin, f"holds more than {self.limits.max_files} files")

    def folder(self, member: str) -> None:
        relative = self.clean(member)
        if relative:
            (self.root / relative).mkdir(parents=True, exist_ok=True)

    def file(self, member: str, source: IO[bytes]) -> None:
        relative = self.clean(member)
        if not relative:
            raise self.refuse(member, "is not a file name")
        self._count()
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as out:
            while chunk := source.read(_CHUNK):
                self.written += len(chunk)
                if self.written > self.limits.max_unpacked_bytes:
                    raise self.refuse(
                        self.origin,
                        f"unpacks to more than {self.limits.max_unpacked_bytes} bytes",
                    )
                out.write(chunk)

    def link(self, member: str, target: str) -> None:
        relative = self.clean(member)
        if not relative:
            raise self.refuse(member, "is not a link name")
        if not target or target.startswith("/") or "\0" in target or "\\" in target:
            raise self.refuse(member, f"is a symlink to {target!r}, outside the entry")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target))
        if joined == ".." or joined.startswith("../"):
            raise self.refuse(member, f"is a symlink to {target!r}, outside the entry")
        self._count()
        self.links.append((relative, target))

    def finish(self) -> None:
        root = self.root.resolve()
        for relative, target in self.links:
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                raise self.refuse(relative, "is given twice")
            os.symlink(target, path)
        # Links may lead through other links: judge each by where it really ends up.
        for relative, target in self.links:
            real = Path(os.path.realpath(self.root / relative))
            if not real.is_relative_to(root):
                raise self.refuse(relative, f"is a symlink to {target!r}, outside the entry")


def unpack_archive(
    archive: Path, destination: Path, limits: ArchiveLimits, *, origin: str | None = None
) -> None:
    """Unpack ``archive`` into the new folder ``destination`` (which must not exist);
    `UnsafeArchiveError` (with nothing left behind) when a member is not safe."""
    origin = origin or archive.name
    size = archive.stat().st_size
    if size > limits.max_archive_bytes:
        raise UnsafeArchiveError(
            f"{origin} is {size} bytes, more than the {limits.max_archive_bytes} allowed",
            hint="the publisher must make it smaller",
        )
    kind = archive_kind(archive)
    if kind is None:
        raise InvalidInputError(
            f"{origin} is not a supported archive", hint=f"use {', '.join(ARCHIVE_SUFFIXES)}"
        )
    writer = _Writer(destination, limits, origin)
    try:
        if kind == "tar":
            _unpack_tar(archive, writer)
        else:
            _unpack_zip(archive, writer)
        writer.finish()
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise


def _unpack_tar(archive: Path, writer: _Writer) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isdir():
                    writer.folder(member.name)
                elif member.isreg():
                    source = tar.extractfile(member)
                    if source is None:  # pragma: no cover - isreg() members always have data
                        raise writer.refuse(member.name, "has no data")
                    with source:
                        writer.file(member.name, source)
                elif member.issym():
                    writer.link(member.name, member.linkname)
                elif member.islnk():
                    raise writer.refuse(member.name, "is a hard link")
                else:
                    raise writer.refuse(member.name, "is a device or another special file")
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FileExistsError):
            raise writer.refuse(str(exc.filename), "is given twice") from None
        raise InvalidInputError(f"{writer.origin} is not a readable archive: {exc}") from exc


def _unpack_zip(archive: Path, writer: _Writer) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                # Unix file type bits, when the archiver wrote them (0: a plain entry).
                file_type = stat.S_IFMT(info.external_attr >> 16)
                if file_type == stat.S_IFLNK:
                    target = zf.read(info).decode("utf-8", "surrogateescape")
                    writer.link(info.filename, target)
                elif info.is_dir():
                    writer.folder(info.filename)
                elif file_type not in (0, stat.S_IFREG):
                    raise writer.refuse(info.filename, "is a device or another special file")
                else:
                    with zf.open(info) as source:
                        writer.file(info.filename, source)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, FileExistsError):
            raise writer.refuse(str(exc.filename), "is given twice") from None
        raise InvalidInputError(f"{writer.origin} is not a readable archive: {exc}") from exc


def copy_tree(source: Path, destination: Path, limits: ArchiveLimits, *, origin: str) -> None:
    """Copy the folder ``source`` into the new folder ``destination`` with the same rules as
    an archive (symlinks must stay inside; ``__pycache__`` and ``.git`` are left out)."""
    writer = _Writer(destination, limits, origin)
    try:
        for relative, path in tree_files(source):
            if path.is_symlink():
                writer.link(relative, os.readlink(path))
            else:
                with path.open("rb") as handle:
                    writer.file(relative, handle)
        writer.finish()
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise
