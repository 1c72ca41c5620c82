"""``promptline audit report``: the compliance report, read from the event log.

The local SQLite home is read through `sqlite3` (as ``promptline events tail`` does); any
other database (PostgreSQL) through the full services.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from promptline.cli.runtime import (
    CliOptions,
    friendly_errors,
    load_settings,
    local,
    run,
    services,
)

if TYPE_CHECKING:
    from promptline.core.events import Event
    from promptline.events.protocols import EventFilter, EventStore
    from promptline.security.report import Format

__all__ = ["parse_moment", "report"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PAGE = 1000
FORMS = "YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS] with an optional offset (Z, +02:00); UTC if none"


def parse_moment(option: str, text: str | None, *, end: bool = False) -> datetime | None:
    """``--from`` / ``--to`` as a UTC time. A date alone is the start of that day; for
    ``--to`` (``end``) the end of it, so ``--to 2026-01-31`` includes the 31st."""
    if text is None:
        return None
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date or a time; use {FORMS}", param_hint=option
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end and _DATE.match(value):
        moment += timedelta(days=1)
    return moment.astimezone(UTC)


async def _read(store: EventStore, flt: EventFilter) -> list[Event]:
    """Every event matching ``flt``, oldest first, a page at a time."""
    found: list[Event] = []
    position = 0
    while True:
        page = await store.read_all(flt, from_position=position, limit=_PAGE)
        found += page
        if len(page) < _PAGE:
            return found
        position = page[-1].position


def report(
    options: CliOptions,
    *,
    since: str | None,
    until: str | None,
    tenant: str | None,
    fmt: Format,
    output: Path | None,
) -> None:
    """Read the period's events, build the report, print it or write it to ``output``."""
    from promptline.events.protocols import EventFilter
    from promptline.security.report import REPORT_TYPES, build_report, render
    from promptline.storage.local import complete

    start = parse_moment("--from", since)
    stop = parse_moment("--to", until, end=True)
    if start is not None and stop is not None and start >= stop:
        raise click.BadParameter(
            f"--from ({start.isoformat()}) must come before --to ({stop.isoformat()})",
            param_hint="--from/--to",
        )
    flt = EventFilter(types=REPORT_TYPES, tenant_id=tenant, since=start, until=stop)
    with friendly_errors():
        settings = load_settings(options)
        events = local(settings, lambda db: complete(_read(db.events, flt)))

    if events is None:

        async def main() -> list[Event]:
            async with services(options, settings=settings) as app:
                return await _read(app.events, flt)

        events = run(main)
    text = render(build_report(events, since=start, until=stop, tenant=tenant), fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.FileError(str(output), hint=exc.strerror or str(exc)) from None
    click.echo(f"wrote the audit report ({fmt}) to {output}", err=True)
