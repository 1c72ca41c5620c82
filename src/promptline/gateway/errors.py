"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``, with the
HTTP status that fits the error's meaning."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptline.core.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PromptLineError,
    RateLimitedError,
    ServiceUnavailableError,
)

__all__ = ["error_body", "error_details", "install_error_handlers", "status_of"]

_log = logging.getLogger("promptline.gateway")

_STATUS: tuple[tuple[type[PromptLineError], int], ...] = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (PayloadTooLargeError, 413),
    (ConflictError, 409),
    (InvalidInputError, 422),
    (RateLimitedError, 429),
    (ServiceUnavailableError, 503),
)
_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def status_of(exc: PromptLineError) -> int:
    """The HTTP status of a PromptLine error (400 for any other kind the caller caused)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def install_error_handlers(api: FastAPI) -> None:
    """Make every error, expected or not, answer in the one shape."""

    async def promptline_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PromptLineError)
        status = status_of(exc)
        headers = {}
        if isinstance(exc, RateLimitedError):
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(
            error_body(exc.code, exc.message, error_details(exc)),
            status_code=status,
            headers=headers,
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:] or first["loc"]) or "request"
        return JSONResponse(
            error_body("invalid_input", f"{where}: {first['msg']}", {"errors": problems}),
            status_code=422,
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _CODES.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(
            error_body(code, message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(
                "internal_error",
                "the server failed to handle this request; it is logged",
                {"type": type(exc).__name__},
            ),
            status_code=500,
        )

    api.add_exception_handler(PromptLineError, promptline_error)
    api.add_exception_handler(RequestValidationError, validation_error)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(Exception, unexpected)


def error_details(exc: PromptLineError) -> dict[str, Any]:
    """The error's details and hint as JSON can carry them (see `PromptLineError.json_details`)."""
    return exc.json_details()
