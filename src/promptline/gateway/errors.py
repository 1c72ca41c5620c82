"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``, with the
HTTP status that fits the error's meaning; on the OpenAI-compatible routes (`OpenAIRoute`),
OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

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
    StorageError,
)

__all__ = [
    "OpenAIRoute",
    "error_body",
    "error_details",
    "install_error_handlers",
    "openai_error_body",
    "openai_status_of",
    "status_of",
]

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
    # The database failed, not the caller: retrying later is what helps.
    (StorageError, 503),
)
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
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
        _log_storage_failure(request, exc)
        status = status_of(exc)
        return JSONResponse(
            error_body(exc.code, exc.message, error_details(exc)),
            status_code=status,
            headers=_headers(exc, status),
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, problems = _invalid_request(exc)
        return JSONResponse(
            error_body("invalid_input", message, {"errors": problems}), status_code=422
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if _is_openai_path(request.url.path):
            # No OpenAI route took the request (a path none matches, a method none takes):
            # OpenAI's clients read the answer all the same.
            return openai_error(request, exc)
        unreadable = _unreadable_body(exc)
        if unreadable is not None:
            return await promptline_error(request, unreadable)
        code = _CODES.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else "error"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        # The router names the methods of the first route on the path only; the path may
        # have several (GET and POST /v1/sessions are two routes).
        if exc.status_code == 405 and (allowed := _allowed_methods(request)):
            headers["Allow"] = ", ".join(allowed)
            message = (
                f"{request.method} is not allowed on {request.url.path}; "
                f"it takes {', '.join(allowed)}"
            )
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=headers or None
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


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route takes on the request's path (asked of the router for each
    method: included routers keep their routes to themselves)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    ]


def _unreadable_body(exc: StarletteHTTPException) -> InvalidInputError | None:
    """The error to answer with when FastAPI could not parse a JSON body (it raises a bare
    400 from what the parser raised), or None for any other HTTP exception. The gateway's
    own checks (`promptline.gateway.limits`) leave the parser little to fail on: this is
    what is left, such as an integer too long to convert."""
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, ValueError | RecursionError):
        return None
    hint = "send a JSON object as the endpoint's schema describes (see /openapi.json)"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        digits = sys.get_int_max_str_digits()
        return InvalidInputError(
            f"the request body holds an integer of more than {digits} digits",
            hint="an integer must fit in 64 bits; send bigger numbers as strings",
            limit=digits,
        )
    if isinstance(cause, RecursionError):
        return InvalidInputError("the request body nests arrays and objects too deep", hint=hint)
    return InvalidInputError(f"the request body cannot be read as JSON: {cause}", hint=hint)


def error_details(exc: PromptLineError) -> dict[str, Any]:
    """The error's details and hint as JSON can carry them (see `PromptLineError.json_details`)."""
    return exc.json_details()


def _log_storage_failure(request: Request, exc: PromptLineError) -> None:
    if isinstance(exc, StorageError):
        # The client gets the error's own words; the database's (in the cause) are logged.
        _log.warning(
            "storage failure on %s %s: %s",
            request.method,
            request.url.path,
            exc.message,
            exc_info=exc,
        )


def _headers(exc: PromptLineError, status: int) -> dict[str, str]:
    headers = {}
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return headers


def _invalid_request(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    """What is wrong with a request that does not match its schema: a message naming the
    first problem, and every problem (``loc``, ``msg``)."""
    errors = exc.errors()
    problems = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in errors
    ]
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"][1:] or first["loc"]) or "request"
    message = f"{where}: {first['msg']}"
    if errors and errors[0].get("type") == "json_invalid":
        # Its location is a character offset, not a field: say what the parser said.
        reason = (errors[0].get("ctx") or {}).get("error", "malformed")
        message = f"the request body is not valid JSON: {reason} at character {where}"
    return message, problems


# -- OpenAI's shape ---------------------------------------------------------------------------

_OPENAI_CODES = {
    "unauthorized": "invalid_api_key",
    "rate_limited": "rate_limit_exceeded",
}


OPENAI_PATHS = ("/v1/chat/completions", "/v1/models", "/v1/responses")
"""The paths of the OpenAI-compatible API (and those under them, but for the catalogue of
models, which is PromptLine's own)."""


def _is_openai_path(path: str) -> bool:
    if path.startswith("/v1/models/catalogue"):
        return False
    return any(path == p or path.startswith(f"{p}/") for p in OPENAI_PATHS)


def openai_status_of(exc: PromptLineError) -> int:
    """The HTTP status of ``exc`` on an OpenAI route: as elsewhere, except that a request
    that is not valid is 400, as OpenAI answers it (not 422)."""
    status = status_of(exc)
    return 400 if status == 422 else status


def openai_error_body(
    status: int,
    code: str | None,
    message: str,
    *,
    param: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An error body in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``,
    with PromptLine's ``details`` (the hint, ids) beside them. ``type`` follows the status
    as OpenAI's does: ``invalid_request_error`` for what the caller can fix, ``requests``
    for a rate limit, ``insufficient_quota`` for a budget used up, ``server_error`` for the
    rest; ``code`` is OpenAI's where there is one (``invalid_api_key``,
    ``rate_limit_exceeded``), else PromptLine's."""
    if code is not None:
        code = _OPENAI_CODES.get(code, code)
    if status >= 500:
        kind = "server_error"
    elif status == 429:
        kind = "insufficient_quota" if code == "budget_exceeded" else "requests"
        if code == "budget_exceeded":
            code = "insufficient_quota"
    else:
        kind = "invalid_request_error"
    error: dict[str, Any] = {"message": message, "type": kind, "param": param, "code": code}
    if details:
        error["details"] = details
    return {"error": error}


def openai_error(request: Request, exc: Exception) -> JSONResponse:
    """The response to ``exc`` raised on an OpenAI route, in OpenAI's shape."""
    if isinstance(exc, StarletteHTTPException):
        unreadable = _unreadable_body(exc)
        if unreadable is None:
            message = str(exc.detail) if exc.detail else "error"
            if exc.status_code == 404 and message == "Not Found":
                message = f"no such endpoint: {request.method} {request.url.path}"
            body = openai_error_body(exc.status_code, _CODES.get(exc.status_code), message)
            return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
        exc = unreadable
    if isinstance(exc, RequestValidationError):
        message, problems = _invalid_request(exc)
        loc = problems[0]["loc"] if problems else []
        param = ".".join(loc[1:]) or None
        body = openai_error_body(
            400, "invalid_input", message, param=param, details={"errors": problems}
        )
        return JSONResponse(body, status_code=400)
    if isinstance(exc, PromptLineError):
        _log_storage_failure(request, exc)
        status = openai_status_of(exc)
        details = error_details(exc)
        field = details.get("field")
        body = openai_error_body(
            status,
            exc.code,
            exc.message,
            param=field if isinstance(field, str) else None,
            details=details,
        )
        return JSONResponse(body, status_code=status, headers=_headers(exc, status))
    _log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = openai_error_body(
        500, "internal_error", "the server failed to handle this request; it is logged"
    )
    return JSONResponse(body, status_code=500)


class OpenAIRoute(APIRoute):
    """A route of the OpenAI-compatible API: whatever fails while it handles a request
    (the key, the body's schema, the handler itself) answers in OpenAI's error shape, which
    OpenAI's clients and the tools built on them read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return openai_error(request, exc)

        return handle
