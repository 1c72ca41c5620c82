"""JSON-RPC 2.0 as the control plane speaks it: the frames (response, error, notification),
the error codes, and how a PromptLine error becomes a JSON-RPC error object."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import orjson
import pydantic_core

from promptline.core.errors import PromptLineError, StorageError
from promptline.gateway.errors import error_details, status_of
from promptline.gateway.limits import depth_problem, utf8_problem

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "SERVER_ERROR_CODES",
    "RequestId",
    "RpcError",
    "dumps",
    "error_frame",
    "frame_problem",
    "loads",
    "notification",
    "result_frame",
    "rpc_error_of",
]

RequestId = str | int | None
"""What a request's ``id`` may be (``None`` only when the request said ``"id": null`` or
its id could not be read)."""

_log = logging.getLogger("promptline.gateway.ws")

# An integer needs at least 19 digits to leave the signed 64-bit range.
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{19}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19}")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

SERVER_ERROR_CODES: dict[int, int] = {
    400: -32000,
    401: -32001,
    403: -32003,
    404: -32004,
    409: -32009,
    413: -32013,
    422: INVALID_PARAMS,
    429: -32029,
    503: -32053,
}
"""A PromptLine error's JSON-RPC code, by the HTTP status REST gives the same error (a
value the caller got wrong is "invalid params"; the others sit in -32000..-32099)."""


class RpcError(Exception):
    """A JSON-RPC error to answer with: ``code``, ``message`` and ``data`` ``{code, details}``
    (``data.code`` is the stable PromptLine error code, as in REST's error shape)."""

    def __init__(
        self, code: int, message: str, *, kind: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` member of a response."""
        return {
            "code": self.code,
            "message": self.message,
            "data": {"code": self.kind, "details": self.details},
        }


def rpc_error_of(exc: PromptLineError) -> RpcError:
    """The JSON-RPC error for a PromptLine error (its message; its details and hint in
    ``data.details``)."""
    if isinstance(exc, StorageError):
        # The caller gets the error's own words; the database's (in the cause) are logged.
        _log.warning("control-plane request failed: %s", exc.message, exc_info=exc)
    code = SERVER_ERROR_CODES.get(status_of(exc), -32000)
    return RpcError(code, exc.message, kind=exc.code, details=error_details(exc))


def frame_problem(data: str | bytes) -> RpcError | None:
    """The error to answer a frame with before it is read as JSON, or None: a parse error
    when it is not UTF-8 (a binary frame) or holds a NUL byte, an invalid request when it
    nests deeper than a REST body may (`promptline.gateway.limits.MAX_JSON_DEPTH` levels):
    no method takes such a request, and reading it could overflow the parser."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    problem = utf8_problem(raw, "the frame")
    if problem is not None:
        return RpcError(
            PARSE_ERROR,
            f"parse error: {problem.message}",
            kind="parse_error",
            details=error_details(problem),
        )
    problem = depth_problem(raw, "the frame")
    if problem is not None:
        return RpcError(
            INVALID_REQUEST, problem.message, kind="invalid_request", details=error_details(problem)
        )
    return None


def result_frame(request_id: RequestId, result: Any) -> dict[str, Any]:
    """A successful response."""
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_frame(request_id: RequestId, error: RpcError) -> dict[str, Any]:
    """An error response."""
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_dict()}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A message the server sends unasked (no ``id``, no answer expected)."""
    return {"jsonrpc": "2.0", "method": method, "params": params}


def loads(data: str | bytes) -> Any:
    """A frame's JSON as Python values, every integer exactly as sent.

    orjson reads an integer beyond 64 bits as a float, which would hand the methods another
    number than the one sent. A frame with a run of 19 digits or more (which every such
    integer has) is read again by pydantic's parser, which keeps integers whole, so a method
    can refuse the number (or an id can be echoed) as sent. Raises `orjson.JSONDecodeError`
    when ``data`` is not JSON (orjson also refuses ``NaN``, ``Infinity`` and ``1e400``).
    """
    frame = orjson.loads(data)
    if isinstance(data, bytes):
        long_number = _LONG_DIGITS_BYTES.search(data) is not None
    else:
        long_number = _LONG_DIGITS_TEXT.search(data) is not None
    if not long_number:
        return frame
    try:
        return pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError as exc:  # not expected once orjson has read it; refuse, never guess
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        raise orjson.JSONDecodeError(str(exc), text, 0) from None


def dumps(frame: Any) -> str:
    """A frame as the text of a WebSocket message.

    An integer beyond 64 bits (an id echoed as the caller sent it), which orjson does not
    write, goes out through the standard library's encoder instead, unchanged.
    """
    try:
        return orjson.dumps(frame).decode()
    except orjson.JSONEncodeError as exc:
        try:
            return json.dumps(frame, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError):
            raise exc from None
