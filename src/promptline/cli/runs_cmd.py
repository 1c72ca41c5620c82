"""Bodies of ``promptline runs ...``: run records read back from the event log, and their
deterministic replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptline.cli.runtime import (
    CliOptions,
    console,
    friendly_errors,
    load_settings,
    local,
    run,
    services,
    write_json,
)

if TYPE_CHECKING:
    from promptline.core.events import Event
    from promptline.runtime.records import RunRecord
    from promptline.runtime.replay import ReplayReport

EXIT_SAME = 0
EXIT_DIVERGED = 1


def runs_list(
    options: CliOptions,
    *,
    session: str | None,
    agent: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The newest runs first, as a table or JSON."""
    from promptline.runtime.records import list_runs
    from promptline.storage.local import complete

    with friendly_errors():
        settings = load_settings(options)
        found = local(
            settings,
            lambda db: complete(
                list_runs(db.events, session_id=session, agent=agent, status=status, limit=limit)
            ),
        )

    async def main() -> list[RunRecord]:
        async with services(options, settings=settings) as app:
            return await list_runs(
                app.events, session_id=session, agent=agent, status=status, limit=limit
            )

    records = found if found is not None else run(main)
    if as_json:
        write_json([r.to_dict() for r in records])
        return
    if not records:
        console().print('no runs yet: try `promptline run "hello"` or `promptline demo`')
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for name in ("run", "status", "agent", "model", "session", "started (UTC)", "tokens"):
        table.add_column(name, justify="right" if name == "tokens" else "left")
    table.add_column("cost", justify="right")
    table.add_column("input", overflow="ellipsis", no_wrap=True, max_width=40)
    for r in records:
        table.add_row(
            r.run_id,
            _status(r.status),
            r.agent,
            r.model or "-",
            r.session_id or "-",
            r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else "-",
            f"{r.usage.total_tokens:,}",
            _cost(r.cost_usd),
            " ".join(r.input.split()),
        )
    console().print(table)


def runs_show(options: CliOptions, run_id: str, *, as_json: bool, with_events: bool) -> None:
    """One run's record, and with ``with_events`` its timeline."""
    from promptline.cli.timeline import print_events
    from promptline.events.content import expand_prompts
    from promptline.events.protocols import EventFilter, EventStore
    from promptline.runtime.records import load_run
    from promptline.storage.local import complete

    async def read(store: EventStore) -> tuple[RunRecord, list[Event]]:
        record = await load_run(store, run_id)
        events = await store.read_all(EventFilter(run_id=run_id)) if with_events else []
        return record, await expand_prompts(store, events)

    with friendly_errors():
        settings = load_settings(options)
        found = local(settings, lambda db: complete(read(db.events)))

    async def main() -> tuple[RunRecord, list[Event]]:
        async with services(options, settings=settings) as app:
            return await read(app.events)

    record, events = found if found is not None else run(main)
    if as_json:
        document = record.to_dict()
        if with_events:
            import orjson

            from promptline.core.events import encode_event

            document["events"] = [orjson.loads(encode_event(e)) for e in events]
        write_json(document)
        return
    _print_record(record)
    if with_events:
        print_events(events, title=f"timeline of {run_id} ({len(events)} events)")


def runs_replay(options: CliOptions, run_id: str, *, live_tools: bool, as_json: bool) -> None:
    """Replay a recorded run; exit 0 when it did what the record says, 1 when it diverged."""
    from promptline.runtime.replay import replay_run

    async def main() -> ReplayReport:
        async with services(options) as app:
            return await replay_run(
                app.events,
                run_id,
                agents=app.runtime.agents,
                registry=app.tools,
                live_tools=live_tools,
                like=app.runtime.services,
            )

    report = run(main)
    if as_json:
        write_json(
            {
                "run_id": report.run_id,
                "recorded_status": report.recorded_status,
                "replayed_status": report.replayed_status,
                "model_calls": report.model_calls,
                "recorded_model_calls": report.recorded_model_calls,
                "resumed": report.resumed,
                "tool_calls": report.tool_calls,
                "live_tools": live_tools,
                "diverged": report.diverged,
                "divergences": [
                    {"step": d.step, "recorded": d.recorded, "replayed": d.replayed}
                    for d in report.divergences
                ],
            }
        )
    else:
        _print_report(report, live_tools=live_tools)
    if report.diverged:
        raise SystemExit(EXIT_DIVERGED)


def _print_record(record: RunRecord) -> None:
    out = console()
    out.print(f"[bold]{record.run_id}[/]  {_status(record.status)}")
    rows: list[tuple[str, str]] = [
        ("agent", record.agent),
        ("model", record.model or "-"),
        ("mode", record.mode or "-"),
        ("session", record.session_id or "-"),
        ("user", record.user_id or "-"),
        ("started", record.started_at.isoformat() if record.started_at else "-"),
        ("ended", record.ended_at.isoformat() if record.ended_at else "-"),
        ("latency", f"{record.latency_ms:.0f} ms" if record.latency_ms is not None else "-"),
        ("iterations", str(record.iterations)),
        ("model calls", str(record.model_calls)),
        ("tool calls", ", ".join(record.tool_calls) or "-"),
        (
            "usage",
            f"{record.usage.input_tokens:,} in, {record.usage.output_tokens:,} out, "
            f"{record.usage.total_tokens:,} total",
        ),
        ("cost", _cost(record.cost_usd)),
    ]
    if record.pending_approvals:
        rows.append(("waiting for", ", ".join(record.pending_approvals)))
    if record.cancelled_by:
        rows.append(("cancelled by", record.cancelled_by))
    if record.error:
        rows.append(("error", f"{record.error.get('code')}: {record.error.get('message')}"))
    for name, value in rows:
        out.print(f"[dim]{name:>12}[/] ", end="")
        out.print(value, markup=False)
    out.print("[dim]       input[/] ", end="")
    out.print(record.input, markup=False)
    out.print("[dim]      output[/] ", end="")
    out.print(record.output or "-", markup=False)


def _print_report(report: ReplayReport, *, live_tools: bool) -> None:
    out = console()
    tools = "run for real in a scratch folder" if live_tools else "answered from the record"
    out.print(
        f"replayed [bold]{report.run_id}[/]: recorded {report.recorded_status}, "
        f"replayed {report.replayed_status}; {report.model_calls} model call(s), "
        f"tool calls: {', '.join(report.tool_calls) or 'none'} ({tools})"
    )
    if report.resumed:
        out.print(
            f"the run was resumed {report.resumed} time(s) after a restart; it replays as one "
            "run (model calls cut short by a restart are not replayed)"
        )
    if not report.divergences:
        out.print("[green]no divergence[/]: the run did what the record says")
        return
    out.print(f"[red]{len(report.divergences)} divergence(s)[/]:")
    for divergence in report.divergences:
        out.print(f"  - {divergence}", markup=False)


def _status(status: str) -> str:
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(status)
    return f"[{colour}]{status}[/]" if colour else status


def _cost(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}"
