"""The ``scripted`` provider: plays back scripted turns (YAML/JSON) for tests, demos and offline
use, streaming them like a real provider; ``scripted/demo`` is built in."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from promptline.core.errors import (
    InvalidInputError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from promptline.core.messages import ImagePart, Message, ToolCall, Usage
from promptline.models.capabilities import ModelCapabilities
from promptline.models.limits import estimate_prompt_tokens
from promptline.models.types import (
    ModelRequest,
    ModelResponse,
    StreamDelta,
    ToolCallDelta,
)

__all__ = [
    "DEMO_SCRIPT",
    "SCRIPTED_CAPABILITIES",
    "DemoScript",
    "Script",
    "ScriptedProvider",
    "Turn",
    "load_scripts_dir",
]

SCRIPTED_CAPABILITIES = ModelCapabilities(
    supports_vision=True,
    supports_function_calling=True,
    supports_streaming=True,
    max_tokens=4096,
    context_window=128_000,
    supports_json_schema=False,
    input_price_per_mtok=0.0,
    output_price_per_mtok=0.0,
    cached_input_price_per_mtok=0.0,
)
"""What every scripted model declares: it accepts anything and costs nothing."""

_ERROR_KINDS: dict[str, type[ProviderError]] = {
    "rate_limited": ProviderRateLimited,
    "unavailable": ProviderUnavailable,
    "timeout": ProviderTimeout,
    "bad_response": ProviderBadResponse,
    "rejected": ProviderRequestRejected,
    "auth": ProviderAuthError,
}
_TURN_KEYS = frozenset(
    {"expect", "reply", "tool_calls", "usage", "stream_chunks", "finish_reason", "error"}
)
_WORDS = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class ScriptedError:
    """A failure a turn plays instead of answering."""

    kind: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One scripted answer.

    ``expect`` is matched against the last user or tool message: a plain string must occur in
    it, a compiled pattern must be found in it. ``stream_chunks`` are the pieces the text is
    streamed in (default: word by word).
    """

    reply: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    expect: str | re.Pattern[str] | None = None
    usage: Usage | None = None
    stream_chunks: tuple[str, ...] | None = None
    finish_reason: str | None = None
    error: ScriptedError | None = None

    def chunks(self) -> list[str]:
        """The pieces the reply is streamed in."""
        if self.stream_chunks is not None:
            return list(self.stream_chunks)
        return _WORDS.findall(self.reply)


