"""The agent runtime: agent definitions, the ReAct loop, run lifecycle, session lanes.

The names below are loaded on first use, so that importing one of the package's light modules
(``promptline.runtime.records`` for ``promptline runs list``, say) does not load the loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptline._lazy import lazy_names

if TYPE_CHECKING:
    from promptline.runtime.agent import DEFAULT_AGENT, Agent, agents_from_settings
    from promptline.runtime.run import Run, RunResult, SessionView
    from promptline.runtime.runtime import Runtime
    from promptline.runtime.services import RunServices

__all__ = [
    "DEFAULT_AGENT",
    "Agent",
    "Run",
    "RunResult",
    "RunServices",
    "Runtime",
    "SessionView",
    "agents_from_settings",
]

_LAZY = {
    "DEFAULT_AGENT": "promptline.runtime.agent",
    "Agent": "promptline.runtime.agent",
    "agents_from_settings": "promptline.runtime.agent",
    "Run": "promptline.runtime.run",
    "RunResult": "promptline.runtime.run",
    "SessionView": "promptline.runtime.run",
    "Runtime": "promptline.runtime.runtime",
    "RunServices": "promptline.runtime.services",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
