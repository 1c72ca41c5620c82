"""PromptLine: a local-first runtime and gateway for AI agents.

The front door for Python programs (loaded on first use, so ``import promptline`` stays
cheap)::

    from promptline import Agent, tool

    agent = Agent("openai/gpt-4o-mini", instructions="Be brief.", tools=[add])
    print(agent.run_sync("What is 2+3?").text)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptline._lazy import lazy_names

__version__ = "0.1.0"

if TYPE_CHECKING:
    from promptline.agent import (
        Agent,
        Installation,
        RunFailedError,
        Template,
        TextDelta,
        connect,
    )
    from promptline.tools.function import tool

__all__ = [
    "Agent",
    "Installation",
    "RunFailedError",
    "Template",
    "TextDelta",
    "__version__",
    "connect",
    "tool",
]

_LAZY = {
    "Agent": "promptline.agent",
    "Installation": "promptline.agent",
    "RunFailedError": "promptline.agent",
    "Template": "promptline.agent",
    "TextDelta": "promptline.agent",
    "connect": "promptline.agent",
    "tool": "promptline.tools.function",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