@dataclass(frozen=True, slots=True)
class Script:
    """A conversation's scripted turns. Turn ``n`` answers a request whose messages already
    hold ``n`` assistant messages, so playback needs no state and a retry gets the same turn."""

    name: str
    turns: tuple[Turn, ...] = ()
    description: str = ""

    def turn_for(self, request: ModelRequest, *, provider: str) -> Turn:
        """The turn that answers ``request``; `ProviderRequestRejected` when there is none or
        the request does not match what the turn expects."""
        index = sum(1 for m in request.messages if m.role == "assistant")
        model = request.model
        if index >= len(self.turns):
            raise ProviderRequestRejected(
                f"script {self.name!r} has {len(self.turns)} turn(s) and the conversation "
                f"already holds {index} assistant message(s): nothing left to play",
                provider=provider,
                model=model,
                hint=f"add a turn to the script {self.name!r} or start a new conversation",
            )
        turn = self.turns[index]
        if turn.expect is not None:
            text = _last_input_text(request.messages)
            if isinstance(turn.expect, str):
                matched = turn.expect in text
                wanted = f"text containing {turn.expect!r}"
            else:
                matched = turn.expect.search(text) is not None
                wanted = f"text matching /{turn.expect.pattern}/"
            if not matched:
                raise ProviderRequestRejected(
                    f"turn {index + 1} of script {self.name!r} expects {wanted} in the last "
                    f"user or tool message, got {_preview(text)!r}",
                    provider=provider,
                    model=model,
                    hint="change the conversation, or the turn's `expect` in the script",
                    turn=index + 1,
                )
        return turn

    @classmethod
    def from_data(cls, data: Any, *, name: str) -> Script:
        """A script from parsed YAML/JSON: a list of turns, or ``{turns: [...],
        description: ...}``. Every mistake is an `InvalidInputError` naming the turn."""
        description = ""
        if isinstance(data, Mapping):
            unknown = set(data) - {"turns", "description"}
            if unknown:
                raise _bad(name, None, f"unknown key(s) {sorted(unknown)}; use turns, description")
            description = str(data.get("description") or "")
            data = data.get("turns")
        if not isinstance(data, list) or not data:
            raise _bad(name, None, "a script is a non-empty list of turns (or {turns: [...]})")
        return cls(
            name=name,
            turns=tuple(_turn(name, i, raw) for i, raw in enumerate(data, 1)),
            description=description,
        )

    @classmethod
    def load(cls, path: str | Path) -> Script:
        """Read a ``.yaml``/``.yml``/``.json`` script; its model name is the file's stem."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(
                f"cannot read script {path}: {exc.strerror or exc}",
                hint="check the path (models.providers.<name>.scripts_dir)",
                path=str(path),
            ) from exc
        try:
            data = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
            raise InvalidInputError(
                f"script {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}",
                hint="fix the syntax; a script is a list of turns",
                path=str(path),
            ) from exc
        return cls.from_data(data, name=path.stem)


class DemoScript(Script):
    """The built-in ``demo``: answers any message, and when the tools offered include ``add``
    it calls ``add`` with the first two numbers of the message, then reports the result."""

    def __init__(self) -> None:
        super().__init__(
            name="demo",
            description="Offline demo: greets, echoes, and uses an `add` tool when offered.",
        )

    def turn_for(self, request: ModelRequest, *, provider: str) -> Turn:
        last = request.messages[-1] if request.messages else None
        if last is not None and last.role == "tool":
            return Turn(reply=f"The result is {last.text.strip()}.")
        text = _last_input_text(request.messages)
        if any(tool.name == "add" for tool in request.tools):
            numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", text)[:2]]
            a, b = (numbers + [2.0, 3.0][len(numbers) :])[:2]
            call = ToolCall(name="add", arguments={"a": _number(a), "b": _number(b)})
            return Turn(tool_calls=(call,))
        images = sum(1 for m in request.messages for p in m.content if isinstance(p, ImagePart))
        seen = f" I see {images} image(s) too." if images else ""
        said = f' You said: "{_preview(text)}".' if text else ""
        return Turn(
            reply=f"Hello from PromptLine's offline demo model!{said}{seen} "
            "Configure a real provider under models.providers to get real answers."
        )


DEMO_SCRIPT = DemoScript()
"""The built-in offline demo script (model ``scripted/demo``)."""


class ScriptedProvider:
    """A `ModelProvider` that answers from scripts: one script per model name."""

    def __init__(self, name: str = "scripted", *, scripts: Mapping[str, Script]) -> None:
        """``scripts`` maps model names to scripts (add `DEMO_SCRIPT` for ``demo``)."""
        self._name = name
        self._scripts = dict(scripts)

    @property
    def name(self) -> str:
        """The provider's configured name."""
        return self._name

    @property
    def models(self) -> list[str]:
        """The model names it serves (its scripts), sorted."""
        return sorted(self._scripts)

    def script(self, model: str) -> Script:
        """The script of ``model``; `ProviderRequestRejected` listing the scripts if unknown."""
        script = self._scripts.get(model)
        if script is None:
            known = ", ".join(self.models) or "none"
            raise ProviderRequestRejected(
                f"no script named {model!r}",
                provider=self._name,
                model=model,
                status=404,
                hint=f"scripts here: {known}; add {model}.yaml to the scripts folder",
            )
        return script

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Play the request's turn as one answer."""
        started = time.perf_counter()
        turn = self._play(request)
        return self._response(request, turn, started, ttft_ms=None)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamDelta | ModelResponse]:
        """Play the request's turn as deltas (text chunks, then tool calls), then the answer."""
        started = time.perf_counter()
        turn = self._play(request)
        ttft: float | None = None
        for chunk in turn.chunks():
            if ttft is None:
                ttft = _ms_since(started)
            yield StreamDelta(text=chunk)
        for index, call in enumerate(turn.tool_calls):
            if ttft is None:
                ttft = _ms_since(started)
            arguments = json.dumps(call.arguments)
            yield StreamDelta(tool_call=ToolCallDelta(index=index, id=call.id, name=call.name))
            yield StreamDelta(tool_call=ToolCallDelta(index=index, arguments=arguments))
        yield self._response(request, turn, started, ttft_ms=ttft)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _play(self, request: ModelRequest) -> Turn:
        turn = self.script(request.model).turn_for(request, provider=self._name)
        if turn.error is not None:
            raise _scripted_error(turn.error, provider=self._name, model=request.model)
        return turn

    def _response(
        self, request: ModelRequest, turn: Turn, started: float, *, ttft_ms: float | None
    ) -> ModelResponse:
        message = Message(role="assistant", content=turn.reply, tool_calls=list(turn.tool_calls))
        finish = turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")
        return ModelResponse(
            message=message,
            model=request.model,
            provider=self._name,
            finish_reason=finish,
            usage=turn.usage or _estimated_usage(request, turn),
            latency_ms=_ms_since(started),
            ttft_ms=ttft_ms,
            cost_usd=0.0,
        )


