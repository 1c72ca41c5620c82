"""Bodies of the CLI commands; `main.py` declares them and imports this module on use.

The commands that read a session or the log, or add to a session, do it through `local` (the
home's SQLite database through `sqlite3`) when they can, and through the full set of services
otherwise; both give the same result."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptline.cli.runtime import (
    CliOptions,
    console,
    fail,
    friendly_errors,
    load_settings,
    local,
    print_table,
    run,
    services,
)

if TYPE_CHECKING:
    from promptline.config.settings import Settings
    from promptline.core.events import Event
    from promptline.core.messages import Message
    from promptline.sessions.models import Principal, SearchHit, Session

FOLLOW_POLL_SECONDS = 0.5


def operator() -> Principal:
    """The CLI acts as the local operator: it may see every tenant's sessions."""
    from promptline.sessions.models import Principal

    return Principal(tenant_id="default", user_id="operator", admin=True)


# -- config -----------------------------------------------------------------------------------


def config_show(options: CliOptions, *, show_secrets: bool) -> None:
    from promptline.config import render_settings

    with friendly_errors():
        settings = load_settings(options)
        sys.stdout.write(render_settings(settings, show_secrets=show_secrets))


def config_validate(options: CliOptions, path: Path | None) -> None:
    from rich.markup import escape

    from promptline.config import config_path, load_settings, validate_config
    from promptline.config.validation import unused_key_warnings

    chosen = path or options.config
    target = chosen or config_path()
    with friendly_errors():
        # Without a chosen file the loader finds the default one, and a missing default is
        # valid (defaults are used), as every other command treats it.
        problems = validate_config(chosen, profile=options.profile)
    if problems:
        err = console(stderr=True)
        err.print(f"[bold red]{target}: {len(problems)} problem(s)[/]")
        for problem in problems:
            err.print(f"  - {problem}", markup=False)
        raise SystemExit(1)
    note = "" if target.exists() else " (not created yet: defaults are used)"
    console().print(f"[green]ok[/] {target}{note}")
    # Valid, but some keys wait for a feature that does not exist yet: say so, still exit 0.
    with friendly_errors():
        settings = load_settings(chosen, profile=options.profile)
    for warning in [*unused_key_warnings(settings), *_egress_warnings(settings)]:
        console(stderr=True).print(f"[yellow]warning:[/] {escape(warning)}")
    # The channel table, and a channel whose sandbox cannot run on this machine.
    from promptline.cli.doctor import channel_sandboxes

    for found in channel_sandboxes(settings):
        if found.status == "ok":
            console().print(f"{escape(found.name)}: {escape(found.detail)}")
        else:
            hint = f" ({found.hint})" if found.hint else ""
            console(stderr=True).print(
                f"[yellow]warning:[/] {escape(found.name)}: {escape(found.detail + hint)}"
            )


def _egress_warnings(settings: Settings) -> list[str]:
    """The MCP servers over HTTP whose URL names an address the egress policy refuses (a
    name is checked when it is resolved, at connect time: `promptline doctor` does it)."""
    from urllib.parse import urlsplit

    from promptline.security.egress import EgressPolicy, allow_entry, parse_address
    from promptline.tools.mcp.connection import egress_refusal

    policy = EgressPolicy(settings.security.egress_allow)
    warnings: list[str] = []
    for name, server in settings.mcp_servers.items():
        host = urlsplit(server.url or "").hostname or ""
        if not server.enabled or parse_address(host) is None:
            continue
        why = policy.refusal(host, [])
        if why is not None:
            warnings.append(egress_refusal(name, str(server.url), why, allow_entry(host)))
    return warnings


def config_path(options: CliOptions) -> None:
    from promptline.config import config_path as _path
    from promptline.config import promptline_home

    path = options.config or _path()
    state = "exists" if path.exists() else "not created yet: defaults are used"
    sys.stdout.write(f"config: {path} ({state})\nhome:   {promptline_home()}\n")


# -- db ---------------------------------------------------------------------------------------


def db_upgrade(options: CliOptions) -> None:
    from promptline.storage.database import create_engine
    from promptline.storage.migrate import upgrade

    async def main() -> None:
        settings = load_settings(options)
        engine = create_engine(settings.database_url())
        try:
            status = await upgrade(engine)
        finally:
            await engine.dispose()
        console().print(f"schema at revision [bold]{status.current}[/] (head {status.head})")

    run(main)


