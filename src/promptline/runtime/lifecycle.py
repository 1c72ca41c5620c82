"""The lifecycle state machine of an agent run: eight states, only the legal moves.

``created -> initializing -> ready -> running <-> paused``, then ``stopping -> stopped``;
any live state may fall into ``error``. ``stopped`` and ``error`` are final.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

from promptline.core.errors import ConflictError
from promptline.core.events import LifecycleState

__all__ = ["FINAL_STATES", "LIFECYCLE_STATES", "TRANSITIONS", "Lifecycle", "is_legal"]

LIFECYCLE_STATES: tuple[LifecycleState, ...] = get_args(LifecycleState)

TRANSITIONS: dict[LifecycleState, frozenset[LifecycleState]] = {
    "created": frozenset({"initializing", "stopping", "error"}),
    "initializing": frozenset({"ready", "stopping", "error"}),
    "ready": frozenset({"running", "stopping", "error"}),
    "running": frozenset({"paused", "stopping", "error"}),
    "paused": frozenset({"running", "stopping", "error"}),
    "stopping": frozenset({"stopped", "error"}),
    "stopped": frozenset(),
    "error": frozenset(),
}
"""Each state and the states it may move to."""

FINAL_STATES: frozenset[LifecycleState] = frozenset({"stopped", "error"})


def is_legal(from_state: LifecycleState, to_state: LifecycleState) -> bool:
    """True when a run may move from ``from_state`` to ``to_state``."""
    return to_state in TRANSITIONS[from_state]


class Lifecycle:
    """The state of one run. `move` checks the transition and tells ``on_change``
    (which records an ``agent_lifecycle`` event) before the new state counts."""

    __slots__ = ("_on_change", "_state")

    def __init__(
        self,
        on_change: Callable[[LifecycleState | None, LifecycleState, str | None], None],
    ) -> None:
        self._state: LifecycleState = "created"
        self._on_change = on_change
        on_change(None, "created", None)

    @property
    def state(self) -> LifecycleState:
        """The current state."""
        return self._state

    @property
    def final(self) -> bool:
        """True once the run is stopped or has failed."""
        return self._state in FINAL_STATES

    def move(self, to_state: LifecycleState, reason: str | None = None) -> None:
        """Go to ``to_state``; `ConflictError` when that move is not legal from here."""
        if not is_legal(self._state, to_state):
            allowed = ", ".join(sorted(TRANSITIONS[self._state])) or "none (final state)"
            raise ConflictError(
                f"a run cannot go from {self._state} to {to_state}",
                hint=f"from {self._state} it may go to: {allowed}",
                from_state=self._state,
                to_state=to_state,
            )
        self._on_change(self._state, to_state, reason)
        self._state = to_state
