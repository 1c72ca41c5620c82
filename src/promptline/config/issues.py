"""A configuration problem, where it was found, and how a list of them becomes one `ConfigError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptline.config.keypath import KeyPath, format_path
from promptline.core.errors import ConfigError

MAX_SHOWN = 10
DOCS = "docs/configuration.md"


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a line of a file, an environment variable, or the defaults."""

    file: Path | None = None
    line: int | None = None
    column: int | None = None
    env_var: str | None = None
    prefix: KeyPath = ()
    """Keys written before the key path in the source (``profiles.dev`` for a profile block)."""

    def where(self) -> str:
        """``config.yaml:12``, ``environment variable PROMPTLINE__X`` or ``built-in defaults``."""
        if self.env_var is not None:
            return f"environment variable {self.env_var}"
        if self.file is None:
            return "built-in defaults"
        text = str(self.file)
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: the source, the key path as written there, and what is wrong or allowed."""

    message: str
    key: KeyPath | None = None
    origin: Origin = field(default_factory=Origin)

    @property
    def key_text(self) -> str | None:
        """The key path as the user wrote it (profile prefix included), or None."""
        if self.key is None:
            return None
        return format_path((*self.origin.prefix, *self.key))

    def __str__(self) -> str:
        key = self.key_text
        return f"{self.origin.where()}: {key + ': ' if key else ''}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for APIs and tools."""
        return {
            "file": str(self.origin.file) if self.origin.file else None,
            "line": self.origin.line,
            "column": self.origin.column,
            "env_var": self.origin.env_var,
            "key": self.key_text,
            "message": self.message,
        }


def config_error(issues: list[ConfigIssue]) -> ConfigError:
    """One `ConfigError` listing every issue (the first `MAX_SHOWN` in the message).

    Issues are listed file by file in line order, then those from environment variables.
    """
    issues = sorted(issues, key=_reading_order)
    lines = [str(issue) for issue in issues[:MAX_SHOWN]]
    if len(issues) > MAX_SHOWN:
        lines.append(f"... and {len(issues) - MAX_SHOWN} more")
    if len(issues) == 1:
        message = lines[0]
    else:
        message = f"{len(issues)} problems in the configuration:\n" + "\n".join(
            f"  - {line}" for line in lines
        )
    files = sorted({str(i.origin.file) for i in issues if i.origin.file is not None})
    fix_where = " and ".join(files) if files else "the configuration"
    if any(i.key is not None for i in issues):
        hint = f"fix the keys named above in {fix_where}; every key is described in {DOCS}"
    else:  # the file or the profile itself: there is no key to fix
        hint = f"where the files are and how profiles work: {DOCS}"
    return ConfigError(
        message,
        hint=hint,
        errors=[issue.to_dict() for issue in issues],
    )


def _reading_order(issue: ConfigIssue) -> tuple[int, str, int]:
    origin = issue.origin
    if origin.file is not None:
        return (0, str(origin.file), origin.line or 0)
    return (1, origin.env_var or "", 0)
