"""System prompts: a Jinja2 template per agent, rendered with the agent's persona and the
session's context; plus the standing instructions for plan mode and chain of thought."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from promptline.core.errors import ConfigError

if TYPE_CHECKING:
    import jinja2

    from promptline.models.types import ToolSpec
    from promptline.runtime.agent import Agent

__all__ = [
    "ATTACHMENTS",
    "CHAIN_OF_THOUGHT",
    "DEFAULT_SYSTEM_PROMPT",
    "PLAN_MODE",
    "render_system_prompt",
    "split_reasoning",
]

DEFAULT_SYSTEM_PROMPT = """\
You are {{ agent.name }}{% if persona.role is defined %}, {{ persona.role }}{% endif %}.
{%- if agent.description %} {{ agent.description }}{% endif %}
{%- if persona.style is defined %}
Style: {{ persona.style }}{% endif %}
{%- if tools %}
Use the tools when they help; report what they return faithfully.{% endif %}
{%- if context %}
What you know about this conversation:
{%- for key, value in context.items() %}
- {{ key }}: {{ value }}{% endfor %}{% endif %}"""
"""The system prompt of agents that define none."""

PLAN_MODE = """\
You are in plan mode: only read-only tools run. Investigate with them, then call \
submit_plan with a short numbered plan of the changes you would make. The plan is carried \
out (with every tool) only after a person approves it. If the request needs no changes, \
just answer it."""

CHAIN_OF_THOUGHT = """\
Think the problem through step by step inside <thinking>...</thinking> before you answer; \
only the text after </thinking> is shown to the user."""

ATTACHMENTS = "attachments"
"""Key of a session's context listing what is attached to the conversation (``{"key",
"title", "text"}`` objects, e.g. an MCP resource): rendered after the prompt, not as a
context entry."""

_THINKING = re.compile(r"<thinking>(.*?)(?:</thinking>|$)", re.S)


@functools.lru_cache(maxsize=64)
def _template(source: str) -> jinja2.Template:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
    )
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"the system prompt template has a syntax error on line {exc.lineno}: {exc.message}",
            hint="fix agents.<name>.system_prompt (Jinja2 syntax: {{ var }}, {% if %}...)",
        ) from exc


@functools.lru_cache(maxsize=64)
def _variables_of(source: str) -> frozenset[str]:
    """The variables a template reads: only they decide what it renders to."""
    from jinja2 import meta

    template = _template(source)  # a syntax error is reported here, as a ConfigError
    return frozenset(meta.find_undeclared_variables(template.environment.parse(source)))


@functools.lru_cache(maxsize=512)
def _rendered(source: str, variables: bytes) -> str:
    """``source`` rendered with ``variables`` (JSON): the same prompt is rendered once, not at
    every run (rendering costs more than the rest of setting a run up)."""
    return _template(source).render(orjson.loads(variables)).strip()


def render_system_prompt(
    agent: Agent,
    *,
    tools: Sequence[ToolSpec] = (),
    session: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    mode: str | None = None,
) -> str:
    """The system prompt of ``agent`` for one run.

    Template variables: ``agent`` (name, description, mode, model), ``persona``,
    ``session`` (id, user_id, channel, ...), ``user`` (the session's user id), ``tools``
    (name and description of each), ``context`` (the session's context), ``now`` (ISO time).
    A variable the template uses that is not there is a `ConfigError` naming it. What is
    attached to the conversation (``context["attachments"]``) follows the rendered prompt.
    """
    import jinja2

    mode = mode or agent.mode
    context = dict(context or {})
    attached = _attachments(context.pop(ATTACHMENTS, None))
    variables = {
        "agent": {
            "name": agent.name,
            "description": agent.description,
            "mode": mode,
            "model": agent.model,
        },
        "persona": dict(agent.persona),
        "session": dict(session or {}),
        "user": (session or {}).get("user_id"),
        "tools": [{"name": t.name, "description": t.description} for t in tools],
        "context": context,
        "now": (now.isoformat() if now else ""),
    }
    source = agent.system_prompt or DEFAULT_SYSTEM_PROMPT
    used = _variables_of(source)
    key = orjson.dumps({k: v for k, v in variables.items() if k in used}, default=str)
    try:
        text = _rendered(source, key)
    except jinja2.UndefinedError as exc:
        raise ConfigError(
            f"the system prompt of agent {agent.name!r} uses an unknown variable: {exc.message}",
            hint="available: agent, persona, session, user, tools, context, now; "
            "add it to agents.<name>.persona or guard it with {% if ... is defined %}",
        ) from exc
    extra = [attached] if attached else []
    if mode == "plan":
        extra.append(PLAN_MODE)
    if agent.use_chain_of_thought:
        extra.append(CHAIN_OF_THOUGHT)
    return "\n\n".join([text, *extra]) if extra else text


def _attachments(value: Any) -> str:
    """The attachments section: each attachment's title and text."""
    if not isinstance(value, list):
        return ""
    sections = [
        f"## {item.get('title') or item.get('key') or 'attachment'}\n{item['text']}"
        for item in value
        if isinstance(item, Mapping) and isinstance(item.get("text"), str)
    ]
    if not sections:
        return ""
    return "Attached to this conversation:\n\n" + "\n\n".join(sections)


def split_reasoning(text: str) -> tuple[str, str]:
    """``(visible answer, reasoning)``: the ``<thinking>`` blocks taken out of ``text``."""
    if "<thinking>" not in text:
        return text, ""
    reasoning = "\n".join(m.strip() for m in _THINKING.findall(text))
    return _THINKING.sub("", text).strip(), reasoning
