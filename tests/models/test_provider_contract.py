"""One contract, every provider: the same scenarios against OpenAI-compatible, Anthropic and
Gemini (each over HTTP against its fake server) and scripted (played from a script).

A harness per provider knows how to script its fake for an abstract answer; the assertions
are shared, so a provider that maps something differently fails here by name.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from fakes import anthropic_server as anth
from fakes import gemini_server as gem
from fakes import openai_server as oai
from fakes.anthropic_fixtures import anthropic_fake, anthropic_fake_server  # noqa: F401
from fakes.gemini_fixtures import gemini_fake, gemini_fake_server  # noqa: F401
from fakes.openai_fixtures import openai_fake, openai_fake_server  # noqa: F401
from promptline.core.messages import ImagePart, Message, TextPart
from promptline.models.http import SharedHttpTransport
from promptline.models.provider import ModelProvider
from promptline.models.scripted import Script, ScriptedProvider
from promptline.models.types import ModelRequest, ModelResponse, StreamDelta, ToolSpec

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24).decode()
Calls = Sequence[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Tokens:
    input: int = 21
    output: int = 9
    cached: int = 4


class Harness(Protocol):
    model: str

    def provider(self) -> ModelProvider: ...
    def text(self, text: str, tokens: Tokens) -> None: ...
    def calls(self, calls: Calls) -> None: ...
    def sent_image(self) -> bool: ...


class OpenAIHarness:
    model = "gpt-4o-mini"

    def __init__(self, fake: oai.FakeOpenAI, transport: SharedHttpTransport) -> None:
        self.fake, self.transport = fake, transport

    def provider(self) -> ModelProvider:
        from promptline.models.openai_chat import OpenAIChatProvider

        return OpenAIChatProvider(
            "openai", base_url=self.fake.base_url, api_key="sk-test", transport=self.transport
        )

    def text(self, text: str, tokens: Tokens) -> None:
        usage = oai.FakeUsage(
            prompt_tokens=tokens.input, completion_tokens=tokens.output, cached_tokens=tokens.cached
        )
        self.fake.script(oai.TextReply(text, usage=usage))

    def calls(self, calls: Calls) -> None:
        self.fake.script(oai.ToolCallsReply([oai.FakeToolCall(n, a) for n, a in calls]))

    def sent_image(self) -> bool:
        return PNG in self.fake.requests[-1].raw_body.decode()


class AnthropicHarness:
    model = "claude-sonnet-4-0"

    def __init__(self, fake: anth.FakeAnthropic, transport: SharedHttpTransport) -> None:
        self.fake, self.transport = fake, transport

    def provider(self) -> ModelProvider:
        from promptline.models.anthropic import AnthropicProvider

        return AnthropicProvider(
            api_key="sk-ant-test", transport=self.transport, base_url=self.fake.base_url
        )

    def text(self, text: str, tokens: Tokens) -> None:
        # Anthropic counts cache reads apart from input_tokens; the common shape includes them.
        usage = anth.FakeUsage(
            input_tokens=tokens.input - tokens.cached,
            output_tokens=tokens.output,
            cache_read_input_tokens=tokens.cached,
        )
        self.fake.script(anth.TextReply(text, usage=usage))

    def calls(self, calls: Calls) -> None:
        self.fake.script(anth.ToolUseReply([anth.FakeToolUse(n, a) for n, a in calls]))

    def sent_image(self) -> bool:
        return PNG in self.fake.requests[-1].raw_body.decode()


class GeminiHarness:
    model = "gemini-2.5-flash"

    def __init__(self, fake: gem.FakeGemini, transport: SharedHttpTransport) -> None:
        self.fake, self.transport = fake, transport

    def provider(self) -> ModelProvider:
        from promptline.models.gemini import GeminiProvider

        return GeminiProvider(
            api_key="test-key", transport=self.transport, base_url=self.fake.base_url
        )

    def text(self, text: str, tokens: Tokens) -> None:
        usage = gem.FakeUsage(
            prompt_tokens=tokens.input, candidates_tokens=tokens.output, cached_tokens=tokens.cached
        )
        self.fake.script(gem.TextReply(text, usage=usage))

    def calls(self, calls: Calls) -> None:
        self.fake.script(gem.FunctionCallsReply([gem.FakeFunctionCall(n, a) for n, a in calls]))

    def sent_image(self) -> bool:
        return PNG in self.fake.requests[-1].raw_body.decode()


class ScriptedHarness:
    """No wire: the script is the fake. Each scenario becomes a one-turn script."""

    model = "contract"

    def __init__(self) -> None:
        self.turn: dict[str, Any] = {"reply": "unset"}
        self.last_request: ModelRequest | None = None

    def provider(self) -> ModelProvider:
        harness = self

        class Recording(ScriptedProvider):
            async def complete(self, request: ModelRequest) -> ModelResponse:
                harness.last_request = request
                return await super().complete(request)

            async def stream(
                self, request: ModelRequest
            ) -> AsyncIterator[StreamDelta | ModelResponse]:
                harness.last_request = request
                async for item in super().stream(request):
                    yield item

        script = Script.from_data({"turns": [self.turn]}, name=self.model)
        return Recording("scripted", scripts={self.model: script})

    def text(self, text: str, tokens: Tokens) -> None:
        self.turn = {
            "reply": text,
            "usage": {
                "input_tokens": tokens.input,
                "output_tokens": tokens.output,
                "cached_tokens": tokens.cached,
            },
        }

    def calls(self, calls: Calls) -> None:
        self.turn = {"tool_calls": [{"name": n, "arguments": a} for n, a in calls]}

    def sent_image(self) -> bool:
        request = self.last_request
        return request is not None and any(
            isinstance(p, ImagePart) and p.data == PNG for m in request.messages for p in m.content
        )


@pytest.fixture
async def transport() -> AsyncIterator[SharedHttpTransport]:
    shared = SharedHttpTransport()
    yield shared
    await shared.aclose()


@pytest.fixture(params=["openai", "anthropic", "gemini", "scripted"])
def harness(request: pytest.FixtureRequest, transport: SharedHttpTransport) -> Harness:
    kind = request.param
    if kind == "openai":
        return OpenAIHarness(request.getfixturevalue("openai_fake"), transport)
    if kind == "anthropic":
        return AnthropicHarness(request.getfixturevalue("anthropic_fake"), transport)
    if kind == "gemini":
        return GeminiHarness(request.getfixturevalue("gemini_fake"), transport)
    return ScriptedHarness()


ADD = ToolSpec(
    name="add",
    description="Add two numbers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
)


def ask(h: Harness, content: Any = "What is 2+3?", **kw: Any) -> ModelRequest:
    return ModelRequest(model=h.model, messages=[Message(role="user", content=content)], **kw)


async def test_plain_text(harness: Harness) -> None:
    harness.text("Five.", Tokens())
    answer = await harness.provider().complete(ask(harness))
    assert answer.message.role == "assistant"
    assert answer.message.text == "Five."
    assert answer.message.tool_calls == []
    assert answer.finish_reason == "stop"


async def test_streamed_text(harness: Harness) -> None:
    harness.text("It is five, of course.", Tokens())
    deltas: list[StreamDelta] = []
    finals: list[ModelResponse] = []
    async for item in harness.provider().stream(ask(harness)):
        (finals if isinstance(item, ModelResponse) else deltas).append(item)  # type: ignore[arg-type]
    assert len(finals) == 1
    assert len(deltas) > 1
    assert "".join(d.text for d in deltas) == finals[0].message.text == "It is five, of course."
    assert finals[0].usage.output_tokens > 0
    assert finals[0].ttft_ms is not None


async def test_tool_call(harness: Harness) -> None:
    harness.calls([("add", {"a": 2, "b": 3})])
    answer = await harness.provider().complete(ask(harness, tools=[ADD]))
    [call] = answer.message.tool_calls
    assert (call.name, call.arguments) == ("add", {"a": 2, "b": 3})
    assert call.id
    assert answer.finish_reason == "tool_calls"


async def test_parallel_tool_calls(harness: Harness) -> None:
    harness.calls([("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})])
    answer = await harness.provider().complete(ask(harness, tools=[ADD]))
    assert [c.arguments for c in answer.message.tool_calls] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert len({c.id for c in answer.message.tool_calls}) == 2


async def test_image_part(harness: Harness) -> None:
    harness.text("A tiny picture.", Tokens())
    content = [TextPart(text="What is this?"), ImagePart(data=PNG, media_type="image/png")]
    answer = await harness.provider().complete(ask(harness, content=content))
    assert answer.message.text == "A tiny picture."
    assert harness.sent_image()


async def test_usage_figures(harness: Harness) -> None:
    harness.text("Counted.", Tokens(input=21, output=9, cached=4))
    answer = await harness.provider().complete(ask(harness))
    assert answer.usage.input_tokens == 21
    assert answer.usage.output_tokens == 9
    assert answer.usage.cached_tokens == 4
