"""`build_permissions`: the permission gate wired from the settings, with remembered grants
and their audit."""

from __future__ import annotations

from promptline.config.settings import Settings
from promptline.core.clock import Clock
from promptline.events.protocols import EventBus, EventStore
from promptline.security.approvals import ApprovalBroker, ApprovalOutcome, DecisionListener
from promptline.security.audit import Auditor
from promptline.security.gate import PermissionManager
from promptline.security.grants import GrantStore
from promptline.security.policy import PermissionPolicy
from promptline.state.protocols import StateStore

__all__ = ["build_permissions"]


def build_permissions(
    settings: Settings,
    bus: EventBus,
    store: EventStore,
    state: StateStore,
    clock: Clock | None = None,
    auditor: Auditor | None = None,
) -> PermissionManager:
    """The permission gate for the tool executor, wired from ``settings``.

    ``store`` is the event store behind ``bus`` (pending requests are read from it) and
    ``state`` keeps remembered grants; ``auditor`` (optional) raises the alerts of sensitive
    tools and sends alerts to the webhook. Call ``await manager.recover()`` once on start and
    ``await manager.close()`` on stop; ``manager.reload(settings)`` on a config reload.
    """
    policy = PermissionPolicy(settings)
    grants = GrantStore(state, clock=clock)
    broker = ApprovalBroker(
        bus,
        store,
        timeout=settings.permissions.approval_timeout_secs,
        clock=clock,
        on_decision=_remembering(grants, auditor),
    )
    return PermissionManager(
        policy, broker, grants, bus, alerts=settings.security.audit_log, auditor=auditor
    )


def _remembering(grants: GrantStore, auditor: Auditor | None) -> DecisionListener:
    async def remember(outcome: ApprovalOutcome) -> None:
        grant = await grants.remember(outcome)
        if grant is not None and auditor is not None:
            # A standing grant changes the rules at run time: on the audit trail.
            await auditor.record(
                "permissions.changed",
                actor=outcome.decided_by,
                tenant_id=outcome.request.tenant_id,
                target=f"{grant.scope}:{outcome.tool}",
                details={
                    "change": "grant",
                    "tool": outcome.tool,
                    "scope": grant.scope,
                    "user_id": outcome.request.user_id,
                    "session_id": outcome.request.session_id,
                    "request_id": outcome.request_id,
                },
            )

    return remember
