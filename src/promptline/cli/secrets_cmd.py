"""``promptline secrets``: set, list, delete and rotate the values of the encrypted secret store.

A value is read from stdin, from a hidden prompt, or from an environment variable; never from
the command line, which every user of the machine can read (``ps``) and shells keep.
"""

from __future__ import annotations

import os
import sys

from promptline.cli.runtime import (
    CliOptions,
    console,
    fail,
    friendly_errors,
    print_table,
    write_json,
)

__all__ = ["delete", "list_secrets", "rotate", "set_secret"]

ARGV_REFUSED = (
    "a secret's value is never taken from the command line: other users see it in `ps`, "
    "and shells keep it in their history"
)
HOW_TO_GIVE = (
    "pipe it in (promptline secrets set NAME < file), type it at the hidden prompt "
    "(run the command in a terminal), or name a variable that holds it: --from-env VAR"
)


def set_secret(
    name: str, *, from_env: str | None, extra: tuple[str, ...], options: CliOptions | None = None
) -> None:
    """Store secret ``name``, its value from ``from_env``, stdin or a hidden prompt."""
    from promptline.config.secrets import SecretStore, check_secret_name

    if extra:
        fail(ARGV_REFUSED, hint=HOW_TO_GIVE)
    with friendly_errors():
        check_secret_name(name)
        value = _value(name, from_env)
        store = SecretStore.for_environment()
        store.set(name, value)
    console(stderr=True).print(f"secret [bold]{name}[/] stored in {store.path}")
    _audit(options, "secret.set", name)


def _value(name: str, from_env: str | None) -> str:
    if from_env is not None:
        value = os.environ.get(from_env)
        if not value:
            fail(
                f"environment variable {from_env} is not set or empty",
                hint=f"export {from_env}=... first, or give the value on stdin",
            )
        return value or ""
    if sys.stdin.isatty():
        import click

        try:
            typed: str = click.prompt(
                f"value of {name}", hide_input=True, confirmation_prompt=True, err=True
            )
        except click.Abort:
            raise SystemExit(130) from None
        return typed
    # One trailing newline is the pipe's (`echo`), not the value's.
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


def list_secrets(*, as_json: bool) -> None:
    """Print every secret's name and when it was set (never a value)."""
    from rich.markup import escape

    from promptline.config.secrets import SecretStore

    with friendly_errors():
        store = SecretStore.for_environment()
        found = store.listing()
    if as_json:
        write_json([{"name": s.name, "set_at": s.set_at} for s in found])
        return
    if not found:
        console(stderr=True).print(
            f"no secrets in {store.path}; `promptline secrets set NAME` stores one"
        )
        return
    print_table(["name", "set at"], [[escape(s.name), s.set_at] for s in found])


def delete(name: str, *, options: CliOptions | None = None) -> None:
    """Remove secret ``name`` from the store."""
    from promptline.config.secrets import SecretStore

    with friendly_errors():
        store = SecretStore.for_environment()
        store.delete(name)
    console(stderr=True).print(f"secret [bold]{name}[/] deleted from {store.path}")
    _audit(options, "secret.deleted", name)


def rotate(*, options: CliOptions | None = None) -> None:
    """Re-encrypt every secret under a new master key."""
    from promptline.config.secrets import SECRETS_KEY_ENV, SecretStore

    with friendly_errors():
        store = SecretStore.for_environment()
        done = store.rotate()
    err = console(stderr=True)
    if done.new_key is None:
        err.print(
            f"{done.count} secret(s) re-encrypted under a new master key, now in "
            f"{store.key_path}; the old key is gone"
        )
        _audit(options, "secret.rotated", None, {"count": done.count})
        return
    # The old key came from the environment: the new one exists only in this output.
    sys.stdout.write(done.new_key + "\n")
    err.print(
        f"{done.count} secret(s) re-encrypted under the new master key printed above; it is "
        f"kept nowhere else: put it in {SECRETS_KEY_ENV} wherever PromptLine runs (the old key "
        "no longer opens the store)"
    )
    # (With the config naming secrets, the record waits for the new key in the environment:
    # the old one opens nothing now, so it is said not to be on the audit trail.)
    _audit(options, "secret.rotated", None, {"count": done.count})


def _audit(
    options: CliOptions | None,
    action: str,
    name: str | None,
    details: dict[str, object] | None = None,
) -> None:
    """Put the change on the audit trail (the name, never a value). The store is already
    changed: when the log cannot be opened (a config that does not load, say a secret it
    names was just deleted), say so rather than fail."""
    import asyncio

    from promptline.cli.runtime import services
    from promptline.cli.serve_cmd import cli_actor

    async def record() -> None:
        async with services(options or CliOptions()) as app:
            await app.audit.record(
                action, actor=cli_actor(), target=name, source="cli", details=details or {}
            )

    try:
        asyncio.run(record())
    except (Exception, SystemExit) as exc:
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        console(stderr=True).print(
            f"[yellow]not on the audit trail[/]: {action} could not be recorded ({reason})"
        )
