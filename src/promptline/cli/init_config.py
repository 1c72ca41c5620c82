"""What ``promptline init`` asks about and writes: the providers it knows, the answers, the
commented ``config.yaml`` made from them, and the one test call made to each provider."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = [
    "CHANNELS",
    "KINDS",
    "InitAnswers",
    "ProviderCheck",
    "ProviderEntry",
    "ProviderKind",
    "check_provider",
    "render_config",
]

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
CHECK_PROMPT = "Reply with the single word: ready"
CHECK_TIMEOUT_SECS = 30.0


@dataclass(frozen=True)
class ProviderKind:
    """A provider `init` offers: its config name, key variable, models and endpoint."""

    choice: str
    title: str
    name: str
    key_env: str | None
    models: tuple[str, ...]
    base_url: str | None = None
    needs_base_url: bool = False
    key_optional: bool = False


KINDS: dict[str, ProviderKind] = {
    kind.choice: kind
    for kind in (
        ProviderKind("openai", "OpenAI", "openai", "OPENAI_API_KEY", ("gpt-4o-mini",)),
        ProviderKind(
            "anthropic", "Anthropic", "anthropic", "ANTHROPIC_API_KEY", ("claude-3-5-haiku-latest",)
        ),
        ProviderKind("gemini", "Google Gemini", "gemini", "GEMINI_API_KEY", ("gemini-2.0-flash",)),
        ProviderKind("deepseek", "DeepSeek", "deepseek", "DEEPSEEK_API_KEY", ("deepseek-chat",)),
        ProviderKind("kimi", "Kimi (Moonshot)", "kimi", "KIMI_API_KEY", ("moonshot-v1-8k",)),
        ProviderKind(
            "ollama",
            "Ollama, on this machine",
            "ollama",
            None,
            ("llama3.1",),
            base_url="http://localhost:11434",
        ),
        ProviderKind(
            "compatible",
            "any OpenAI-compatible server by URL (vLLM, LM Studio, OpenRouter, ...)",
            "compatible",
            "COMPATIBLE_API_KEY",
            (),
            needs_base_url=True,
            key_optional=True,
        ),
        ProviderKind(
            "demo", "the offline scripted demo (no key, no network)", "scripted", None, ("demo",)
        ),
    )
}

CHANNELS: dict[str, str] = {
    "cli": "the terminal: promptline chat and run",
    "http": "messages over HTTP: the REST API",
    "websocket": "browser and client connections over WebSocket",
}


@dataclass
class ProviderEntry:
    """One provider as it will be written."""

    kind: ProviderKind
    name: str
    models: list[str]
    api_key_env: str | None = None
    api_key: str | None = None
    base_url: str | None = None

    def model_ids(self) -> list[str]:
        return [f"{self.name}/{model}" for model in self.models]


@dataclass
class InitAnswers:
    """Everything `init` writes."""

    providers: list[ProviderEntry]
    default_model: str
    channels: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(CHANNELS, True))
    host: str = "127.0.0.1"
    port: int = 8080

    @property
    def env_vars(self) -> list[str]:
        """The environment variables the config refers to."""
        return [p.api_key_env for p in self.providers if p.api_key_env]

    @property
    def has_secret(self) -> bool:
        return any(p.api_key for p in self.providers)


def _q(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value, ensure_ascii=False)


def render_config(answers: InitAnswers) -> str:
    """The commented ``config.yaml`` for ``answers``."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    out = [
        f"# PromptLine configuration, written by `promptline init` on {stamp}.",
        "# Every key is described in docs/configuration.md; `promptline config validate` checks",
        '# this file. "${NAME}" is replaced by the environment variable NAME when the file is',
        "# read, so keys need not be written here.",
        "",
        "gateway:",
        "  # Where `promptline serve` / `promptline start` listen; 0.0.0.0 means every",
        "  # interface (put a TLS reverse proxy in front: docs/deploy.md).",
        f"  host: {_q(answers.host)}",
        f"  port: {answers.port}",
        "  # Every /v1 call needs an API key; the first start prints an admin key.",
        "  auth: true",
        '  # Origins browsers may open the WebSocket from, e.g. ["http://localhost:5173"].',
        "  allowed_origins: []",
        "",
        "models:",
        "  # The model agents use when they name none (provider/model).",
        f"  default: {_q(answers.default_model)}",
        "  providers:",
    ]
    for entry in answers.providers:
        out += _provider_lines(entry)
    out += ["", "channels:", "  # Where messages come from."]
    for channel, description in CHANNELS.items():
        enabled = "true" if answers.channels.get(channel, False) else "false"
        out += [f"  {channel}:", f"    # {description}", f"    enabled: {enabled}"]
    out += [
        "",
        "# The event log, sessions and state live in SQLite at <home>/state.db. For a fleet,",
        "# PostgreSQL and Redis (docs/deploy.md):",
        "# state:",
        "#   backend: postgres",
        '#   postgres_url: "${DATABASE_URL}"',
        '#   redis_url: "${REDIS_URL}"',
        "",
    ]
    return "\n".join(out)


