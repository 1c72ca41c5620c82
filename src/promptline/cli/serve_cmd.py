"""``promptline serve`` and ``promptline keys``: the gateway, and its API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptline.cli.runtime import CliOptions, console, load_settings, run, services, write_json

if TYPE_CHECKING:
    from promptline.gateway.server import ServeInfo


def serve(options: CliOptions, *, host: str | None, port: int | None, no_auth: bool) -> None:
    """Run the gateway until SIGTERM or Ctrl-C."""
    from promptline.gateway.server import serve as serve_gateway

    settings = load_settings(options)
    out = console()

    def ready(info: ServeInfo) -> None:
        base = info.urls[0]
        out.print(f"PromptLine gateway on [bold]{base}[/]", markup=True)
        out.print(f"  REST      {base}/v1   (OpenAPI: {base}/openapi.json, docs: {base}/docs)")
        out.print(f"  WebSocket {base.replace('http', 'ws', 1)}/v1/ws")
        for extra in info.urls[1:]:
            out.print(f"  WebSocket {extra}")
        out.print(f"  health    {base}/healthz, {base}/readyz")
        if info.admin_key:
            out.print(
                "\n[bold yellow]An admin API key was made for this first start. It is shown "
                "once and stored only as a hash:[/]",
                markup=True,
            )
            out.print(f"  {info.admin_key}\n")
            out.print(f'  curl -H "Authorization: Bearer {info.admin_key}" {base}/v1/agents')
        if no_auth:
            out.print("[yellow]authentication is off (loopback only)[/]", markup=True)
        out.print("Ctrl-C (or SIGTERM) stops it gracefully.", style="dim")

    run(
        lambda: serve_gateway(
            settings, host=host, port=port, auth=False if no_auth else None, on_ready=ready
        )
    )


def keys_create(
    options: CliOptions, *, user: str, tenant: str, role: str, name: str, as_json: bool
) -> None:
    """Make a key and print it once."""
    from promptline.security.auth import KeyStore

    async def main() -> None:
        async with services(options) as app:
            record, token = await KeyStore(app.state, clock=app.clock).create(
                user, tenant_id=tenant, role="admin" if role == "admin" else "user", name=name
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
    from promptline.security.auth import KeyStore

    async def main() -> None:
        async with services(options) as app:
            record = await KeyStore(app.state, clock=app.clock).revoke(key_id)
        console().print(f"revoked {record.key_id} ({record.user_id}, tenant {record.tenant_id})")

    run(main)