def db_current(options: CliOptions) -> None:
    from promptline.storage.database import create_engine
    from promptline.storage.migrate import schema_status

    async def main() -> None:
        settings = load_settings(options)
        engine = create_engine(settings.database_url())
        try:
            status = await schema_status(engine)
        finally:
            await engine.dispose()
        if not status.known:
            verdict = "[red]newer than this release: upgrade PromptLine[/]"
        elif status.up_to_date:
            verdict = "[green]up to date[/]"
        else:
            verdict = "[yellow]behind: run `promptline db upgrade`[/]"
        console().print(f"current: {status.current or '(empty)'}  head: {status.head}  {verdict}")

    run(main)


# -- events -----------------------------------------------------------------------------------


def events_tail(
    options: CliOptions,
    *,
    follow: bool,
    session: str | None,
    types: list[str] | None,
    limit: int,
    as_json: bool,
) -> None:
    from promptline.cli.timeline import print_events, render_rows
    from promptline.core.events import encode_event
    from promptline.events.protocols import EventFilter

    flt = EventFilter(types=frozenset(types) if types else None, session_id=session)
    settings: Settings | None = None

    def show(events: list[Any]) -> None:
        if as_json:
            for e in events:
                sys.stdout.write(encode_event(e).decode() + "\n")
            sys.stdout.flush()
        elif follow:
            for row in render_rows(events):
                sys.stdout.write("  ".join(row) + "\n")
            sys.stdout.flush()
        else:
            print_events(events)

    def show_recent(recent: list[Event]) -> None:
        if not recent and not follow and not as_json:
            console().print("no events yet: try `promptline sessions new` and `sessions add`")
        else:
            show(recent)

    if not follow:
        from promptline.storage.local import complete

        with friendly_errors():
            settings = load_settings(options)
            found = local(
                settings, lambda db: complete(db.events.read_all(flt, limit=limit, descending=True))
            )
        if found is not None:
            show_recent(list(reversed(found)))
            return

    async def main() -> None:
        import asyncio

        async with services(options, settings=settings) as app:
            recent = list(reversed(await app.events.read_all(flt, limit=limit, descending=True)))
            show_recent(recent)
            if not follow:
                return
            last = recent[-1].position if recent else await app.events.last_position()
            # Polling the store (not the in-process bus) sees events written by other processes.
            while True:
                new = await app.events.read_all(flt, from_position=last, limit=1000)
                if new:
                    show(new)
                    last = new[-1].position
                else:
                    await asyncio.sleep(FOLLOW_POLL_SECONDS)

    run(main)


def events_replay(options: CliOptions, *, session: str, as_json: bool) -> None:
    from promptline.cli.timeline import print_events
    from promptline.core.events import encode_event

    async def main() -> None:
        async with services(options) as app:
            events = await app.events.read_stream(session)
            if not events:
                fail(f"no events for session {session!r}", hint="`promptline sessions list`")
            if as_json:
                for e in events:
                    sys.stdout.write(encode_event(e).decode() + "\n")
                return
            print_events(events, title=f"timeline of {session} ({len(events)} events)")

    run(main)


# -- sessions ---------------------------------------------------------------------------------


def sessions_list(
    options: CliOptions, *, user: str | None, channel: str | None, tenant: str | None, limit: int
) -> None:
    async def main() -> None:
        async with services(options) as app:
            found = await app.sessions.list(
                operator(), user_id=user, channel=channel, tenant_id=tenant, limit=limit
            )
        if not found:
            console().print("no sessions")
            return
        print_table(
            ("id", "tenant", "user", "channel", "status", "messages", "updated (UTC)"),
            (
                (
                    s.id,
                    s.tenant_id,
                    s.user_id,
                    s.channel,
                    s.status,
                    str(s.message_count),
                    s.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
                )
                for s in found
            ),
        )

    run(main)


def sessions_show(options: CliOptions, session_id: str) -> None:
    from promptline.storage import local_sessions

    with friendly_errors():
        settings = load_settings(options)
        found = local(settings, lambda db: local_sessions.read(db, session_id))

    async def main() -> Session:
        async with services(options, settings=settings) as app:
            return await app.sessions.get(session_id, operator())

    s = found if found is not None else run(main)
    out = console()
    expires = s.expires_at.isoformat() if s.expires_at else "never"
    out.print(f"[bold]{s.id}[/]  tenant={s.tenant_id} user={s.user_id} channel={s.channel}")
    out.print(f"status={s.status} created={s.created_at.isoformat()} expires={expires}")
    if s.sandbox is not None:
        out.print(f"sandbox={s.sandbox}")
    if s.context:
        out.print(f"context: {s.context}", markup=False)
    for i, msg in enumerate(s.history):
        out.print(f"[dim]{i:>4}[/] [bold]{msg.role:>9}[/]: ", end="")
        out.print(msg.text, markup=False)


