"""Layer 3: who may run which tool: the permission policy, approvals, remembered grants and
the gate the tool executor asks."""

from __future__ import annotations

from promptline.config.settings import Settings
from promptline.core.clock import Clock
from promptline.events.protocols import EventBus, EventStore
from promptline.security.approvals import (
    ApprovalBroker,
    ApprovalOutcome,
    ApprovalRecord,
    ApprovalRequest,
    DecisionListener,
    GrantScope,
)
from promptline.security.gate import PermissionManager
from promptline.security.grants import Grant, GrantStore
from promptline.security.policy import Level, PermissionDecision, PermissionPolicy
from promptline.state.protocols import StateStore

__all__ = [
    "ApprovalBroker",
    "ApprovalOutcome",
    "ApprovalRecord",
    "ApprovalRequest",
    "Grant",
    "GrantScope",
    "GrantStore",
    "Level",
    "PermissionDecision",
    "PermissionManager",
    "PermissionPolicy",
    "build_permissions",
]


def build_permissions(
    settings: Settings,
    bus: EventBus,
    store: EventStore,
    state: StateStore,
    clock: Clock | None = None,
) -> PermissionManager:
    """The permission gate for the tool executor, wired from ``settings``.

    ``store`` is the event store behind ``bus`` (pending requests are read from it) and
    ``state`` keeps remembered grants. Call ``await manager.recover()`` once on start and
    ``await manager.close()`` on stop; ``manager.reload(settings)`` on a config reload.
    """
    policy = PermissionPolicy(settings)
    grants = GrantStore(state, clock=clock)
    broker = ApprovalBroker(
        bus,
        store,
        timeout=settings.permissions.approval_timeout_secs,
        clock=clock,
        on_decision=_remembering(grants),
    )
    return PermissionManager(policy, broker, grants, bus, alerts=settings.security.audit_log)


def _remembering(grants: GrantStore) -> DecisionListener:
    async def remember(outcome: ApprovalOutcome) -> None:
        await grants.remember(outcome)

    return remember
