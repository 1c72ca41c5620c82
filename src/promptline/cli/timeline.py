"""One line per event: the human view of the log used by `events tail` and `events replay`."""

from __future__ import annotations

from typing import Any

from promptline.core.events import Event


def _clip(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def summarize(event: Event) -> str:
    """A short description of what the event says."""
    data: Any = event.data
    match event.type:
        case "message_received" | "message_sent":
            msg = data.message
            return f"{msg.role}: {_clip(msg.text)}"
        case "llm_command":
            messages, tools = data.prompt_size
            return f"{data.model} ({messages} messages, {tools} tools)"
        case "llm_delta":
            if data.tool_call and not data.text:
                parts = [
                    str(p)
                    for p in (data.tool_call.get("name"), data.tool_call.get("arguments"))
                    if p
                ]
                return _clip(" ".join(["tool call", *parts]))
            return _clip(data.text)
        case "llm_result":
            u = data.usage
            cost = f" ${data.cost_usd:.6f}" if data.cost_usd is not None else ""
            return f"{data.model} {u.input_tokens}->{u.output_tokens} tokens{cost}"
        case "tool_command":
            return f"{data.call.name}({_clip(str(data.call.arguments), 60)})"
        case "tool_progress":
            pct = f"{data.percent:.0f}% " if data.percent is not None else ""
            return f"{data.call_id} {pct}{_clip(data.message or '')}"
        case "tool_result":
            flag = " error" if data.result.is_error else ""
            return f"{data.result.name}{flag}: {_clip(data.result.text, 60)}"
        case "state_change":
            ns = f"[{data.namespace}]" if data.namespace else ""
            return f"{data.op} {data.scope}{ns}.{data.key} v{data.version}"
        case "agent_lifecycle":
            return f"{data.agent}: {data.from_state or '-'} -> {data.to_state}"
        case "permission_request":
            return f"{data.tool} ({data.request_id}): {_clip(data.reason or '', 60)}"
        case "permission_granted":
            by = f" by {data.decided_by}" if data.decided_by else ""
            return f"{data.tool} ({data.request_id}) {data.scope}{by}"
        case "permission_denied":
            by = f" by {data.decided_by}" if data.decided_by else ""
            return f"{data.tool} ({data.request_id}){by}: {_clip(data.reason or '', 60)}"
        case "run_started":
            said = _clip(data.input.text, 60) if data.input else ""
            return f"{data.agent} {data.model or '-'} {data.mode or ''}: {said}"
        case "run_completed":
            said = _clip(data.output.text, 60) if data.output else ""
            return f"{said} ({data.usage.total_tokens} tokens, {data.iterations} iterations)"
        case "run_cancelled":
            by = f" by {data.cancelled_by}" if data.cancelled_by else ""
            return f"{data.reason or 'cancelled'}{by}"
        case "session_created":
            return f"channel={data.channel} user={event.user_id} tenant={event.tenant_id}"
        case "session_expired":
            return data.reason  # type: ignore[no-any-return]
        case "run_failed":
            return f"{data.error.code}: {_clip(data.error.message)}"
        case "security_alert" | "error":
            return _clip(data.message)
        case "audit":
            times = f" x{data.count}" if data.count > 1 else ""
            return (
                f"{data.action} {data.outcome}{times} by {data.actor or '-'} "
                f"on {data.target or '-'} from {data.source or '-'}"
            )
        case _:
            return _clip(str(data)) if data else ""


def render_rows(events: list[Event]) -> list[tuple[str, ...]]:
    """Rows of (position, stream:seq, time, type, summary) for a Rich table or plain text."""
    return [
        (
            str(e.position),
            f"{e.stream}:{e.seq}",
            e.ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            e.type,
            summarize(e),
        )
        for e in events
    ]


def print_events(events: list[Event], *, title: str | None = None) -> None:
    """Print events as a table."""
    from rich.table import Table

    from promptline.cli.runtime import console

    table = Table(title=title, show_lines=False, header_style="bold")
    for name in ("pos", "stream:seq", "time (UTC)", "type", "what"):
        table.add_column(name, overflow="fold")
    for row in render_rows(events):
        table.add_row(*row)
    console().print(table)
