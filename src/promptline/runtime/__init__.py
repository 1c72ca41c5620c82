"""The agent runtime: agent definitions, the ReAct loop, run lifecycle, session lanes."""

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
