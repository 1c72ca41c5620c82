"""What was installed from a catalogue: ``<home>/installed.json``, one record per skill or
tool package with its version, source, checksum and folder, so uninstall removes exactly that
and refuses anything it did not put there."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from promptline.core.errors import ConfigError
from promptline.storage.files import write_atomically
from promptline.tools.catalogue.index import EntryKind

__all__ = ["INSTALLED_FILE", "InstalledItem", "InstalledRecords"]

INSTALLED_FILE = "installed.json"
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class InstalledItem:
    """One skill or tool package put in place by `Catalogue.install`."""

    name: str
    kind: EntryKind
    version: str
    source: str
    sha256: str
    path: str
    installed_at: str
    requires: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also the stored form)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "source": self.source,
            "sha256": self.sha256,
            "path": self.path,
            "installed_at": self.installed_at,
            "requires": list(self.requires),
        }


class InstalledRecords:
    """The records in ``path`` (re-read on every call; writes replace the file atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def all(self) -> list[InstalledItem]:
        """Every record, by kind then name."""
        return sorted(self._read(), key=lambda item: (item.kind, item.name))

    def get(self, name: str, kind: EntryKind | None = None) -> list[InstalledItem]:
        """The records of ``name`` (of ``kind`` when given)."""
        return [i for i in self.all() if i.name == name and (kind is None or i.kind == kind)]

    def add(self, item: InstalledItem) -> None:
        """Record ``item`` (replacing a record of the same kind and name)."""
        with self._lock:
            items = [i for i in self._read() if (i.kind, i.name) != (item.kind, item.name)]
            self._write([*items, item])

    def remove(self, item: InstalledItem) -> None:
        """Forget the record of ``item``'s kind and name."""
        with self._lock:
            items = self._read()
            self._write([i for i in items if (i.kind, i.name) != (item.kind, item.name)])

    def _read(self) -> list[InstalledItem]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            data = orjson.loads(raw) if raw.strip() else {}
            items = data.get("items", []) if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ValueError("items must be a list")
            return [
                InstalledItem(
                    name=str(i["name"]),
                    kind=i["kind"],
                    version=str(i["version"]),
                    source=str(i["source"]),
                    sha256=str(i["sha256"]),
                    path=str(i["path"]),
                    installed_at=str(i.get("installed_at", "")),
                    requires=tuple(i.get("requires") or ()),
                )
                for i in items
                if i.get("kind") in ("skill", "tools")
            ]
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{self.path} is damaged ({exc})",
                hint="restore it, or delete it and reinstall what it listed",
            ) from exc

    def _write(self, items: list[InstalledItem]) -> None:
        data = {"format": _FORMAT, "items": [i.to_dict() for i in items]}
        write_atomically(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
