"""The audit trail and security alerts: `Auditor` records operations on the installation as
``audit`` events and raises ``security_alert`` events for the sensitive ones.

Alerts go to the log always, and to a webhook when ``security.alerts.webhook_url`` is set: a
JSON POST sent in the background (a time limit per attempt, a bounded number of retries,
failures logged), so an alert never holds up the run or the request that raised it.

Failed logins are counted per source address: the first failure of an address in a minute is
recorded at once, and the failures after it in that minute are carried by the address's next
record as its ``count``, so a flood of bad keys writes at most one event a minute per address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from promptline.core.errors import PromptLineError
from promptline.core.events import (
    AuditEvent,
    AuditRecord,
    EventEnvelope,
    SecurityAlert,
    SecurityAlertEvent,
    encode_event,
)

if TYPE_CHECKING:
    from promptline.config.settings import AlertSettings, Settings
    from promptline.events.protocols import EventBus

__all__ = [
    "AUDIT_STREAM",
    "AUTH_WINDOW_SECS",
    "REPEATED_FAILURES",
    "Auditor",
]

AUDIT_STREAM = "audit"
"""The stream of ``audit`` events (and of the alerts they raise)."""

AUTH_WINDOW_SECS = 60.0
"""Failed logins of one address are recorded at most once per this many seconds."""

REPEATED_FAILURES = "auth.repeated_failures"
"""The sensitive-operation name of an address passing ``auth_failures_per_minute``."""

_MAX_SOURCES = 10_000
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Failures:
    window_start: float
    in_window: int
    unrecorded: int
    alerted: bool


class Auditor:
    """Writes ``audit`` and ``security_alert`` events and sends alerts to the webhook.

    With ``security.audit_log`` off it records nothing and raises no alert (tool, approval
    and run events are the log itself and are written regardless).
    """

    def __init__(
        self, settings: Settings, bus: EventBus, *, monotonic: Any = time.monotonic
    ) -> None:
        self._bus = bus
        self._monotonic = monotonic
        self._failures: dict[str, _Failures] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.reload(settings)

    def reload(self, settings: Settings) -> None:
        """Apply ``security.audit_log`` and ``security.alerts``."""
        self.enabled = settings.security.audit_log
        self.alerts: AlertSettings = settings.security.alerts
        self._sensitive = frozenset(self.alerts.sensitive)

    def is_sensitive(self, name: str) -> bool:
        """True when ``name`` (a tool or an audit action) raises an alert."""
        return name in self._sensitive

    async def record(
        self,
        action: str,
        *,
        actor: str | None = None,
        key_id: str | None = None,
        tenant_id: str | None = None,
        target: str | None = None,
        outcome: Literal["success", "failure"] = "success",
        source: str | None = None,
        count: int = 1,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Write an ``audit`` event, and an alert when ``action`` is sensitive. A record that
        cannot be written is logged; it never fails the operation it describes."""
        if not self.enabled:
            return
        event = AuditEvent(
            stream=AUDIT_STREAM,
            tenant_id=tenant_id,
            data=AuditRecord(
                action=action,
                actor=actor,
                key_id=key_id,
                target=target,
                outcome=outcome,
                source=source,
                count=count,
                details=dict(details or {}),
            ),
        )
        if not await self._publish(event):
            return
        if self.is_sensitive(action):
            by = f" by {actor}" if actor else ""
            on = f" on {target}" if target else ""
            await self.alert(
                action,
                f"{action} ({outcome}){by}{on} from {source or 'unknown'}",
                envelope=event,
                causation_id=event.id,
                details={
                    "actor": actor,
                    "key_id": key_id,
                    "target": target,
                    "outcome": outcome,
                    "source": source,
                },
            )

    async def alert(
        self,
        kind: str,
        message: str,
        *,
        envelope: EventEnvelope | None = None,
        severity: Literal["info", "warning", "critical"] = "warning",
        details: Mapping[str, Any] | None = None,
        stream: str | None = None,
        causation_id: str | None = None,
    ) -> None:
        """Write a ``security_alert`` (its ids taken from ``envelope``) and send it to the
        webhook in the background."""
        if not self.enabled:
            return
        ids: dict[str, Any] = {}
        if envelope is not None:
            ids = {
                "tenant_id": envelope.tenant_id,
                "user_id": envelope.user_id,
                "session_id": envelope.session_id,
                "run_id": envelope.run_id,
                "agent_id": envelope.agent_id,
                "correlation_id": envelope.correlation_id,
            }
        ids["causation_id"] = causation_id
        event = SecurityAlertEvent(
            stream=stream if stream is not None else (envelope.stream if envelope else ""),
            **ids,
            data=SecurityAlert(
                severity=severity, kind=kind, message=message, details=dict(details or {})
            ),
        )
        if await self._publish(event):
            self._send(event)

    async def tool_allowed(
        self, tool: str, call_id: str, arguments: Mapping[str, Any], envelope: EventEnvelope
    ) -> None:
        """A call of a sensitive tool was allowed to run: alert."""
        if not self.is_sensitive(tool):
            return
        await self.alert(
            "sensitive_tool",
            f"{tool} runs for {envelope.user_id or 'an unknown user'}",
            envelope=envelope,
            details={"tool": tool, "call_id": call_id, "arguments": dict(arguments)},
        )

    async def failed_login(
        self, source: str | None, *, key_id: str | None, reason: str, user: str | None = None
    ) -> None:
        """A request came with a missing or bad API key or token, or a sign-in with a wrong
        password (``user``: the ``tenant/user`` it named). Recorded at most once a minute per
        source address (with the count of failures since its last record); an address that
        reaches ``auth_failures_per_minute`` within a minute raises one alert for it."""
        if not self.enabled:
            return
        address = source or "unknown"
        now = self._monotonic()
        seen = self._failures.get(address)
        if seen is None:
            if len(self._failures) >= _MAX_SOURCES:
                self._forget(now)
            seen = self._failures[address] = _Failures(now, 0, 0, False)
        fresh = now - seen.window_start >= AUTH_WINDOW_SECS
        if fresh:
            seen.window_start, seen.in_window, seen.alerted = now, 0, False
        seen.in_window += 1
        seen.unrecorded += 1
        if seen.in_window == 1:
            count, seen.unrecorded = seen.unrecorded, 0
            await self.record(
                "auth.failed",
                outcome="failure",
                key_id=key_id,
                source=address,
                count=count,
                details={"reason": reason} if user is None else {"reason": reason, "user": user},
            )
        if not seen.alerted and seen.in_window >= self.alerts.auth_failures_per_minute:
            seen.alerted = True
            if self.is_sensitive(REPEATED_FAILURES):
                await self.alert(
                    REPEATED_FAILURES,
                    f"{seen.in_window} failed logins from {address} within a minute",
                    stream=AUDIT_STREAM,
                    details={"source": address, "count": seen.in_window, "key_id": key_id},
                )

    async def close(self, within: float | None = None) -> None:
        """Wait (at most ``within`` seconds; default: as long as every attempt could take) for
        the webhook deliveries still under way."""
        if not self._tasks:
            return
        limit = within
        if limit is None:
            attempts = self.alerts.webhook_retries + 1
            limit = attempts * self.alerts.webhook_timeout_secs + 2.0 * attempts
        _, late = await asyncio.wait(set(self._tasks), timeout=limit)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if late:
            _log.warning("%d security alert(s) not delivered to the webhook before stop", len(late))

    # -- internals --------------------------------------------------------------------------

    async def _publish(self, event: AuditEvent | SecurityAlertEvent) -> bool:
        try:
            await self._bus.publish(event)
        except PromptLineError as exc:
            _log.error("could not record %s %s: %s", event.type, event.id, exc.message)
            return False
        return True

    def _forget(self, now: float) -> None:
        stale = [a for a, f in self._failures.items() if now - f.window_start >= AUTH_WINDOW_SECS]
        for address in stale or list(self._failures)[: _MAX_SOURCES // 10]:
            del self._failures[address]

    def _send(self, event: SecurityAlertEvent) -> None:
        url = self.alerts.webhook_url
        if not url:
            return
        task = asyncio.get_running_loop().create_task(
            _post(
                url,
                encode_event(event),
                limit=self.alerts.webhook_timeout_secs,
                retries=self.alerts.webhook_retries,
                what=f"security alert {event.id} ({event.data.kind})",
            ),
            name=f"alert-webhook-{event.id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _post(url: str, body: bytes, *, limit: float, retries: int, what: str) -> None:
    """POST ``body`` to ``url``: 1 + ``retries`` attempts, 0.5 s, 1 s, 2 s ... apart."""
    import httpx

    headers = {"content-type": "application/json", "user-agent": "promptline-alerts"}
    async with httpx.AsyncClient(timeout=limit, follow_redirects=False) as client:
        for attempt in range(retries + 1):
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return
                problem = f"HTTP {response.status_code}"
            if attempt < retries:
                _log.warning(
                    "webhook delivery of %s failed (%s); attempt %d of %d follows",
                    what,
                    problem,
                    attempt + 2,
                    retries + 1,
                )
                await asyncio.sleep(0.5 * 2**attempt)
            else:
                _log.error(
                    "webhook delivery of %s failed after %d attempt(s): %s; it stays in the log",
                    what,
                    retries + 1,
                    problem,
                )
