"""What an agent does unless told otherwise: one set of defaults for an agent built in code
(`promptline.runtime.Agent`), the ``agent:`` section of the configuration, the command line and
the gateway. This module imports nothing heavy, so any of them can read it at start-up."""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "DEFAULT_CHAIN_OF_THOUGHT",
    "DEFAULT_MAX_ITERATIONS",
    "DEFAULT_MODE",
    "DEFAULT_ON_CRASH",
    "DEFAULT_QUEUE_MODE",
    "DEFAULT_STREAM",
    "AgentMode",
    "OnCrash",
    "QueueMode",
]

AgentMode = Literal["plan", "act"]
"""``act``: tools run at their permission (``allow``, or ``ask`` answered by a person);
``plan``: only read-only tools run until a person approves the plan the agent submits."""

QueueMode = Literal["enqueue", "steer", "interrupt", "reject"]
"""What a message does while its session's run is in flight."""

OnCrash = Literal["resume", "interrupt"]
"""What a run left in flight by a process that stopped does after the restart."""

DEFAULT_MODE: Final[AgentMode] = "act"
"""Plan mode is asked for (``--mode plan``, ``/mode plan``, ``agent.default_mode``), never
assumed: a first question gets an answer, not a plan to approve."""

DEFAULT_CHAIN_OF_THOUGHT: Final = False
"""Models that reason do so on their own; the instruction costs tokens on every call."""

DEFAULT_STREAM: Final = True
"""Answers are shown as they are written."""

DEFAULT_MAX_ITERATIONS: Final = 20
"""Model calls one run may make before it stops without an answer."""

DEFAULT_QUEUE_MODE: Final[QueueMode] = "enqueue"
"""A message sent while its session is busy waits its turn."""

DEFAULT_ON_CRASH: Final[OnCrash] = "resume"
"""A run cut short by a crash goes on from its last completed step after the restart."""
