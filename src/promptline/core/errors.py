"""The one error hierarchy. Catch by meaning; every error says what went wrong and what to do.

`PromptLineError` carries a human message, an optional ``hint`` (how to fix it) and
machine-readable ``details``; ``code`` is stable and is what the REST API returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


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

    def json_details(self) -> dict[str, Any]:
        """`to_dict`'s details (hint included) as JSON can carry them: when a value is not
        JSON, every value becomes its text."""
        import orjson

        details: dict[str, Any] = self.to_dict()["details"]
        try:
            orjson.dumps(details)
        except TypeError:
            return {k: str(v) for k, v in details.items()}
        return details


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


class ProviderError(PromptLineError):
    """A model provider call failed. ``retryable`` says whether another try (or another
    deployment) may succeed; ``provider``, ``model`` and ``status`` say where and how."""

    code = "provider_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str | None = None,
        status: int | None = None,
        hint: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(
            f"{provider}/{model}: {message}" if model else f"{provider}: {message}",
            hint=hint,
            provider=provider,
            model=model,
            status=status,
            **details,
        )
        self.provider = provider
        self.model = model
        self.status = status


class ProviderRateLimited(ProviderError):
    """HTTP 429: too many requests or tokens; ``retry_after`` seconds when the provider said."""

    code = "provider_rate_limited"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str | None = None,
        retry_after: float | None = None,
        **details: Any,
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            model=model,
            status=429,
            hint="wait, lower the request rate, or add deployments",
            retry_after=retry_after,
            **details,
        )
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """5xx, a refused or dropped connection, or a cut stream: the provider may recover."""

    code = "provider_unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    """No (complete) answer within the time allowed."""

    code = "provider_timeout"
    retryable = True


class ProviderBadResponse(ProviderError):
    """The provider answered something that is not its protocol (garbage, malformed JSON)."""

    code = "provider_bad_response"
    retryable = True


class ProviderRequestRejected(ProviderError):
    """HTTP 400/404/422: the request itself is wrong; retrying the same request will not help."""

    code = "provider_request_rejected"


class ProviderAuthError(ProviderError):
    """HTTP 401/403 or a missing API key."""

    code = "provider_auth_error"


class ModelNotFoundError(NotFoundError):
    """No configured provider serves this model id."""

    code = "model_not_found"


class CapabilityError(InvalidInputError):
    """The request needs something (vision, tools, streaming, context size) the model lacks."""

    code = "capability_missing"


class BudgetExceededError(PromptLineError):
    """A run would go over a token, cost or context-window limit; the call was not sent."""

    code = "budget_exceeded"


class SessionBusyError(ConflictError):
    """The session is running something and its queue mode is ``reject``."""

    code = "session_busy"


class RunLimitError(PromptLineError):
    """A run reached ``max_iterations`` or repeated the same tool call too often."""

    code = "run_limit"


def describe_validation(exc: ValidationError, *, whole: str = "(value)", most: int = 3) -> str:
    """The first ``most`` problems of a pydantic ``ValidationError`` as one line:
    ``"a.b: Input should be ...; c: Field required (and 2 more)"``; ``whole`` names a problem
    with the value itself."""
    parts = []
    for err in exc.errors(include_url=False)[:most]:
        loc = ".".join(str(p) for p in err["loc"]) or whole
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class AuthenticationError(PromptLineError):
    """No credentials, or credentials that do not check out (HTTP 401)."""

    code = "unauthorized"


class RateLimitedError(PromptLineError):
    """Too many requests for this caller; ``retry_after`` seconds until the next is taken."""

    code = "rate_limited"

    def __init__(
        self, message: str, *, retry_after: float, hint: str | None = None, **details: Any
    ) -> None:
        super().__init__(
            message,
            hint=hint or f"retry in {retry_after:.1f} s",
            retry_after=retry_after,
            **details,
        )
        self.retry_after = retry_after


class QuotaExceededError(RateLimitedError):
    """A quota of the caller's user or tenant is used up (see ``quotas:``): ``quota`` names
    it, ``scope`` whose it is (``user:alice``, ``tenant:acme``), with its ``limit`` and what
    is ``used``; ``retry_after`` seconds until it frees (``hint``: what else frees it)."""

    code = "quota_exceeded"

    def __init__(
        self,
        quota: str,
        scope: str,
        *,
        limit: float,
        used: float,
        retry_after: float,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            f"the {quota} quota of {scope} is used up ({used:g} of {limit:g})",
            retry_after=retry_after,
            hint=hint,
            quota=quota,
            scope=scope,
            limit=limit,
            used=used,
        )
        self.quota = quota
        self.scope = scope
        self.limit = limit
        self.used = used


class PayloadTooLargeError(InvalidInputError):
    """A request body or frame is larger than allowed (HTTP 413)."""

    code = "payload_too_large"
