"""State as JSON files, one per key, each replaced atomically; for development and one host.

Layout: ``<root>/<scope>/_<namespace>/<key>.json`` with names from `filenames`. Writers of a
namespace take an ``fcntl.flock`` on its ``.lock`` file, so compare-and-set holds across
processes; readers need no lock because a file is only ever swapped whole (``os.replace``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from promptline.core.clock import Clock, SystemClock, to_micros
from promptline.core.errors import StorageError
from promptline.state.codec import encode_value, expiry_micros, is_live, make_entry
from promptline.state.filenames import decode_name, encode_name
from promptline.state.protocols import Scope, StateEntry
from promptline.state.rules import (
    check_address,
    check_listing,
    check_namespace,
    check_write,
    version_conflict,
)
from promptline.storage.files import fsync_dir, open_private, private_dir, write_atomically

_SUFFIX = ".json"
_LOCK_FILE = ".lock"
_Record = dict[str, Any]


class FileStateStore:
    """`StateStore` on a directory tree of JSON files (POSIX only: it needs ``fcntl``)."""

    def __init__(self, root: Path | str, *, clock: Clock = SystemClock()) -> None:
        self._root = Path(root).expanduser()
        self._clock = clock
        # One asyncio lock per namespace so coroutines of this process queue here instead
        # of each parking a worker thread on the file lock.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @property
    def root(self) -> Path:
        """The directory the store lives in."""
        return self._root

    async def get(self, scope: Scope, key: str, *, namespace: str = "") -> StateEntry | None:
        """The live entry, or None (also when it has expired)."""
        check_address(scope, namespace, key)
        now = to_micros(self._clock.now())
        path = self._key_path(scope, namespace, key)
        record = await asyncio.to_thread(_read, path)
        if record is None or not is_live(record["expires_at"], now):
            return None
        _check_record(record, path, scope, namespace, key)
        return _entry(scope, record)

    async def set(
        self,
        scope: Scope,
        key: str,
        value: Any,
        *,
        namespace: str = "",
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> StateEntry:
        """Write ``value``; a compare-and-set when ``expected_version`` is given."""
        check_address(scope, namespace, key)
        check_write(scope, ttl, expected_version)
        data = encode_value(key, value)
        now = to_micros(self._clock.now())
        async with self._namespace_lock(scope, namespace):
            record = await asyncio.to_thread(
                self._set_locked,
                scope,
                namespace,
                key,
                data,
                now,
                expiry_micros(now, ttl),
                expected_version,
            )
        return _entry(scope, record)

    async def delete(
        self, scope: Scope, key: str, *, namespace: str = "", expected_version: int | None = None
    ) -> bool:
        """Remove the key; True if it was live. ``expected_version`` as in `set`."""
        check_address(scope, namespace, key)
        check_write(scope, None, expected_version)
        now = to_micros(self._clock.now())
        async with self._namespace_lock(scope, namespace):
            return await asyncio.to_thread(
                self._delete_locked, scope, namespace, key, now, expected_version
            )

    async def list(
        self, scope: Scope, *, namespace: str = "", prefix: str = "", limit: int | None = None
    ) -> list[StateEntry]:
        """Live entries whose key starts with ``prefix``, sorted by key, at most ``limit``."""
        check_namespace(scope, namespace)
        check_listing(prefix, limit)
        if limit == 0:
            return []
        now = to_micros(self._clock.now())
        records, expired = await asyncio.to_thread(
            self._list_unlocked, scope, namespace, prefix, limit, now
        )
        if expired:
            async with self._namespace_lock(scope, namespace):
                await asyncio.to_thread(self._remove_expired_locked, scope, namespace, expired, now)
        return [_entry(scope, record) for record in records]

    async def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""

    # -- paths and locks ----------------------------------------------------------------------

    def _namespace_dir(self, scope: Scope, namespace: str) -> Path:
        # The "_" keeps the global scope's empty namespace a valid directory name.
        return self._root / scope / ("_" + encode_name(namespace))

    def _key_path(self, scope: Scope, namespace: str, key: str) -> Path:
        return self._namespace_dir(scope, namespace) / (encode_name(key) + _SUFFIX)

    def _namespace_lock(self, scope: Scope, namespace: str) -> asyncio.Lock:
        lock = self._locks.get((scope, namespace))
        if lock is None:
            lock = asyncio.Lock()
            self._locks[(scope, namespace)] = lock
        return lock

    @contextlib.contextmanager
    def _file_lock(self, scope: Scope, namespace: str) -> Iterator[Path]:
        directory = self._namespace_dir(scope, namespace)
        try:
            private_dir(directory)
            # Held across the yield.
            handle = os.fdopen(open_private(directory / _LOCK_FILE, os.O_RDWR | os.O_APPEND), "a+b")
        except OSError as exc:
            raise _storage_error("open the lock file in", directory, exc) from exc
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield directory
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # -- blocking work, run in a worker thread ----------------------------------------------

    def _set_locked(
        self,
        scope: Scope,
        namespace: str,
        key: str,
        data: bytes,
        now: int,
        expires_at: int | None,
        expected_version: int | None,
    ) -> _Record:
        path = self._key_path(scope, namespace, key)
        with self._file_lock(scope, namespace):
            current = _live_version(_read(path), now)
            if expected_version is not None and expected_version != current:
                raise version_conflict(
                    scope, namespace, key, expected=expected_version, actual=current
                )
            record: _Record = {
                "scope": scope,
                "namespace": namespace,
                "key": key,
                "version": current + 1,
                "updated_at": now,
                "expires_at": expires_at,
                "value": orjson.Fragment(data),
            }
            _write_atomically(path, orjson.dumps(record))
        record["value"] = orjson.loads(data)
        return record

    def _delete_locked(
        self, scope: Scope, namespace: str, key: str, now: int, expected_version: int | None
    ) -> bool:
        path = self._key_path(scope, namespace, key)
        if not path.parent.exists():
            # Nothing was ever written here; do not create directories just to find that out.
            if expected_version:
                raise version_conflict(scope, namespace, key, expected=expected_version, actual=0)
            return False
        with self._file_lock(scope, namespace):
            record = _read(path)
            current = _live_version(record, now)
            if expected_version is not None and expected_version != current:
                raise version_conflict(
                    scope, namespace, key, expected=expected_version, actual=current
                )
            if record is not None:
                _remove(path)
        return current > 0

    def _list_unlocked(
        self, scope: Scope, namespace: str, prefix: str, limit: int | None, now: int
    ) -> tuple[builtins.list[_Record], builtins.list[Path]]:
        directory = self._namespace_dir(scope, namespace)
        wanted = prefix.encode("utf-8")
        candidates: builtins.list[tuple[bytes, Path, _Record | None]] = []
        try:
            names = [e.name for e in os.scandir(directory)]
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            raise _storage_error("list", directory, exc) from exc
        for name in names:
            if not name.endswith(_SUFFIX) or name.startswith("."):
                continue
            try:
                shown, hashed = decode_name(name[: -len(_SUFFIX)])
            except ValueError:
                continue  # not ours
            path = directory / name
            if not hashed:
                if shown.startswith(wanted):
                    candidates.append((shown, path, None))
                continue
            # A hashed name shows only the head of its key: read the file for the rest.
            if not (shown.startswith(wanted) or wanted.startswith(shown)):
                continue
            record = _read(path)
            if record is not None and record["key"].encode("utf-8").startswith(wanted):
                candidates.append((record["key"].encode("utf-8"), path, record))
        # UTF-8 byte order is Unicode code point order, the order every backend lists in.
        candidates.sort(key=lambda c: c[0])
        found: builtins.list[_Record] = []
        expired: builtins.list[Path] = []
        for _, path, known in candidates:
            if limit is not None and len(found) >= limit:
                break
            record = known if known is not None else _read(path)
            if record is None:
                continue  # deleted since the directory was read
            if is_live(record["expires_at"], now):
                found.append(record)
            else:
                expired.append(path)
        return found, expired

    def _remove_expired_locked(
        self, scope: Scope, namespace: str, paths: builtins.list[Path], now: int
    ) -> None:
        with self._file_lock(scope, namespace):
            for path in paths:
                record = _read(path)
                # Re-read under the lock: a writer may have renewed the key meanwhile.
                if record is not None and not is_live(record["expires_at"], now):
                    _remove(path)


def _entry(scope: Scope, record: _Record) -> StateEntry:
    return make_entry(
        scope,
        record["namespace"],
        record["key"],
        record["value"],
        record["version"],
        record["updated_at"],
        record["expires_at"],
    )


def _live_version(record: _Record | None, now: int) -> int:
    if record is None or not is_live(record["expires_at"], now):
        return 0
    return int(record["version"])


def _check_record(record: _Record, path: Path, scope: Scope, namespace: str, key: str) -> None:
    if (record.get("scope"), record.get("namespace"), record.get("key")) != (
        scope,
        namespace,
        key,
    ):
        raise StorageError(
            f"state file {path} holds another key ({record.get('key')!r})",
            hint="the file was copied or renamed by hand; move it back or delete it",
        )


def _read(path: Path) -> _Record | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _storage_error("read", path, exc) from exc
    try:
        record = orjson.loads(raw)
        if not isinstance(record, dict) or not {"key", "version", "value"} <= record.keys():
            raise ValueError("not a state record")
        record.setdefault("expires_at", None)
        return record
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        raise StorageError(
            f"state file {path} is damaged ({exc})",
            hint="delete the file (its key is lost) or restore it from a backup",
        ) from exc


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path`` whole (see `write_atomically`), readable by its owner only:
    a state value may be anything an agent or a grant keeps, secrets included."""
    try:
        write_atomically(path, data, mode=0o600)
    except OSError as exc:
        raise _storage_error("write", path, exc) from exc


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
    except OSError as exc:
        raise _storage_error("delete", path, exc) from exc


def _storage_error(action: str, path: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"cannot {action} state file {path}: {exc.strerror or exc}",
        hint="check that state.file_dir exists, is writable by this user and the disk has room",
        path=str(path),
    )
