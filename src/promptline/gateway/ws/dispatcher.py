"""Reads one JSON-RPC 2.0 frame (a request, a notification, or a batch of them), calls the
methods, and gives back the frame to answer with. A bad frame is answered with an error
object, never with an exception: the connection outlives it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from promptline.core.errors import PromptLineError, describe_validation
from promptline.gateway.deps import check_scope
from promptline.gateway.ws.context import MethodContext
from promptline.gateway.ws.methods import METHODS, Method
from promptline.gateway.ws.protocol import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RequestId,
    RpcError,
    error_frame,
    loads,
    result_frame,
    rpc_error_of,
)

__all__ = ["MAX_BATCH", "Dispatcher"]

MAX_BATCH = 100
"""Requests one batch may hold."""

_log = logging.getLogger("promptline.gateway.ws")
_NO_ID = object()


class Dispatcher:
    """Answers the frames of one connection. ``charge`` is called before each method call
    (the rate limit and the quotas: it raises `RateLimitedError` when the caller is over
    one)."""

    def __init__(
        self,
        context: MethodContext,
        *,
        charge: Callable[[], Awaitable[None]] | None = None,
        methods: Mapping[str, Method[Any]] = METHODS,
    ) -> None:
        self._context = context
        self._charge = charge
        self._methods = methods

    async def handle(self, data: str | bytes) -> Any | None:
        """The answer to a frame's ``data`` (a response, or a list of them for a batch), or
        None when nothing is to be answered (notifications only)."""
        try:
            frame = loads(data)
        except orjson.JSONDecodeError as exc:
            error = RpcError(
                PARSE_ERROR,
                "parse error: the frame is not valid JSON",
                kind="parse_error",
                details={"problem": str(exc)},
            )
            return error_frame(None, error)
        if isinstance(frame, list):
            return await self._batch(frame)
        return await self._one(frame)

    async def _batch(self, frames: list[Any]) -> list[dict[str, Any]] | dict[str, Any] | None:
        if not frames:
            return error_frame(
                None, _invalid("an empty batch: send at least one request", batch=True)
            )
        if len(frames) > MAX_BATCH:
            return error_frame(
                None,
                _invalid(f"a batch holds at most {MAX_BATCH} requests, got {len(frames)}"),
            )
        answers = []
        for frame in frames:
            answer = await self._one(frame)
            if answer is not None:
                answers.append(answer)
        return answers or None

    async def _one(self, frame: Any) -> dict[str, Any] | None:
        if not isinstance(frame, dict):
            kind = type(frame).__name__ if frame is not None else "null"
            return error_frame(None, _invalid(f"a request is a JSON object, not {kind}"))
        request_id = frame.get("id", _NO_ID)
        if request_id is not _NO_ID and not _is_id(request_id):
            return error_frame(None, _invalid("id must be a string, an integer or null"))
        answer_id: RequestId = None if request_id is _NO_ID else request_id
        problem = _malformed(frame)
        if problem is not None:
            # Not a valid request, so not a notification either: always answered.
            return error_frame(answer_id, problem)
        try:
            result = await self._call(frame["method"], frame.get("params"))
        except RpcError as error:
            return None if request_id is _NO_ID else error_frame(answer_id, error)
        return None if request_id is _NO_ID else result_frame(answer_id, result)

    async def _call(self, name: str, raw: Any) -> Any:
        method = self._methods.get(name)
        if method is None:
            raise RpcError(
                METHOD_NOT_FOUND,
                f"no method {name!r}",
                kind="method_not_found",
                details={"methods": sorted(self._methods)},
            )
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise RpcError(
                INVALID_PARAMS,
                "params must be an object (by-name parameters)",
                kind="invalid_input",
            )
        try:
            params = method.params.model_validate(raw)
        except ValidationError as exc:
            problems = [
                {"loc": [str(p) for p in e["loc"]], "msg": e["msg"]}
                for e in exc.errors(include_url=False)
            ]
            raise RpcError(
                INVALID_PARAMS,
                describe_validation(exc, whole="(params)"),
                kind="invalid_input",
                details={"errors": problems},
            ) from None
        try:
            check_scope(self._context.caller, method.scope)
            if self._charge is not None:
                await self._charge()
            return await method.call(self._context, params)
        except PromptLineError as exc:
            raise rpc_error_of(exc) from None
        except Exception:
            _log.exception("control-plane method %s failed", name)
            raise RpcError(
                INTERNAL_ERROR,
                "the server failed to handle this request; it is logged",
                kind="internal_error",
            ) from None


def _malformed(frame: dict[str, Any]) -> RpcError | None:
    if frame.get("jsonrpc") != "2.0":
        return _invalid('jsonrpc must be "2.0"')
    if not isinstance(frame.get("method"), str):
        return _invalid("method must be a string")
    unknown = set(frame) - {"jsonrpc", "method", "params", "id"}
    if unknown:
        return _invalid(f"unknown member(s) {sorted(unknown)} in the request")
    return None


def _invalid(message: str, **details: Any) -> RpcError:
    return RpcError(INVALID_REQUEST, message, kind="invalid_request", details=details)


def _is_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
    )