def sessions_new(
    options: CliOptions, *, user: str, channel: str, tenant: str, sandbox: str | None = None
) -> None:
    from datetime import timedelta

    from promptline.sessions.models import Principal
    from promptline.storage import local_sessions

    with friendly_errors():
        settings = load_settings(options)
        owner = Principal(tenant_id=tenant, user_id=user)
        ttl = timedelta(seconds=settings.sessions.ttl_secs)
        # A session with a sandbox of its own is made by the full path (the local one makes
        # only the plain kind).
        found = (
            None
            if sandbox is not None
            else local(
                settings, lambda db: local_sessions.create(db, owner, channel=channel, ttl=ttl)
            )
        )

    async def main() -> Session:
        async with services(options, settings=settings) as app:
            return await app.sessions.create(owner, channel=channel, sandbox=sandbox)

    s = found if found is not None else run(main)
    sys.stdout.write(s.id + "\n")


def sessions_add(options: CliOptions, session_id: str, text: str, *, role: str) -> None:
    from promptline.core.messages import Message
    from promptline.storage import local_sessions

    with friendly_errors():
        message = Message(role=role, content=text)  # role is checked by click.Choice
        settings = load_settings(options)
        found = local(settings, lambda db: local_sessions.append_message(db, session_id, message))

    async def main() -> Message:
        async with services(options, settings=settings) as app:
            return await app.sessions.append_message(session_id, message, operator())

    added = found if found is not None else run(main)
    sys.stdout.write(f"{added.id}\n")


def sessions_export(options: CliOptions, session_id: str, output: Path | None) -> None:
    import orjson

    from promptline.core.errors import InvalidInputError

    async def main() -> bytes:
        async with services(options) as app:
            document = await app.sessions.export(session_id, operator())
        return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"

    data = run(main)
    if output is None:
        sys.stdout.buffer.write(data)
        return
    with friendly_errors():
        try:
            output.write_bytes(data)
        except OSError as exc:
            raise InvalidInputError(f"cannot write {output}: {exc.strerror}") from None
    console(stderr=True).print(f"wrote {output}")


def sessions_import(options: CliOptions, file: Path, *, as_new_id: bool) -> None:
    import orjson

    from promptline.core.errors import InvalidInputError

    def read() -> Any:
        try:
            return orjson.loads(file.read_bytes())
        except OSError as exc:
            raise InvalidInputError(f"cannot read {file}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(
                f"{file} is not JSON: {exc}", hint="use a file from `promptline sessions export`"
            ) from None

    with friendly_errors():
        document = read()

    async def main() -> None:
        async with services(options) as app:
            s = await app.sessions.import_(document, operator(), as_new_id=as_new_id)
        sys.stdout.write(f"{s.id}\n")

    run(main)


def sessions_search(options: CliOptions, query: str, *, session: str | None, limit: int) -> None:
    from promptline.storage import local_sessions

    with friendly_errors():
        settings = load_settings(options)
        found = local(
            settings,
            lambda db: local_sessions.search(db, query, session_id=session, limit=limit),
        )

    async def main() -> list[SearchHit]:
        async with services(options, settings=settings) as app:
            return await app.sessions.search(operator(), query, session_id=session, limit=limit)

    hits = found if found is not None else run(main)
    if not hits:
        console().print("no matches")
        return
    out = console()
    for hit in hits:
        out.print(f"[bold]{hit.session_id}[/] #{hit.idx} {hit.message.role}: ", end="")
        out.print(hit.message.text[:200], markup=False)


# -- quotas -----------------------------------------------------------------------------------


def quotas_show(options: CliOptions, *, tenant: str, user: str, as_json: bool) -> None:
    from promptline.cli.runtime import write_json
    from promptline.security.quotas import counting_mode

    async def main() -> dict[str, Any]:
        async with services(options) as app:
            return await app.quotas.usage(tenant, user, app.sessions.count_active)

    found = run(main)
    if as_json:
        write_json(found)
        return

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:g}"

    mine, theirs = found["user"], found["tenant"]
    print_table(
        ("quota", f"{mine['scope']} limit", "used", f"{theirs['scope']} limit", "used"),
        (
            (
                name,
                cell(mine["limits"][name]),
                cell(mine["used"].get(name)),
                cell(theirs["limits"][name]),
                cell(theirs["used"].get(name)),
            )
            for name in mine["limits"]
        ),
        right=("used",),
    )
    console().print(counting_mode(shared=found["counting"] == "shared"))
