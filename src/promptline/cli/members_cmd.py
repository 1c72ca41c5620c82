"""``promptline members``: the members of a tenant (users with a role and, to sign in with
``POST /v1/auth/token``, a password), changed on this machine's store and audited."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from promptline.cli.runtime import CliOptions, console, run, services, write_json
from promptline.cli.serve_cmd import cli_actor

if TYPE_CHECKING:
    from promptline.app import App
    from promptline.security.scopes import Role


def read_password(*, from_stdin: bool) -> str:
    """The password from standard input (its first line), or asked twice without echo. Never
    from the command line, which other users of the machine can see."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise click.UsageError("--password-stdin: standard input held no password")
        return password
    if not _interactive():
        raise click.UsageError(
            "no terminal to ask the password on: pipe it in with --password-stdin, or "
            "leave it out with --no-password (API keys only)"
        )
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _interactive() -> bool:
    """True when standard input is a terminal a password can be asked on."""
    return sys.stdin.isatty()


def members_add(
    options: CliOptions,
    *,
    tenant: str,
    user: str,
    role: str,
    password: str | None,
    as_json: bool,
) -> None:
    """Add a member and print it."""
    from promptline.security.members import MemberStore

    async def main() -> None:
        async with services(options) as app:
            member = await MemberStore(app.state, clock=app.clock).add(
                tenant, user, role=_role(role), password=password
            )
            details = {"role": member.role, "password": member.has_password}
            await _record(app, "member.added", tenant, user, details)
        if as_json:
            write_json(member.to_dict())
            return
        how = "a password" if member.has_password else "no password (API keys only)"
        console().print(f"{user} is a member of {tenant} ({member.role}), with {how}")

    run(main)


async def _record(app: App, action: str, tenant: str, user: str, details: dict[str, Any]) -> None:
    await app.audit.record(
        action, actor=cli_actor(), tenant_id=tenant, target=user, source="cli", details=details
    )


def _role(value: str) -> Role:
    from promptline.security.scopes import ROLES

    for role in ROLES:
        if role == value:
            return role
    raise click.UsageError(f"--role must be one of {', '.join(ROLES)}, not {value!r}")


def members_list(options: CliOptions, *, tenant: str, as_json: bool) -> None:
    """Print the tenant's members."""
    from promptline.security.members import MemberStore

    async def main() -> None:
        async with services(options) as app:
            members = await MemberStore(app.state, clock=app.clock).list(tenant)
        if as_json:
            write_json([m.to_dict() for m in members])
            return
        if not members:
            console().print(
                f"{tenant} has no members yet: `promptline members add --tenant {tenant} "
                "--user NAME`"
            )
            return
        from rich.table import Table

        table = Table("user", "role", "password", "since", "changed")
        for m in members:
            table.add_row(
                m.user_id,
                m.role,
                "yes" if m.has_password else "no",
                m.created_at.strftime("%Y-%m-%d %H:%M"),
                m.updated_at.strftime("%Y-%m-%d %H:%M"),
            )
        console().print(table)

    run(main)


def members_set(
    options: CliOptions,
    *,
    tenant: str,
    user: str,
    role: str | None,
    password: str | None,
    clear_password: bool,
) -> None:
    """Change a member's role or password."""
    from promptline.security.members import MemberStore, change_details

    async def main() -> None:
        async with services(options) as app:
            before, after = await MemberStore(app.state, clock=app.clock).change(
                tenant,
                user,
                role=None if role is None else _role(role),
                password=password,
                clear_password=clear_password,
            )
            details = change_details(before, after, password)
            await _record(app, "member.changed", tenant, user, details)
        console().print(
            f"{user} of {tenant}: {after.role}, password {'yes' if after.has_password else 'no'}"
        )

    run(main)


def members_remove(options: CliOptions, *, tenant: str, user: str) -> None:
    """Remove a member, and revoke the user's API keys in the tenant."""
    from promptline.security.auth import KeyStore
    from promptline.security.members import MemberStore

    async def main() -> None:
        async with services(options) as app:
            member = await MemberStore(app.state, clock=app.clock).remove(tenant, user)
            revoked = await KeyStore(app.state, clock=app.clock).revoke_user(tenant, user)
            details = {"role": member.role, "keys_revoked": list(revoked)}
            await _record(app, "member.removed", tenant, user, details)
        keys_note = f"; revoked {', '.join(revoked)}" if revoked else ""
        console().print(f"{user} is no longer a member of {tenant}{keys_note}")

    run(main)
