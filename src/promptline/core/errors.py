"""The one error hierarchy. Catch by meaning; every error says what went wrong and what to do.

`PromptLineError` carries a human message, an optional ``hint`` (how to fix it) and
machine-readable ``details``; ``code`` is stable and is what the REST API returns.
"""

from __future__ import annotations

from typing import Any


class PromptLineError(Exception):
    """Base of every error PromptLine raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{"code", "message", "details"}``."""
        details = dict(self.details)
        if self.hint:
            details["hint"] = self.hint
        return {"code": self.code, "message": self.message, "details": details}


class ConfigError(PromptLineError):
    """The configuration is missing, malformed, or asks for something impossible."""

    code = "config_error"


class InvalidInputError(PromptLineError):
    """A caller passed a value of the wrong shape or type."""

    code = "invalid_input"


class NotFoundError(PromptLineError):
    """The thing asked for does not exist (or the caller may not see it)."""

    code = "not_found"


class ConflictError(PromptLineError):
    """A write lost a race: an expected version or sequence number did not match."""

    code = "conflict"


class PermissionDeniedError(PromptLineError):
    """The caller may not do this."""

    code = "permission_denied"


class StorageError(PromptLineError):
    """A database, file or cache could not be read or written."""

    code = "storage_error"


class StorageLockedError(StorageError):
    """Another process holds the database lock for longer than we wait."""

    code = "storage_locked"


class SchemaVersionError(StorageError):
    """The database schema is missing, older, or newer than this PromptLine understands."""

    code = "schema_version"


class ServiceUnavailableError(PromptLineError):
    """An external service (PostgreSQL, Redis, a provider) did not answer."""

    code = "service_unavailable"


class FormatVersionError(InvalidInputError):
    """A document (export, config, event) comes from a format version we cannot read."""

    code = "format_version"


class SubscriberLagged(PromptLineError):
    """A bus subscriber fell too far behind and was dropped; resubscribe from ``last_seq``."""

    code = "subscriber_lagged"

    def __init__(self, message: str, *, last_seq: int | None, last_position: int | None) -> None:
        super().__init__(
            message,
            hint="resubscribe with from_seq=last_seq (or from_position=last_position)",
            last_seq=last_seq,
            last_position=last_position,
        )
        self.last_seq = last_seq
        self.last_position = last_position
