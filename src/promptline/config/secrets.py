"""The encrypted secret store: named values in ``<home>/secrets.json``, each encrypted (Fernet)
under a master key from ``$PROMPTLINE_SECRETS_KEY`` or ``<home>/secrets.key``.

``cryptography`` is imported only when a value is encrypted or decrypted, so listing names
and loading a configuration without ``${secret:NAME}`` references cost nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptline.config.home import promptline_home
from promptline.core.errors import ConfigError, InvalidInputError, NotFoundError
from promptline.storage.files import fsync_dir, open_private, write_atomically

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = [
    "KEY_FILE_NAME",
    "SECRETS_KEY_ENV",
    "SECRET_NAME",
    "STORE_FILE_NAME",
    "Rotation",
    "SecretInfo",
    "SecretStore",
    "check_secret_name",
]

SECRETS_KEY_ENV = "PROMPTLINE_SECRETS_KEY"
STORE_FILE_NAME = "secrets.json"
KEY_FILE_NAME = "secrets.key"
PENDING_SUFFIX = ".new"
FORMAT_VERSION = 1
SECRET_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
"""A secret's name: an upper-case letter, then upper-case letters, digits and ``_``."""


def check_secret_name(name: str) -> str:
    """``name`` when it is a valid secret name; `InvalidInputError` with the rule otherwise."""
    if not SECRET_NAME.fullmatch(name):
        raise InvalidInputError(
            f"{name!r} is not a valid secret name",
            hint="a name is an upper-case letter, then upper-case letters, digits and _ "
            "(e.g. OPENAI_API_KEY)",
        )
    return name


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown of a secret: its name and when it was set (never its value)."""

    name: str
    set_at: str
    """ISO 8601 time in UTC."""


@dataclass(frozen=True)
class Rotation:
    """The outcome of `SecretStore.rotate`."""

    count: int
    """How many values were re-encrypted."""
    new_key: str | None
    """The new master key when the old one came from ``$PROMPTLINE_SECRETS_KEY`` (it is kept
    nowhere: the caller must hand it over); None when it was written to the key file."""


class SecretStore:
    """The store of one home. Reads go to the file each time: another process may have
    changed it (``promptline secrets set`` while a gateway runs)."""

    def __init__(self, home: Path | None = None, environ: Mapping[str, str] | None = None):
        self._env = os.environ if environ is None else environ
        self.home = home if home is not None else promptline_home(self._env)
        self.path = self.home / STORE_FILE_NAME
        self.key_path = self.home / KEY_FILE_NAME

    @classmethod
    def for_environment(cls, environ: Mapping[str, str] | None = None) -> SecretStore:
        """The store of the home that ``environ`` (default ``os.environ``) names."""
        return cls(None, environ)

    @property
    def key_source(self) -> str:
        """Where the master key comes from, in words, for messages."""
        if self._env.get(SECRETS_KEY_ENV):
            return f"environment variable {SECRETS_KEY_ENV}"
        return f"key file {self.key_path}"

    # -- reading ---------------------------------------------------------------------------

    def listing(self) -> list[SecretInfo]:
        """Every secret's name and time of setting, by name; needs no master key."""
        entries = self._read()
        return [SecretInfo(name, str(entries[name].get("set_at", ""))) for name in sorted(entries)]

    def get(self, name: str) -> str | None:
        """The value of secret ``name``, or None when the store has no such secret.

        Raises `ConfigError` when the master key is missing, refused or not the one the value
        was encrypted with.
        """
        entries = self._read()
        entry = entries.get(name)
        if entry is None:
            return None
        return self._decrypt(self._keys(create=False), name, entry)

    # -- writing ---------------------------------------------------------------------------

    def set(self, name: str, value: str) -> None:
        """Store ``value`` as secret ``name`` (replacing any value it had).

        The first secret of a home without ``$PROMPTLINE_SECRETS_KEY`` makes the key file. The
        values already stored are checked to decrypt first, so one store never mixes keys.
        """
        check_secret_name(name)
        if not value:
            raise InvalidInputError(
                f"the value of secret {name} is empty", hint="give the value on stdin"
            )
        with self._locked():
            entries = self._read()
            keys = self._keys(create=not entries)
            for other, entry in entries.items():
                self._decrypt(keys, other, entry)
            entries[name] = {
                "value": keys[0].encrypt(value.encode("utf-8")).decode("ascii"),
                "set_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            }
            self._write(entries)

    def delete(self, name: str) -> None:
        """Remove secret ``name``; `NotFoundError` when there is none."""
        with self._locked():
            entries = self._read()
            if entries.pop(name, None) is None:
                raise self._unknown(name)
            self._write(entries)

    def rotate(self) -> Rotation:
        """Re-encrypt every value under a new master key; the old key is kept nowhere after.

        With a key file the new key is written beside it first (``secrets.key.new``), then the
        store, then the new key replaces the old: a rotation cut short leaves a store that the
        key files still open (reads try both), and the next rotation first finishes it, so
        that no key the store may still need is ever overwritten.
        """
        from cryptography.fernet import Fernet

        with self._locked():
            entries = self._read()
            old = self._keys(create=not entries)
            for name, entry in entries.items():
                self._decrypt(old, name, entry)
            if len(old) > 1:  # the pending key of a rotation cut short
                entries = _reencrypted(entries, old[1], old)
                self._write(entries)
                self._promote_pending()
                old = old[1:]
            new_key = Fernet.generate_key()
            rotated = _reencrypted(entries, Fernet(new_key), old)
            if self._env.get(SECRETS_KEY_ENV):
                self._write(rotated)
                return Rotation(len(rotated), new_key.decode("ascii"))
            write_atomically(self._pending_path(), new_key + b"\n")
            self._write(rotated)
            self._promote_pending()
            return Rotation(len(rotated), None)

    # -- the file --------------------------------------------------------------------------

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(
                f"the secrets store {self.path} cannot be read: {exc.strerror}",
                hint=f"check the file's owner and mode (chmod 600 {self.path})",
            ) from None
        try:
            document = json.loads(raw)
            entries = document["secrets"]
            if document.get("version") != FORMAT_VERSION or not isinstance(entries, dict):
                raise ValueError
            for entry in entries.values():
                if not isinstance(entry, dict) or not isinstance(entry.get("value"), str):
                    raise ValueError
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"the secrets store {self.path} is damaged (not a store of version "
                f"{FORMAT_VERSION})",
                hint="restore it from a backup, or move it away and set the secrets again "
                "with `promptline secrets set NAME`",
            ) from None
        return entries

    def _write(self, entries: Mapping[str, Any]) -> None:
        document = {"version": FORMAT_VERSION, "secrets": dict(sorted(entries.items()))}
        write_atomically(self.path, json.dumps(document, indent=2).encode("utf-8") + b"\n")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Writers take turns, so two `set`s at once both land."""
        fd = open_private(self.home / f".{STORE_FILE_NAME}.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- the master key --------------------------------------------------------------------

    def _pending_path(self) -> Path:
        return self.key_path.with_name(KEY_FILE_NAME + PENDING_SUFFIX)

    def _promote_pending(self) -> None:
        """The pending key replaces the key file (the store is already under it)."""
        os.replace(self._pending_path(), self.key_path)
        fsync_dir(self.home)

    def _keys(self, *, create: bool) -> list[Fernet]:
        """The master key, and a rotation's pending key if one was cut short."""
        from cryptography.fernet import Fernet

        raw = self._env.get(SECRETS_KEY_ENV)
        if raw:
            return [_fernet(raw.strip(), f"environment variable {SECRETS_KEY_ENV}")]
        keys: list[Fernet] = []
        if not self.key_path.exists():
            if not create:
                raise ConfigError(
                    f"the secrets store {self.path} has secrets but there is no master key: "
                    f"{SECRETS_KEY_ENV} is not set and {self.key_path} does not exist",
                    hint=f"export {SECRETS_KEY_ENV} with the key the secrets were stored "
                    f"under, or put it back in {self.key_path} (mode 0600)",
                )
            write_atomically(self.key_path, Fernet.generate_key() + b"\n")
        keys.append(_fernet(_read_key_file(self.key_path), f"key file {self.key_path}"))
        pending = self._pending_path()
        if pending.exists():
            keys.append(_fernet(_read_key_file(pending), f"key file {pending}"))
        return keys

    def _decrypt(self, keys: list[Fernet], name: str, entry: Mapping[str, Any]) -> str:
        from cryptography.fernet import InvalidToken, MultiFernet

        try:
            return MultiFernet(keys).decrypt(str(entry["value"]).encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise ConfigError(
                f"secret {name} in {self.path} cannot be decrypted with the master key from "
                f"the {self.key_source}: it is not the key the secrets were stored under",
                hint=f"use the key they were stored under ({SECRETS_KEY_ENV} or "
                f"{self.key_path}); after `promptline secrets rotate` only the new key opens "
                "them",
            ) from None

    def _unknown(self, name: str) -> NotFoundError:
        known = ", ".join(sorted(self._read())) or "none"
        return NotFoundError(
            f"there is no secret {name} in {self.path} (secrets: {known})",
            hint="`promptline secrets list` shows the names",
        )


def _reencrypted(
    entries: Mapping[str, dict[str, Any]], new: Fernet, old: list[Fernet]
) -> dict[str, dict[str, Any]]:
    """``entries`` with every value encrypted under ``new`` (each opened with ``old``)."""
    from cryptography.fernet import MultiFernet

    keys = MultiFernet([new, *old])
    return {
        name: {**entry, "value": keys.rotate(str(entry["value"]).encode("ascii")).decode("ascii")}
        for name, entry in entries.items()
    }


def _fernet(key: str | bytes, where: str) -> Fernet:
    from cryptography.fernet import Fernet

    try:
        return Fernet(key)
    except (ValueError, TypeError):
        raise ConfigError(
            f"the master key in the {where} is not a Fernet key",
            hint="a master key is 32 random bytes in url-safe base64 (44 characters), as "
            "`promptline secrets rotate` makes",
        ) from None


def _read_key_file(path: Path) -> bytes:
    """The key in ``path``, refused when others may read the file."""
    try:
        mode = path.stat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise ConfigError(
                f"the secrets master key file {path} may be read by others "
                f"(mode {stat.S_IMODE(mode):04o}), so it is refused",
                hint=f"chmod 600 {path}",
            )
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"the secrets master key file {path} cannot be read: {exc.strerror}",
            hint=f"check the file's owner and mode (chmod 600 {path})",
        ) from None