def _provider_lines(entry: ProviderEntry) -> list[str]:
    lines = [f"    # {entry.kind.title}"]
    body: list[str] = []
    if entry.api_key_env:
        body.append(f"api_key: {_q('${' + entry.api_key_env + '}')}")
    elif entry.api_key:
        body.append(f"api_key: {_q(entry.api_key)}  # a secret: keep this file private")
    if entry.base_url:
        body.append(f"base_url: {_q(entry.base_url)}")
    if entry.kind.choice != "demo":
        body.append(f"models: {json.dumps(entry.models, ensure_ascii=False)}")
    if not body:
        return [*lines, f"    {entry.name}: {{}}"]
    return [*lines, f"    {entry.name}:", *(f"      {line}" for line in body)]


@dataclass(frozen=True)
class ProviderCheck:
    """The outcome of one test call."""

    model_id: str
    ok: bool
    message: str


def check_provider(entry: ProviderEntry, *, timeout: float = CHECK_TIMEOUT_SECS) -> ProviderCheck:
    """One short call to the provider's first model, through the provider registry the app
    uses; a failure says why (a missing variable, a refused key, no answer)."""
    import asyncio

    model_id = entry.model_ids()[0] if entry.models else f"{entry.name}/?"
    if not entry.models:
        return ProviderCheck(model_id, False, "no model to test: name at least one")
    key = entry.api_key
    if entry.api_key_env:
        key = os.environ.get(entry.api_key_env)
        if not key:
            return ProviderCheck(
                model_id,
                False,
                f"not tested: {entry.api_key_env} is not set in this shell "
                f"(export {entry.api_key_env}=... and run `promptline models test {model_id}`)",
            )
    import gc

    gc.enable()  # off while the command loaded: a provider's client runs from here
    try:
        return asyncio.run(_call(entry, model_id, key, timeout))
    except Exception as exc:  # reported, and the wizard goes on
        return ProviderCheck(model_id, False, _describe(exc))


async def _call(
    entry: ProviderEntry, model_id: str, key: str | None, seconds: float
) -> ProviderCheck:
    import asyncio

    from promptline.config.settings import Settings
    from promptline.core.messages import Message
    from promptline.models.registry import ProviderRegistry
    from promptline.models.types import ModelRequest

    body: dict[str, object] = {"models": entry.models, "timeout_secs": seconds}
    if key:
        body["api_key"] = key
    if entry.base_url:
        body["base_url"] = entry.base_url
    if entry.kind.choice == "demo":
        body = {}
    settings = Settings.model_validate({"models": {"providers": {entry.name: body}}})
    registry = ProviderRegistry(settings)
    began = time.perf_counter()
    try:
        provider, resolved = registry.provider_for(model_id)
        request = ModelRequest(
            model=resolved.model,
            messages=[Message(role="user", content=CHECK_PROMPT)],
            max_tokens=16,
        )
        response = await asyncio.wait_for(provider.complete(request), seconds)
    finally:
        await registry.aclose()
    elapsed = (time.perf_counter() - began) * 1000
    answer = (response.message.text or "").strip().replace("\n", " ")
    if len(answer) > 60:
        answer = answer[:57] + "..."
    return ProviderCheck(model_id, True, f"answered in {elapsed:.0f} ms: {answer}")


def _describe(exc: BaseException) -> str:
    from promptline.core.errors import PromptLineError

    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, PromptLineError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"
