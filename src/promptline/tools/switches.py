"""On/off switches of skills and tool packages, kept in one small JSON file in the PromptLine
home (``switches.json``) so a CLI command and a running gateway (which watches the file) agree.

The file maps a kind (``skills``, ``plugins``) to names and their state::

    {"skills": {"pdf-forms": false}, "plugins": {"acme-tools": true}}

A name that is not in the file has its default (skills found in a folder are on; a tool package
installed from a catalogue is off until enabled). Writes replace the file atomically.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

import orjson

from promptline.core.errors import ConfigError

__all__ = ["SWITCHES_FILE", "SwitchKind", "Switches"]

SWITCHES_FILE = "switches.json"
SwitchKind = Literal["skills", "plugins"]


class Switches:
    """Read and change the switches stored at ``path`` (re-read on every call: the file is
    tiny and another process may have changed it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def state(self, kind: SwitchKind, name: str) -> bool | None:
        """True/False when switched on/off, None when never switched."""
        value = self._read().get(kind, {}).get(name)
        return value if isinstance(value, bool) else None

    def is_enabled(self, kind: SwitchKind, name: str, *, default: bool) -> bool:
        """Whether ``name`` is on: its switch, or ``default`` when it has none."""
        found = self.state(kind, name)
        return default if found is None else found

    def all(self, kind: SwitchKind) -> dict[str, bool]:
        """Every switch of ``kind``."""
        return {k: v for k, v in self._read().get(kind, {}).items() if isinstance(v, bool)}

    def set(self, kind: SwitchKind, name: str, enabled: bool) -> None:
        """Switch ``name`` on or off."""
        with self._lock:
            data = self._read()
            data.setdefault(kind, {})[name] = enabled
            self._write(data)

    def forget(self, kind: SwitchKind, name: str) -> None:
        """Drop the switch of ``name`` (it goes back to its default)."""
        with self._lock:
            data = self._read()
            if data.get(kind, {}).pop(name, None) is not None:
                self._write(data)

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from exc
        if not raw.strip():
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(
                f"{self.path} is not valid JSON ({exc})",
                hint="fix it or delete it (every skill and tool package goes back to its default)",
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path} must hold a JSON object")
        return {k: v for k, v in data.items() if isinstance(v, dict)}

    def _write(self, data: dict[str, dict[str, object]]) -> None:
        from promptline.storage.files import write_atomically

        write_atomically(
            self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )
