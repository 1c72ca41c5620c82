"""The index file of a catalogue source (``promptline-index.yaml``): what it offers, with
versions, dependencies, where each entry lies and its checksum.

Format 1::

    format: 1
    entries:
      - name: pdf-forms             # letters, digits, '-', '_'
        kind: skill                 # skill | tools
        version: "1.2.0"            # a string; quote it
        description: Fill in PDF forms.
        tags: [pdf, forms]
        requires: [pdf-tools]       # skills or tool packages, by name
        path: skills/pdf-forms      # a folder, or a .tar.gz/.tgz/.tar/.zip archive
        sha256: 9f86d0...           # `promptline tools checksum PATH`

``path`` is relative to the folder holding the index file and may not leave the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from promptline.core.errors import FormatVersionError, InvalidInputError
from promptline.tools.plugins.manifest import NAME_PATTERN

__all__ = [
    "ENTRY_FIELDS",
    "INDEX_FORMAT",
    "CatalogueEntry",
    "CatalogueIndexError",
    "EntryKind",
    "read_index",
    "version_key",
]

INDEX_FORMAT = 1
EntryKind = Literal["skill", "tools"]
ENTRY_FIELDS = {"name", "kind", "version", "description", "tags", "requires", "path", "sha256"}
_REQUIRED = ("name", "kind", "version", "path", "sha256")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TOKEN = re.compile(r"\d+|[A-Za-z]+")


class CatalogueIndexError(InvalidInputError):
    """An index file cannot be read or does not follow the format."""

    code = "catalogue_index"


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One version of a skill or tool package offered by a source."""

    name: str
    kind: EntryKind
    version: str
    path: str
    sha256: str
    source: str
    location: Path
    """Where ``path`` lies on this machine (inside the source's folder or checkout)."""
    description: str = ""
    tags: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "description": self.description,
            "tags": list(self.tags),
            "requires": list(self.requires),
            "path": self.path,
            "sha256": self.sha256,
            "source": self.source,
        }

    def matches(self, words: list[str]) -> bool:
        """True when every word occurs in the name, the description or a tag."""
        haystack = " ".join([self.name, self.description, *self.tags]).lower()
        return all(word.lower() in haystack for word in words)


@dataclass(slots=True)
class _Reader:
    file: Path
    root: Path
    source: str
    names: dict[tuple[str, str], int] = field(default_factory=dict)

    def fail(self, where: str, message: str, hint: str | None = None) -> CatalogueIndexError:
        return CatalogueIndexError(
            f"{self.file}: {where}: {message}",
            hint=hint or "fix the index file (see docs/plugins.md, 'The index file')",
            file=str(self.file),
        )


def read_index(file: Path, *, source: str) -> list[CatalogueEntry]:
    """The entries of the index ``file`` of ``source``; `CatalogueIndexError` naming the file
    and the entry at fault, `FormatVersionError` for a format this release does not read."""
    import yaml

    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=loader)
    except FileNotFoundError:
        raise CatalogueIndexError(
            f"the catalogue source {source!r} has no index file {file}",
            hint="check the source's path/git and its index setting",
            file=str(file),
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CatalogueIndexError(
            f"cannot read the index file {file}: {exc}",
            hint="fix the YAML of the index file",
            file=str(file),
        ) from exc
    reader = _Reader(file, file.parent.resolve(), source)
    if not isinstance(data, dict):
        raise reader.fail("(top)", "must be a mapping with format and entries")
    unknown = sorted(set(map(str, data)) - {"format", "entries"})
    if unknown:
        raise reader.fail("(top)", f"unknown key {', '.join(unknown)}")
    version = data.get("format")
    if not isinstance(version, int) or isinstance(version, bool):
        raise reader.fail("format", f"must be {INDEX_FORMAT}, got {version!r}")
    if version != INDEX_FORMAT:
        raise FormatVersionError(
            f"{file}: index format {version}, but this release reads format {INDEX_FORMAT}",
            hint="upgrade PromptLine" if version > INDEX_FORMAT else "fix the format number",
            file=str(file),
        )
    entries = data.get("entries") or []
    if not isinstance(entries, list):
        raise reader.fail("entries", "must be a list")
    return [_entry(reader, i, raw) for i, raw in enumerate(entries)]


def _entry(reader: _Reader, i: int, raw: Any) -> CatalogueEntry:
    where = f"entries[{i}]"
    if not isinstance(raw, dict):
        raise reader.fail(where, "must be a mapping")
    if isinstance(raw.get("name"), str):
        where = f"entries[{i}] ({raw['name']})"
    unknown = sorted(set(map(str, raw)) - ENTRY_FIELDS)
    if unknown:
        raise reader.fail(where, f"unknown field {', '.join(unknown)}")
    for key in _REQUIRED:
        if raw.get(key) in (None, ""):
            raise reader.fail(where, f"{key} is required")

    def text(key: str) -> str:
        value = raw.get(key, "")
        if value is None:
            return ""
        if isinstance(value, float):
            raise reader.fail(where, f"{key} must be a string", "quote it: '1.10', not 1.10")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise reader.fail(where, f"{key} must be a string")
        return str(value)

    def names(key: str) -> tuple[str, ...]:
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise reader.fail(where, f"{key} must be a list of strings")
        return tuple(value)

    name = text("name")
    if not NAME_PATTERN.match(name):
        raise reader.fail(where, f"name {name!r} is not valid", "letters, digits, '-', '_'")
    kind = text("kind")
    if kind not in ("skill", "tools"):
        raise reader.fail(where, f"kind must be skill or tools, got {kind!r}")
    version = text("version")
    if (name, version) in reader.names:
        raise reader.fail(where, f"{name}@{version} is listed twice")
    reader.names[(name, version)] = i
    sha256 = text("sha256").lower()
    if not _SHA256.match(sha256):
        raise reader.fail(
            where, "sha256 must be 64 hex digits", "compute it with `promptline tools checksum`"
        )
    path = text("path")
    location = _location(reader, where, path)
    requires = names("requires")
    for requirement in requires:
        if not NAME_PATTERN.match(requirement):
            raise reader.fail(where, f"requires: {requirement!r} is not a name")
    return CatalogueEntry(
        name=name,
        kind=kind,  # type: ignore[arg-type]  # checked just above
        version=version,
        path=path,
        sha256=sha256,
        source=reader.source,
        location=location,
        description=text("description"),
        tags=names("tags"),
        requires=requires,
    )


def _location(reader: _Reader, where: str, path: str) -> Path:
    if path.startswith("/") or "\\" in path or ".." in path.split("/"):
        raise reader.fail(where, f"path {path!r} must be relative, inside the source")
    location = reader.root / path
    # A symlink in the source must not lead the install outside it either.
    if not location.resolve().is_relative_to(reader.root):
        raise reader.fail(where, f"path {path!r} leads outside the source")
    return location


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """A sort key for versions: numbers compare as numbers (1.10 > 1.9), and a letter part
    sorts before the release it precedes (1.0rc1 < 1.0 < 1.0.1)."""
    parts: list[tuple[int, int, str]] = []
    for token in _TOKEN.findall(version):
        parts.append((1, int(token), "") if token.isdigit() else (0, 0, token.lower()))
    parts.extend([(1, 0, "")] * (16 - len(parts)))
    return tuple(parts)
