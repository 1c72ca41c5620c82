"""The compliance report: what the event log says happened in a period, for one tenant or all.

`build_report` folds events (oldest first) into five sections; `render` writes it as
Markdown, CSV or JSON. Nothing here reads a database: the caller reads the log.

- ``activity``: who did what: each operation on the installation (``audit`` events) and each
  tool a run executed (``tool_command``, its outcome from the ``tool_result`` that names it);
- ``approvals``: every permission request answered, granted or denied, by whom (and, for an
  answer given over the API, with which key and from which address);
- ``alerts``: every ``security_alert``;
- ``quota``: requests and runs refused because a quota of their user or tenant was used up
  (``quota_exceeded`` events, each counting the refusals since the previous one of its quota
  and subject), and runs that ended because a budget was used up (``run_failed`` with code
  ``budget_exceeded``); requests refused by the per-key rate limiter are not recorded;
- ``failed_logins``: requests with a missing or bad API key, per address (each record counts
  the failures since the address's previous one).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson

from promptline.core.events import Event

__all__ = ["REPORT_TYPES", "SECTIONS", "AuditReport", "build_report", "render"]

Format = Literal["md", "csv", "json"]

REPORT_TYPES = frozenset(
    {
        "audit",
        "tool_command",
        "tool_result",
        "permission_granted",
        "permission_denied",
        "security_alert",
        "run_failed",
        "quota_exceeded",
    }
)
"""The event types the report reads."""

QUOTA_CODES = frozenset({"budget_exceeded"})

SECTIONS: dict[str, tuple[str, list[str], str]] = {
    "activity": (
        "Activity",
        ["time", "tenant", "actor", "key_id", "action", "target", "outcome", "source", "count"],
        "No operation or tool execution is recorded.",
    ),
    "approvals": (
        "Approvals",
        [
            "time",
            "tenant",
            "user",
            "tool",
            "decision",
            "decided_by",
            "scope",
            "reason",
            "request_id",
            "key_id",
            "source",
        ],
        "No approval was given or denied.",
    ),
    "alerts": (
        "Security alerts",
        ["time", "tenant", "user", "severity", "kind", "message"],
        "No security alert was raised.",
    ),
    "quota": (
        "Quota hits",
        [
            "time",
            "tenant",
            "user",
            "code",
            "quota",
            "scope",
            "limit",
            "used",
            "count",
            "run_id",
            "message",
        ],
        "No quota hit is recorded (quotas refusing a request or a run, budgets ending a run; "
        "requests refused by the per-key rate limiter are not recorded in the log).",
    ),
    "failed_logins": (
        "Failed logins",
        ["time", "source", "count", "key_id", "reason"],
        "No failed login is recorded.",
    ),
}
"""Section -> (title, columns, what the report says when it is empty)."""


@dataclass
class AuditReport:
    """The rows of each section, and the period and tenant they cover."""

    since: datetime | None
    until: datetime | None
    tenant: str | None
    sections: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {name: [] for name in SECTIONS}
    )

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
            "tenant": self.tenant,
            **self.sections,
        }


def build_report(
    events: Iterable[Event],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tenant: str | None = None,
) -> AuditReport:
    """Fold ``events`` (oldest first, already limited to the period and tenant) into a
    report."""
    report = AuditReport(since, until, tenant)
    out = report.sections
    tools: dict[str, dict[str, Any]] = {}
    approvals: dict[str, dict[str, Any]] = {}
    answered: dict[str, dict[str, Any]] = {}
    for event in events:
        data: Any = event.data
        base = {"time": event.ts.isoformat(), "tenant": event.tenant_id}
        match event.type:
            case "audit":
                if data.action == "auth.failed":
                    out["failed_logins"].append(
                        {
                            "time": base["time"],
                            "source": data.source,
                            "count": data.count,
                            "key_id": data.key_id,
                            "reason": data.details.get("reason"),
                        }
                    )
                    continue
                if data.action.startswith("approval.") and data.target:
                    answered[data.target] = {"key_id": data.key_id, "source": data.source}
                    row = approvals.get(data.target)
                    if row is not None:
                        row.update(answered[data.target])
                out["activity"].append(
                    {
                        **base,
                        "actor": data.actor,
                        "key_id": data.key_id,
                        "action": data.action,
                        "target": data.target,
                        "outcome": data.outcome,
                        "source": data.source,
                        "count": data.count,
                    }
                )
            case "tool_command":
                row = {
                    **base,
                    "actor": event.user_id,
                    "key_id": None,
                    "action": f"tool:{data.call.name}",
                    "target": event.session_id or event.run_id,
                    "outcome": "no result",
                    "source": f"run {event.run_id}" if event.run_id else None,
                    "count": 1,
                }
                tools[event.id] = row
                out["activity"].append(row)
            case "tool_result":
                found = tools.get(event.causation_id or "")
                if found is not None:
                    found["outcome"] = "failure" if data.result.is_error else "success"
            case "permission_granted" | "permission_denied":
                granted = event.type == "permission_granted"
                row = {
                    **base,
                    "user": event.user_id,
                    "tool": data.tool,
                    "decision": "granted" if granted else "denied",
                    "decided_by": data.decided_by,
                    "scope": data.scope if granted else None,
                    "reason": None if granted else data.reason,
                    "request_id": data.request_id,
                    "key_id": None,
                    "source": None,
                    **answered.get(data.request_id, {}),
                }
                approvals[data.request_id] = row
                out["approvals"].append(row)
            case "security_alert":
                out["alerts"].append(
                    {
                        **base,
                        "user": event.user_id,
                        "severity": data.severity,
                        "kind": data.kind,
                        "message": data.message,
                    }
                )
            case "run_failed" if data.error.code in QUOTA_CODES:
                out["quota"].append(
                    {
                        **base,
                        "user": event.user_id,
                        "run_id": event.run_id,
                        "code": data.error.code,
                        "count": 1,
                        "message": data.error.message,
                    }
                )
            case "quota_exceeded":
                out["quota"].append(
                    {
                        **base,
                        "user": event.user_id,
                        "code": "quota_exceeded",
                        "quota": data.quota,
                        "scope": data.scope,
                        "limit": data.limit,
                        "used": data.used,
                        "count": data.count,
                        "message": f"the {data.quota} quota of {data.scope} is used up",
                    }
                )
            case _:
                pass
    return report


def render(report: AuditReport, fmt: Format) -> str:
    """The report as Markdown (a table per section), CSV (one table, a ``section`` column
    first, every section's columns) or JSON (an object with a list per section)."""
    if fmt == "json":
        return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        return _csv(report)
    return _markdown(report)


def _csv(report: AuditReport) -> str:
    columns: list[str] = []
    for _, names, _ in SECTIONS.values():
        columns += [n for n in names if n not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["section", *columns], extrasaction="ignore")
    writer.writeheader()
    for name, rows in report.sections.items():
        for row in rows:
            writer.writerow({"section": name, **{k: _text(v) for k, v in row.items()}})
    return buffer.getvalue()


def _markdown(report: AuditReport) -> str:
    period = f"{_when(report.since)} to {_when(report.until)}"
    lines = [
        "# Audit report",
        "",
        f"- Period: {period}",
        f"- Tenant: {report.tenant or 'all tenants'}",
        "",
    ]
    for name, (title, columns, empty) in SECTIONS.items():
        rows = report.sections[name]
        lines += [f"## {title} ({len(rows)})", ""]
        if not rows:
            lines += [empty, ""]
            continue
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in rows:
            cells = [_cell(row.get(c)) for c in columns]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _when(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "(any time)"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _cell(value: Any) -> str:
    text = _text(value).replace("|", "\\|").replace("\n", " ")
    return text or "-"