def load_scripts_dir(folder: str | Path) -> dict[str, Script]:
    """Every ``*.yaml``/``*.yml``/``*.json`` script in ``folder``, by file stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(
            f"scripts folder {folder} does not exist",
            hint="create it, or fix models.providers.<name>.scripts_dir",
            path=str(folder),
        )
    scripts: dict[str, Script] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
            scripts[path.stem] = Script.load(path)
    return scripts


# -- helpers ----------------------------------------------------------------------------------


def _turn(script: str, index: int, raw: Any) -> Turn:
    if not isinstance(raw, Mapping):
        raise _bad(script, index, f"a turn is a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _TURN_KEYS
    if unknown:
        raise _bad(script, index, f"unknown key(s) {sorted(unknown)}; use {sorted(_TURN_KEYS)}")
    reply = raw.get("reply", "")
    if not isinstance(reply, str):
        raise _bad(script, index, "`reply` must be text")
    error = _error(script, index, raw["error"]) if raw.get("error") is not None else None
    calls = raw.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _bad(script, index, "`tool_calls` must be a list of {name, arguments}")
    if not (reply or calls or error):
        raise _bad(script, index, "a turn needs a `reply`, `tool_calls` or an `error`")
    return Turn(
        reply=reply,
        tool_calls=tuple(_tool_call(script, index, n, call) for n, call in enumerate(calls, 1)),
        expect=_expect(script, index, raw.get("expect")),
        usage=_usage(script, index, raw.get("usage")),
        stream_chunks=_chunks(script, index, raw.get("stream_chunks"), reply),
        finish_reason=_optional_text(script, index, "finish_reason", raw.get("finish_reason")),
        error=error,
    )


def _expect(script: str, index: int, raw: Any) -> str | re.Pattern[str] | None:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, Mapping) and set(raw) == {"regex"} and isinstance(raw["regex"], str):
        try:
            return re.compile(raw["regex"])
        except re.error as exc:
            raise _bad(script, index, f"`expect.regex` is not a valid pattern: {exc}") from exc
    raise _bad(script, index, "`expect` is a substring, or {regex: PATTERN}")


def _tool_call(script: str, index: int, number: int, raw: Any) -> ToolCall:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise _bad(script, index, f"tool call {number} needs a `name`")
    arguments = raw.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError as exc:
            raise _bad(script, index, f"tool call {number}: `arguments` is not JSON") from exc
    if not isinstance(arguments, Mapping):
        raise _bad(script, index, f"tool call {number}: `arguments` must be a mapping")
    extra = set(raw) - {"name", "arguments", "id"}
    if extra:
        raise _bad(script, index, f"tool call {number}: unknown key(s) {sorted(extra)}")
    call_id = raw.get("id") or f"call_{script}_{index}_{number}"
    return ToolCall(id=str(call_id), name=raw["name"], arguments=dict(arguments))


def _usage(script: str, index: int, raw: Any) -> Usage | None:
    if raw is None:
        return None
    try:
        return Usage.model_validate(raw)
    except ValueError as exc:
        raise _bad(
            script,
            index,
            "`usage` takes input_tokens, output_tokens, cached_tokens, reasoning_tokens",
        ) from exc


def _chunks(script: str, index: int, raw: Any, reply: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return tuple(reply[i : i + raw] for i in range(0, len(reply), raw))
    if isinstance(raw, list) and all(isinstance(c, str) for c in raw):
        if "".join(raw) != reply:
            raise _bad(script, index, "`stream_chunks` must join to exactly the `reply`")
        return tuple(raw)
    raise _bad(script, index, "`stream_chunks` is a list of texts, or a chunk size > 0")


def _error(script: str, index: int, raw: Any) -> ScriptedError:
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, Mapping) or raw.get("kind") not in _ERROR_KINDS:
        raise _bad(script, index, f"`error` kind must be one of {sorted(_ERROR_KINDS)}")
    kind = str(raw["kind"])
    retry_after = raw.get("retry_after")
    if retry_after is not None and not isinstance(retry_after, int | float):
        raise _bad(script, index, "`error.retry_after` is a number of seconds")
    message = raw.get("message") or f"scripted {kind} failure"
    return ScriptedError(kind=kind, message=str(message), retry_after=retry_after)


def _optional_text(script: str, index: int, key: str, raw: Any) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise _bad(script, index, f"`{key}` must be text")
    return raw


def _bad(script: str, index: int | None, problem: str) -> InvalidInputError:
    where = f"script {script!r}" + (f", turn {index}" if index is not None else "")
    return InvalidInputError(
        f"{where}: {problem}",
        hint="a turn has expect, reply, tool_calls, usage, stream_chunks, finish_reason, error",
        script=script,
        turn=index,
    )


def _scripted_error(error: ScriptedError, *, provider: str, model: str) -> ProviderError:
    cls = _ERROR_KINDS[error.kind]
    if cls is ProviderRateLimited:
        return ProviderRateLimited(
            error.message, provider=provider, model=model, retry_after=error.retry_after
        )
    return cls(error.message, provider=provider, model=model, hint="this failure is scripted")


def _last_input_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role in ("user", "tool"):
            return message.text
    return ""


def _estimated_usage(request: ModelRequest, turn: Turn) -> Usage:
    """What a turn without scripted usage reports: everything the request sends (messages,
    tool calls, images and the tool schemas offered) counted as the router estimates a prompt
    (`estimate_prompt_tokens`, about four characters a token), and its answer the same way."""
    answer = len(turn.reply) + sum(
        len(json.dumps(c.arguments)) + len(c.name) for c in turn.tool_calls
    )
    return Usage(
        input_tokens=max(1, estimate_prompt_tokens(request)), output_tokens=max(1, answer // 4)
    )


def _preview(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
