"""An agent definition: its model, prompt, tools and loop settings; from config or code."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptline.core.agents import (
    DEFAULT_CHAIN_OF_THOUGHT,
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODE,
    DEFAULT_ON_CRASH,
    DEFAULT_QUEUE_MODE,
    DEFAULT_STREAM,
    OnCrash,
    QueueMode,
)
from promptline.core.agents import AgentMode as Mode

if TYPE_CHECKING:
    from promptline.config.settings import AgentDefinition, AgentSettings, Settings

__all__ = ["DEFAULT_AGENT", "Agent", "Mode", "OnCrash", "QueueMode", "agents_from_settings"]

DEFAULT_AGENT = "assistant"
"""The agent that answers when none is named (and none is configured under that name)."""


@dataclass(frozen=True, slots=True)
class Agent:
    """What an agent is. Everything but ``name`` has a default; build variants with `evolve`.

    The defaults are those of a configured agent whose keys are unset (`promptline.core.agents`
    holds them for both): act mode, no chain-of-thought instruction, streamed answers.
    ``model`` is a model id (``openai/gpt-4o``), a routing tag (``tag:coding``) or None for
    ``models.default``. ``system_prompt`` is a Jinja2 template (see `render_system_prompt`).
    ``tools`` names the tools it may use (names or patterns; None for every registered tool).
    """

    name: str
    model: str | None = None
    system_prompt: str | None = None
    persona: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    tools: tuple[str, ...] | None = None
    mode: Mode = DEFAULT_MODE
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    queue_mode: QueueMode = DEFAULT_QUEUE_MODE
    use_chain_of_thought: bool = DEFAULT_CHAIN_OF_THOUGHT
    stream: bool = DEFAULT_STREAM
    temperature: float | None = None
    max_tokens: int | None = None
    workspace: Path | None = None
    on_crash: OnCrash = DEFAULT_ON_CRASH
    """What a run left in flight by a process that stopped does after the restart: go on
    from its last completed step (``resume``) or end as interrupted (``interrupt``)."""

    def evolve(self, **changes: Any) -> Agent:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    @classmethod
    def from_settings(
        cls, name: str, definition: AgentDefinition | None, defaults: AgentSettings
    ) -> Agent:
        """The agent ``name`` from its ``agents.<name>`` block, unset keys from ``agent:``."""
        d = definition

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return cls(
            name=name,
            model=d.model if d else None,
            system_prompt=d.system_prompt if d else None,
            persona=dict(d.persona) if d else {},
            description=d.description if d else "The built-in general assistant.",
            tools=tuple(d.tools) if d and d.tools is not None else None,
            mode=pick(d.mode if d else None, defaults.default_mode),
            max_iterations=pick(d.max_iterations if d else None, defaults.max_iterations),
            queue_mode=pick(d.queue_mode if d else None, defaults.queue_mode),
            use_chain_of_thought=pick(
                d.use_chain_of_thought if d else None, defaults.use_chain_of_thought
            ),
            stream=defaults.stream_enabled,
            temperature=d.temperature if d else None,
            max_tokens=d.max_tokens if d else None,
            workspace=pick(d.workspace if d else None, defaults.workspace),
            on_crash=pick(d.on_crash if d else None, defaults.on_crash),
        )


def agents_from_settings(settings: Settings) -> dict[str, Agent]:
    """Every configured agent, plus the built-in ``assistant`` unless one is configured."""
    agents = {
        name: Agent.from_settings(name, definition, settings.agent)
        for name, definition in settings.agents.items()
    }
    if DEFAULT_AGENT not in agents:
        agents[DEFAULT_AGENT] = Agent.from_settings(DEFAULT_AGENT, None, settings.agent)
    return dict(sorted(agents.items()))
