"""``promptline serve`` and ``promptline keys``: the gateway, and its API keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from promptline.cli.runtime import (
    CliOptions,
    console,
    friendly_errors,
    load_settings,
    run,
    services,
    write_json,
)

if TYPE_CHECKING:
    from promptline.gateway.server import ServeInfo
    from promptline.security.scopes import Role


def serve(options: CliOptions, *, host: str | None, port: int | None, no_auth: bool) -> None:
    """Run the gateway until SIGTERM or Ctrl-C, on uvloop and httptools where they are
    installed (asyncio and h11 otherwise); its log goes to stderr."""
    import gc
    import sys

    from promptline.gateway.logs import configure_logging
    from promptline.gateway.server import run_serving
    from promptline.gateway.server import serve as serve_gateway

    settings = load_settings(options)
    out = console()
    configure_logging(settings.logging, sys.stderr)

    def ready(info: ServeInfo) -> None:
        base = info.urls[0]
        out.print(f"PromptLine gateway on [bold]{base}[/]", markup=True)
        out.print(f"  REST      {base}/v1   (OpenAPI: {base}/openapi.json, docs: {base}/docs)")
        out.print(f"  WebSocket {base.replace('http', 'ws', 1)}/v1/ws")
        for extra in info.urls[1:]:
            out.print(f"  WebSocket {extra}")
        out.print(f"  health    {base}/healthz, {base}/readyz")
        if info.stack is not None:
            out.print(f"  server    {info.stack}")
        if info.admin_key:
            print_new_admin_key(info.admin_key, info.admin_key_file, base)
        elif not no_auth:
            print_kept_admin_key(base)
        if no_auth:
            out.print("[yellow]authentication is off (loopback only)[/]", markup=True)
        out.print("Ctrl-C (or SIGTERM) stops it gracefully.", style="dim")

    gc.enable()  # off while a short command loads (see `promptline.cli.main.main`)
    with friendly_errors():
        run_serving(
            lambda: serve_gateway(
                settings, host=host, port=port, auth=False if no_auth else None, on_ready=ready
            )
        )


def print_new_admin_key(key: str, kept: Path | None, base: str) -> None:
    """What a first start says about the admin key it made: the key, and where it is kept."""
    out = console()
    if kept is None:
        where = "It could not be kept in a file (see the log): store it now."
    else:
        where = (
            f"A copy is kept in {kept} (readable by you only), which `promptline status` "
            "reads; delete it once you have stored the key elsewhere."
        )
    out.print(
        "\n[bold yellow]An admin API key was made on this first start.[/] The database keeps "
        f"only its hash. {where}",
        markup=True,
    )
    out.print(f"  export PROMPTLINE_API_KEY={key}", markup=False, highlight=False)
    out.print(f'  curl -H "Authorization: Bearer $PROMPTLINE_API_KEY" {base}/v1/agents')


def print_kept_admin_key(base: str) -> None:
    """On a later start: where the first start's admin key is kept, if it still is."""
    from promptline.config.home import admin_key_path

    kept = admin_key_path()
    if kept.is_file():
        line = f"  API key   export PROMPTLINE_API_KEY=$(cat {kept})"
        console().print(line, markup=False, highlight=False)


def cli_actor() -> str:
    """Who runs a CLI command, as the audit trail names them: ``os:<login name>``."""
    import getpass

    try:
        return f"os:{getpass.getuser()}"
    except (OSError, KeyError):
        return "os:unknown"


def keys_create(
    options: CliOptions, *, user: str, tenant: str, role: str, name: str, as_json: bool
) -> None:
    """Make a key and print it once."""
    from promptline.security.auth import KeyStore

    async def main() -> None:
        async with services(options) as app:
            record, token = await KeyStore(app.state, clock=app.clock).create(
                user, tenant_id=tenant, role=_role(role), name=name
            )
            await app.audit.record(
                "key.created",
                actor=cli_actor(),
                tenant_id=record.tenant_id,
                target=record.key_id,
                source="cli",
                details={"user_id": record.user_id, "role": record.role, "name": record.name},
            )
        if as_json:
            write_json({**record.to_dict(), "key": token})
            return
        out = console()
        out.print(
            f"API key {record.key_id} for {record.user_id} ({record.role}, tenant "
            f"{record.tenant_id}); shown once, stored as a hash:"
        )
        out.print(token, markup=False, highlight=False)

    run(main)


def keys_list(options: CliOptions, *, tenant: str | None, as_json: bool) -> None:
    """Print every key's record (never the key itself)."""
    from promptline.security.auth import KeyStore

    async def main() -> None:
        async with services(options) as app:
            keys = await KeyStore(app.state, clock=app.clock).list(tenant_id=tenant)
        if as_json:
            write_json([k.to_dict() for k in keys])
            return
        from rich.table import Table

        table = Table("key id", "user", "tenant", "role", "name", "created", "status")
        for k in keys:
            table.add_row(
                k.key_id,
                k.user_id,
                k.tenant_id,
                k.role,
                k.name,
                k.created_at.strftime("%Y-%m-%d %H:%M"),
                "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M}",
            )
        console().print(table if keys else "no API keys yet: `promptline keys create --user NAME`")

    run(main)


def keys_revoke(options: CliOptions, key_id: str) -> None:
    """Revoke a key (it stops working at once)."""
    from promptline.core.errors import NotFoundError
    from promptline.security.auth import KeyStore

    async def main() -> None:
        async with services(options) as app:
            try:
                record = await KeyStore(app.state, clock=app.clock).revoke(key_id)
            except NotFoundError:
                await app.audit.record(
                    "key.revoked",
                    actor=cli_actor(),
                    target=key_id,
                    outcome="failure",
                    source="cli",
                    details={"reason": "no such key"},
                )
                raise
            await app.audit.record(
                "key.revoked",
                actor=cli_actor(),
                tenant_id=record.tenant_id,
                target=record.key_id,
                source="cli",
                details={"user_id": record.user_id, "role": record.role},
            )
        console().print(f"revoked {record.key_id} ({record.user_id}, tenant {record.tenant_id})")

    run(main)


def _role(name: str) -> Role:
    """A role named on the command line (click.Choice has checked it)."""
    import click

    from promptline.security.scopes import ROLES

    for role in ROLES:
        if role == name:
            return role
    raise click.UsageError(f"unknown role {name!r}")


def auth_rotate_key(options: CliOptions) -> None:
    """Make a new signing key; the previous one verifies until its tokens expire."""
    from promptline.security.jwt import SigningKeys

    settings = load_settings(options)
    tokens = settings.security.tokens
    ring = SigningKeys(tokens.signing_keys_file)
    previous = ring.current.kid
    fresh = ring.rotate(keep_verifying_secs=tokens.access_ttl_secs)
    console().print(
        f"signing key {fresh.kid} signs new access tokens; {previous} still verifies the "
        f"ones it signed for {tokens.access_ttl_secs} s.",
        markup=False,
        highlight=False,
    )
