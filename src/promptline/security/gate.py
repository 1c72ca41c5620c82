"""The permission gate of the tool executor: policy first, then remembered grants, then a person.

allow runs the call; deny refuses it, naming the rule; ask runs it at once when a session or
always grant covers the tool, and otherwise waits for an approval (see `ApprovalBroker`). A
grant for a shell command covers only the same command, in the same folder, running the same
scripts (see `promptline.security.exec_policy.approval_binding`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from promptline.core.errors import PromptLineError
from promptline.core.events import EventEnvelope, SecurityAlert, SecurityAlertEvent
from promptline.core.messages import ToolCall
from promptline.core.tool_calls import Authorization, CallScope
from promptline.events.protocols import EventBus
from promptline.security.approvals import (
    CANCELLED,
    ApprovalBroker,
    ApprovalOutcome,
    ApprovalRequest,
    GrantScope,
)
from promptline.security.exec_policy import SHELL_TOOL, approval_binding
from promptline.security.grants import Grant, GrantStore
from promptline.security.policy import PermissionDecision, PermissionPolicy

if TYPE_CHECKING:
    # The tool is only read (its name and flags): the gate needs no code of the tools.
    from promptline.config.settings import Settings
    from promptline.security.audit import Auditor
    from promptline.tools.base import Tool

__all__ = ["PermissionManager"]

POLICY = "policy"
"""``decided_by`` of an answer the policy gave on its own (allow or deny)."""


class PermissionManager:
    """`PermissionGate` over a `PermissionPolicy`, a `GrantStore` and an `ApprovalBroker`.

    A refused call of a destructive tool also publishes a ``security_alert`` (when
    ``alerts`` is on: ``security.audit_log``), and so does an allowed call of a sensitive tool
    (``security.alerts.sensitive``) when an `Auditor` is given; with one, alerts also go to
    its webhook.
    """

    def __init__(
        self,
        policy: PermissionPolicy,
        broker: ApprovalBroker,
        grants: GrantStore,
        bus: EventBus | None = None,
        *,
        alerts: bool = True,
        auditor: Auditor | None = None,
    ) -> None:
        self.policy = policy
        self.broker = broker
        self.grants = grants
        self._bus = bus
        self.alerts = alerts
        self.auditor = auditor

    def decide(self, tool: Tool, call: ToolCall, scope: CallScope) -> PermissionDecision:
        """What the policy alone says about ``call`` (no grants, nobody asked)."""
        return self.policy.decide(
            call.name,
            call.arguments,
            read_only=tool.read_only,
            agent=scope.agent,
            user=scope.user_id,
            session_id=scope.session_id,
            session_rules=scope.session_rules,
            workspace=scope.workspace,
        )

    async def authorize(self, tool: Tool, call: ToolCall, scope: CallScope) -> Authorization:
        """Allow or refuse ``call``; may wait for a person. A refusal's reason is shown to
        the model, so it says which rule or who refused, and what to do."""
        decision = self.decide(tool, call, scope)
        if decision.allowed:
            await self._sensitive(call, scope)
            return Authorization(True, decision.reason, POLICY)
        if decision.denied:
            await self._alert(tool, call, scope, decision.reason, POLICY, decision)
            return Authorization(False, decision.reason, POLICY)
        binding = _binding(call, scope)
        grant = await self._grant(call.name, scope, binding)
        if grant is not None:
            await self._sensitive(call, scope)
            return Authorization(True, _granted(grant), f"grant:{grant.scope}")
        try:
            outcome = await self.broker.request(
                call.name,
                call.arguments,
                scope,
                decision.reason,
                call_id=call.id,
                destructive=tool.destructive,
                binding=binding,
            )
        except PromptLineError as exc:
            reason = f"the approval could not be asked for ({exc.message}); try again later"
            return Authorization(False, reason, "error")
        if outcome.approved:
            await self._sensitive(call, scope)
            return Authorization(True, _approved(outcome), outcome.decided_by)
        reason = _refused(outcome)
        await self._alert(tool, call, scope, reason, outcome.decided_by, decision)
        return Authorization(False, reason, outcome.decided_by)

    # -- what the gateway and the app call ---------------------------------------------------

    async def respond(
        self,
        request_id: str,
        *,
        approve: bool,
        scope: GrantScope = "once",
        decided_by: str | None = None,
        reason: str | None = None,
        content: Mapping[str, Any] | None = None,
    ) -> ApprovalOutcome:
        """Answer a pending request (see `ApprovalBroker.respond`); ``content`` answers a
        question (an MCP server's elicitation)."""
        return await self.broker.respond(
            request_id,
            approve=approve,
            scope=scope,
            decided_by=decided_by,
            reason=reason,
            content=content,
        )

    async def pending(self, session_id: str | None = None) -> list[ApprovalRequest]:
        """Requests waiting for an answer (see `ApprovalBroker.pending`)."""
        return await self.broker.pending(session_id)

    async def resume(self, request_id: str) -> Authorization:
        """The answer to a request a call asked before a restart, awaited while it is
        pending, in the words `authorize` would have used (the call resumes with it)."""
        try:
            outcome = await self.broker.wait_for(request_id)
        except PromptLineError as exc:
            reason = f"the approval could not be read back ({exc.message}); try again later"
            return Authorization(False, reason, "error")
        if outcome.approved:
            return Authorization(True, _approved(outcome), outcome.decided_by)
        return Authorization(False, _refused(outcome), outcome.decided_by)

    def keep_pending(self) -> list[str]:
        """The process is stopping: approvals being waited for stay pending (see
        `ApprovalBroker.keep_pending`); the run ids waiting for one now."""
        return self.broker.keep_pending()

    def reload(self, settings: Settings) -> None:
        """Apply new settings: rules, ``security.require_approval``, the approval timeout
        (for requests made from now on) and ``security.audit_log``."""
        self.policy.reload(settings)
        self.broker.timeout = settings.permissions.approval_timeout_secs
        self.alerts = settings.security.audit_log
        if self.auditor is not None:
            self.auditor.reload(settings)

    async def recover(self) -> list[ApprovalOutcome]:
        """On start: settle requests left over from before (see `ApprovalBroker.recover`)."""
        return await self.broker.recover()

    async def close(self) -> None:
        """Stop waiting; undecided requests stay pending in the log."""
        await self.broker.close()

    # -- internals --------------------------------------------------------------------------

    async def _grant(self, tool: str, scope: CallScope, binding: str | None) -> Grant | None:
        try:
            return await self.grants.find(
                tool,
                session_id=scope.session_id,
                user_id=scope.user_id,
                tenant_id=scope.tenant_id,
                binding=binding,
            )
        except PromptLineError:
            return None  # grants unreadable: asking is the safe way on

    async def _sensitive(self, call: ToolCall, scope: CallScope) -> None:
        if self.auditor is None or not self.auditor.is_sensitive(call.name):
            return
        await self.auditor.tool_allowed(call.name, call.id, call.arguments, _envelope(scope))

    async def _alert(
        self,
        tool: Tool,
        call: ToolCall,
        scope: CallScope,
        reason: str,
        decided_by: str | None,
        decision: PermissionDecision,
    ) -> None:
        if not (self.alerts and tool.destructive and self._bus is not None):
            return
        if decided_by == CANCELLED:
            return
        message = f"{call.name} (destructive) was refused: {reason}"
        details = {
            "tool": call.name,
            "call_id": call.id,
            "decided_by": decided_by,
            "level": decision.level,
            "rule": decision.pattern,
        }
        if self.auditor is not None:
            # Written, and sent to the webhook, by the auditor; it never raises.
            await self.auditor.alert(
                "destructive_tool_denied", message, envelope=_envelope(scope), details=details
            )
            return
        alert = SecurityAlertEvent(
            **_envelope(scope).model_dump(exclude={"id", "ts", "seq", "position"}),
            data=SecurityAlert(
                severity="warning",
                kind="destructive_tool_denied",
                message=message,
                details=details,
            ),
        )
        # An alert that cannot be written must not change the answer.
        with contextlib.suppress(PromptLineError):
            await self._bus.publish(alert)


def _envelope(scope: CallScope) -> EventEnvelope:
    """The ids of an alert about a call in ``scope``."""
    return EventEnvelope(
        stream=scope.session_id or scope.run_id or "",
        session_id=scope.session_id,
        run_id=scope.run_id,
        user_id=scope.user_id,
        tenant_id=scope.tenant_id,
        agent_id=scope.agent,
        correlation_id=scope.correlation_id,
    )


def _binding(call: ToolCall, scope: CallScope) -> str | None:
    """What an approval of ``call`` is bound to beyond its tool: for a shell command, its
    argv chain, folder and scripts (see `approval_binding`); None for other tools."""
    command = call.arguments.get("command")
    if call.name != SHELL_TOOL or not isinstance(command, str):
        return None
    cwd = call.arguments.get("cwd", ".")
    return approval_binding(
        command, workspace=scope.workspace, cwd=cwd if isinstance(cwd, str) else "."
    )


def _granted(grant: Grant) -> str:
    by = f" by {grant.decided_by}" if grant.decided_by else ""
    if grant.scope == "session":
        return f"approved{by} for the rest of this session"
    return f"approved{by} for this user from now on"


def _approved(outcome: ApprovalOutcome) -> str:
    by = f" by {outcome.decided_by}" if outcome.decided_by else ""
    reach = {"once": "for this call", "session": "for this session", "always": "from now on"}
    return f"approved{by} {reach[outcome.scope]}"


def _refused(outcome: ApprovalOutcome) -> str:
    if outcome.timed_out:
        return (
            "nobody answered the permission request in time, so it counts as refused; "
            "ask the user to approve it before trying again"
        )
    by = outcome.decided_by or "the approver"
    text = f"{by} refused it"
    if outcome.reason:
        text += f": {outcome.reason}"
    return text + "; do not retry it unchanged"
