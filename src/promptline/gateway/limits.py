"""What the gateway refuses before a route sees a request, in the one error shape: a body
larger than ``gateway.max_body_bytes`` (413, refused as it arrives, never read whole), a JSON
body that is not UTF-8 or nests deeper than `MAX_JSON_DEPTH` (422), and a NUL character in
the path or a query parameter (422). The control plane checks its frames with the same
`utf8_problem` and `depth_problem`."""

from __future__ import annotations

from itertools import accumulate
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptline.core.errors import InvalidInputError, PayloadTooLargeError, PromptLineError
from promptline.gateway.errors import error_body, error_details, status_of

__all__ = [
    "MAX_JSON_DEPTH",
    "RequestLimits",
    "depth_problem",
    "is_json",
    "nesting_depth",
    "replay_body",
    "utf8_problem",
]

MAX_JSON_DEPTH = 200
"""How deep the arrays and objects of a JSON body (or a control-plane frame) may nest. Every
part that keeps such data reaches further: the state store takes values 200 levels deep, and
orjson, which writes the event log, stops at 255 levels."""

# Bracket bytes as steps of the nesting depth (+1, -1 as signed bytes); every other byte is
# dropped. UTF-8 never uses these bytes inside a multi-byte character.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def utf8_problem(data: bytes, what: str) -> InvalidInputError | None:
    """Why ``data`` cannot be JSON text in UTF-8, or None. ``what`` names it in the message
    ("the request body"). A NUL byte counts: JSON text never holds one (a string writes it
    ``\\u0000``), while UTF-16 and UTF-32, which JSON over the network may not use, are full
    of them."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InvalidInputError(
            f"{what} is not valid UTF-8 at byte {exc.start} ({exc.reason})",
            hint="send JSON encoded as UTF-8",
            position=exc.start,
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        return InvalidInputError(
            f"{what} is not JSON in UTF-8: it holds a NUL byte at byte {nul}",
            hint="send JSON encoded as UTF-8 (not UTF-16 or UTF-32); "
            "a NUL inside a string is written \\u0000",
            position=nul,
        )
    return None


def depth_problem(
    data: bytes, what: str, *, limit: int = MAX_JSON_DEPTH
) -> InvalidInputError | None:
    """An error when the JSON text ``data`` nests arrays and objects deeper than ``limit``
    levels, else None. Told from the brackets alone, so text that does not parse is judged
    too (a parser would overflow on it before saying it is malformed)."""
    # Fewer opening brackets than the limit cannot nest deeper: nearly every body stops here.
    if data.count(b"[") + data.count(b"{") <= limit or nesting_depth(data) <= limit:
        return None
    return InvalidInputError(
        f"{what} nests arrays and objects deeper than {limit} levels",
        hint=f"flatten the data: at most {limit} levels of nesting are taken",
        limit=limit,
    )


def nesting_depth(data: bytes) -> int:
    """How many arrays and objects of the JSON text ``data`` are open at once at most (0 for
    a scalar); brackets inside strings do not count."""
    # A backslash escapes the byte after it: with escaped backslashes dropped first, then
    # escaped quotes, every quote left opens or closes a string, so the text outside strings
    # is every other piece between quotes (an unclosed string runs to the end).
    plain = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(plain.split(b'"')[::2])
    steps = outside.translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b")), default=0)


class RequestLimits:
    """ASGI middleware in front of the gateway's routes: reads each request's body, refusing
    it with 413 as soon as it passes ``max_bytes`` (whether or not ``Content-Length`` said
    so), then hands the app the whole body. Under ``checked_prefix`` (the REST and
    OpenAI-compatible API; not ``/mcp``, whose protocol answers for itself) it also refuses
    a NUL character in the path or query, and a JSON body that is not UTF-8 or nests too
    deep, with 422."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, checked_prefix: str = "/v1/") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.checked_prefix = checked_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        checked = str(scope["path"]).startswith(self.checked_prefix)
        problem: PromptLineError | None = _nul_problem(scope) if checked else None
        if problem is None and _declared_length(headers) > self.max_bytes:
            problem = self._too_large()
        if problem is not None:
            await _refuse(problem, scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            return  # the client left before its body was whole: nobody to answer
        if isinstance(body, PromptLineError):
            await _refuse(body, scope, receive, send)
            return
        if checked and body and is_json(headers.get("content-type")):
            problem = utf8_problem(body, "the request body") or depth_problem(
                body, "the request body"
            )
            if problem is not None:
                await _refuse(problem, scope, receive, send)
                return
        await self.app(scope, replay_body(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | PromptLineError | None:
        """The whole body; the 413 error once it passes the limit (what is read of it by
        then is dropped); None when the client disconnects first."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > self.max_bytes:
                return self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"the request body is larger than {self.max_bytes} bytes",
            hint="send less, or raise gateway.max_body_bytes",
            limit=self.max_bytes,
        )


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body in one message, then passes on what the
    server sends next (a disconnect)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _declared_length(headers: Headers) -> int:
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0  # the server refuses such a request; the body is counted as it comes anyway


def is_json(content_type: str | None) -> bool:
    """True for the media types FastAPI reads as JSON (``application/json``, ``*+json``)."""
    if content_type is None:
        return False
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _nul_problem(scope: Scope) -> InvalidInputError | None:
    # No id, name, key or filter a route takes holds a NUL (PostgreSQL cannot even compare
    # one): refused here, once, rather than by whichever part meets it first.
    hint = "no id, name or key holds a NUL character: check how the URL is built"
    if "\x00" in str(scope["path"]):
        return InvalidInputError("the path holds a NUL character (%00)", hint=hint)
    query = bytes(scope.get("query_string", b""))
    if b"\x00" in query or b"%00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return InvalidInputError(
                    f"query parameter {name!r} holds a NUL character (%00)", hint=hint, field=name
                )
    return None


async def _refuse(error: PromptLineError, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(
        error_body(error.code, error.message, error_details(error)), status_code=status_of(error)
    )
    await response(scope, receive, send)
