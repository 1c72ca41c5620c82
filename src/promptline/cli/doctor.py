"""`promptline doctor`: check configuration, database and services; say how to fix what is not."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from promptline.cli.runtime import CliOptions, console, load_settings

if TYPE_CHECKING:
    from promptline.config.plugins import McpServerSettings
    from promptline.config.settings import Settings, ToolRuleSettings
    from promptline.models.registry import ProviderRegistry
    from promptline.security.egress import EgressPolicy

Status = Literal["ok", "warn", "fail"]
SERVICE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it went, and what to do about it."""

    name: str
    status: Status
    detail: str
    hint: str | None = None


async def gather_checks(options: CliOptions) -> list[Check]:
    """Run every check; stops early only when the config cannot be loaded at all."""
    from promptline.core.errors import PromptLineError

    checks: list[Check] = []
    version = ".".join(map(str, sys.version_info[:3]))
    checks.append(
        Check("python", "ok", version)
        if sys.version_info >= (3, 11)
        else Check("python", "fail", version, "PromptLine needs Python 3.11 or newer")
    )
    checks.append(_server_stack())
    try:
        settings = load_settings(options)
    except PromptLineError as exc:
        checks.append(Check("config", "fail", exc.message, exc.hint))
        return checks
    sources = ", ".join(str(p) for p in settings.sources) or "no file: built-in defaults"
    profile = f" (profile {settings.profile})" if getattr(settings, "profile", None) else ""
    checks.append(Check("config", "ok", sources + profile))
    checks.extend(_unresolved(settings))
    checks.extend(_not_read_yet(settings))
    checks.extend(_exposure(settings))
    checks.append(_home_writable(settings))
    checks.extend(_secrets(settings))
    checks.extend(_sandboxes(settings))
    checks.extend(await _database(settings))
    checks.extend(_quotas(settings))
    checks.extend(_state_files(settings))
    checks.extend(await _state_services(settings))
    checks.extend(await _live(settings))
    return checks


def _required_paths(settings: Settings) -> set[str]:
    backend = settings.state.backend
    needed = set()
    if backend == "postgres":
        needed.add("state.postgres_url")
    if backend == "redis":
        needed.add("state.redis_url")
    return needed


def _unresolved(settings: Settings) -> list[Check]:
    required = _required_paths(settings)
    found = []
    for path, var in sorted(settings.unresolved.items()):
        if path in required:
            found.append(
                Check(
                    f"env {var}",
                    "fail",
                    f"{path} needs ${var}, which is not set",
                    f"export {var}=... or set {path} in the config file",
                )
            )
        else:
            found.append(
                Check(
                    f"env {var}",
                    "warn",
                    f"{path} is empty because ${var} is not set",
                    f"export {var}=... before using what {path} configures",
                )
            )
    return found


def _not_read_yet(settings: Settings) -> list[Check]:
    # Refused values ("not supported yet") already failed the config check above.
    from promptline.config.validation import unused_key_warnings

    return [
        Check("config", "warn", text, "remove the key until the feature exists")
        for text in unused_key_warnings(settings)
    ]


def _key_files(settings: Settings) -> list[Check]:
    """The files that hold keys in clear (the token signing keys, the first start's admin
    key): a failure when others than their owner may read them."""
    import stat

    from promptline.config.home import admin_key_path

    found = []
    for path in (settings.security.tokens.signing_keys_file, admin_key_path()):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append(
                Check(
                    "key files",
                    "fail",
                    f"{path} may be read by others than its owner (mode {mode:04o}): it holds "
                    "a key in clear",
                    f"chmod 600 {path}",
                )
            )
    return found


def _exposure(settings: Settings) -> list[Check]:
    """What makes the setup unsafe: a gateway bound beyond loopback, and rules that let tools
    run unasked (a wildcard allow, ``shell_execute`` allowed)."""
    from promptline.gateway.server import is_loopback

    gw = settings.gateway
    found: list[Check] = []
    if is_loopback(gw.host):
        found.append(Check("gateway bind", "ok", f"{gw.host} (this machine only)"))
    elif not gw.allow_insecure_public_bind:
        found.append(
            Check(
                "gateway bind",
                "fail",
                f"gateway.host is {gw.host}: the gateway refuses to start on an address "
                "beyond this machine, as it speaks plain HTTP",
                "bind 127.0.0.1 and put a TLS proxy in front, or set "
                "gateway.allow_insecure_public_bind: true when TLS is in front elsewhere",
            )
        )
    else:
        found.append(
            Check(
                "gateway bind",
                "warn",
                f"gateway.host is {gw.host} with gateway.allow_insecure_public_bind: "
                "keys and conversations cross the network as plain HTTP unless TLS is in front",
                "make sure a TLS proxy (or a trusted network) is in front of it",
            )
        )
    if "*" in gw.cors_origins:
        found.append(
            Check(
                "gateway cors",
                "warn",
                "gateway.cors_origins has *: a page of any site may call the API from a "
                "browser that holds a key or a token",
                "list the origins of your own pages instead",
            )
        )
    found.extend(_key_files(settings))
    levels: list[tuple[str, Mapping[str, ToolRuleSettings]]] = [("tools", settings.tools)]
    levels += [(f"permissions.agents.{a}", r) for a, r in settings.permissions.agents.items()]
    levels += [(f"permissions.users.{u}", r) for u, r in settings.permissions.users.items()]
    for where, rules in levels:
        for pattern, rule in rules.items():
            # Unconditionally: a `when` limits an allow to the arguments it names.
            if (rule.otherwise if rule.when else rule.mode) != "allow":
                continue
            key = f"{where}.{pattern}"
            if pattern.strip("*") == "":
                found.append(
                    Check(
                        "permissions",
                        "warn",
                        f"{key}: allow lets every tool run without asking, shell_execute and "
                        "file_delete included",
                        "allow the tools you mean by name, and let the others ask",
                    )
                )
            elif fnmatch.fnmatchcase("shell_execute", pattern):
                found.append(
                    Check(
                        "permissions",
                        "warn",
                        f"{key}: allow lets shell_execute run any command without approval",
                        "use ask, or allow only some commands with `when: {command: [...]}`",
                    )
                )
    covered = any(fnmatch.fnmatchcase("shell_execute", p) for p in settings.tools)
    if not settings.security.require_approval and not covered:
        found.append(
            Check(
                "permissions",
                "warn",
                "security.require_approval is false and no rule covers shell_execute: "
                "it runs any command without approval",
                "set security.require_approval: true, or tools.shell_execute: ask",
            )
        )
    return found


_SANDBOX_FIX = {
    "bubblewrap": "install bubblewrap, or set security.sandbox: auto (process where bwrap "
    "does not run)",
    "docker": "start the Docker engine (and pip install 'promptline[docker]'), or choose "
    "another sandbox",
}
"""What makes a sandbox that cannot run here run (or what to choose instead)."""


def _sandboxes(settings: Settings) -> list[Check]:
    """The sandbox commands run in, and why; one line more per agent that chooses its own,
    and one per channel of ``security.sandbox_channels`` (the channel table)."""
    from promptline.security.sandbox import resolve_sandbox

    network = settings.security.sandbox_network

    def check(name: str, setting: str, refused: str) -> Check:
        choice = resolve_sandbox(setting)
        if choice.problem is not None:
            fix = _SANDBOX_FIX[choice.kind]
            return Check(
                name,
                "fail",
                f"{choice.kind} is configured but cannot run: {choice.problem}",
                f"{fix}; {refused} are refused meanwhile, never run without it",
            )
        if choice.kind == "docker" and network == "proxy":
            from promptline.security.sandbox.container import PROXY_REFUSED

            return Check(name, "fail", PROXY_REFUSED, "commands are refused meanwhile")
        return Check(name, "ok", f"{choice.kind} ({choice.reason})")

    found = [check("sandbox", settings.security.sandbox, "commands")]
    for name, agent in sorted(settings.agents.items()):
        if agent.sandbox is not None:
            found.append(check(f"sandbox (agent {name})", agent.sandbox, "its commands"))
    found.extend(channel_sandboxes(settings))
    in_effect = resolve_sandbox(settings.security.sandbox, check=False).kind
    found.append(_sandbox_network(network, in_effect))
    return found


def channel_sandboxes(settings: Settings) -> list[Check]:
    """The channel table: the sandbox each channel of ``security.sandbox_channels`` chooses
    for its sessions (at least that: the agent's or the session's may be stronger), failing
    for one that cannot run here."""
    from promptline.security.sandbox import resolve_sandbox

    found = []
    for channel, setting in sorted(settings.security.sandbox_channels.items()):
        name = f"sandbox (channel {channel})"
        choice = resolve_sandbox(setting)
        if choice.problem is not None:
            found.append(
                Check(
                    name,
                    "fail",
                    f"{choice.kind} is configured but cannot run: {choice.problem}",
                    f"{_SANDBOX_FIX[choice.kind]}; the commands of the channel's sessions are "
                    "refused meanwhile, never run without it",
                )
            )
        else:
            found.append(Check(name, "ok", f"at least {choice.kind} ({choice.reason})"))
    return found


def _sandbox_network(network: str, kind: str) -> Check:
    """What sandboxed commands reach; ``host`` is unsafe, and said so, as is a network
    setting that the sandbox in effect does not apply."""
    if network != "none" and kind in ("none", "process"):
        return Check(
            "sandbox network",
            "warn",
            f"security.sandbox_network is {network}, but commands run in the {kind} sandbox, "
            "which does not contain the network: they reach everything this machine reaches",
            "install bubblewrap (auto then chooses it) or set security.sandbox: bubblewrap",
        )
    if network == "host":
        return Check(
            "sandbox network",
            "warn",
            "security.sandbox_network is host: sandboxed commands reach everything this "
            "machine reaches, unfiltered: services on 127.0.0.1 (PromptLine's own gateway, "
            "databases), the local network and the cloud metadata service at 169.254.169.254",
            "set security.sandbox_network: proxy (HTTP and HTTPS through the egress policy) "
            "or none",
        )
    if network == "proxy":
        return Check(
            "sandbox network",
            "ok",
            "proxy: HTTP and HTTPS through the egress proxy; loopback, link-local, private "
            "and metadata addresses refused unless security.egress_allow names them",
        )
    return Check("sandbox network", "ok", "none: sandboxed commands have no network")


def _home_writable(settings: Settings) -> Check:
    from promptline.config import promptline_home
    from promptline.storage.files import private_dir

    home = promptline_home()
    try:
        private_dir(home)
        probe = home / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check(
            "home", "fail", f"{home}: {exc.strerror}", "set PROMPTLINE_HOME to a writable directory"
        )
    return Check("home", "ok", str(home))


def _secrets(settings: Settings) -> list[Check]:
    """The secret store, when the config takes values from it: how many, and the key's source.

    A store that cannot give them already failed the config check above."""
    import stat

    from promptline.config.secrets import SecretStore

    if not settings.secret_refs:
        return []
    store = SecretStore.for_environment()
    used = sorted(settings.secret_refs)
    detail = (
        f"{len(used)} key(s) from {store.path} ({', '.join(used)}); master key from the "
        f"{store.key_source}"
    )
    try:
        mode = stat.S_IMODE(store.path.stat().st_mode)
    except OSError:  # gone since the config was loaded: the next load says so
        mode = 0
    if mode & 0o077:
        return [
            Check(
                "secrets",
                "warn",
                f"{detail}; the store may be read by others (mode {mode:04o}): its values are "
                "encrypted, but their names and times are not",
                f"chmod 600 {store.path}",
            )
        ]
    return [Check("secrets", "ok", detail)]


async def _database(settings: Settings) -> list[Check]:
    from promptline.core.errors import PromptLineError
    from promptline.storage.database import create_engine, is_sqlite, translate_error
    from promptline.storage.migrate import schema_status

    try:
        url = settings.database_url()
    except PromptLineError as exc:
        return [Check("database", "fail", exc.message, exc.hint)]
    shown = _mask_url(url)
    checks: list[Check] = []
    engine = create_engine(url)
    try:
        async with asyncio.timeout(SERVICE_TIMEOUT_SECONDS * 3):
            async with engine.connect() as conn:
                if is_sqlite(url):
                    from sqlalchemy import text

                    version = (await conn.execute(text("select sqlite_version()"))).scalar()
                    opts = [r[0] for r in await conn.execute(text("pragma compile_options"))]
                    mode = (await conn.execute(text("pragma journal_mode"))).scalar()
                    checks.append(Check("database", "ok", f"{shown} (SQLite {version}, {mode})"))
                    if "ENABLE_FTS5" not in opts:
                        checks.append(
                            Check(
                                "sqlite fts5",
                                "fail",
                                "SQLite lacks FTS5",
                                "use a Python built with a newer SQLite",
                            )
                        )
                else:
                    checks.append(Check("database", "ok", shown))
            status = await schema_status(engine)
    except TimeoutError:
        await engine.dispose()
        return [
            Check(
                "database",
                "fail",
                f"{shown}: no answer within {SERVICE_TIMEOUT_SECONDS * 3:.0f}s",
                "is the server running?",
            )
        ]
    except PromptLineError as exc:
        await engine.dispose()
        return [Check("database", "fail", f"{shown}: {exc.message}", exc.hint)]
    except Exception as exc:
        await engine.dispose()
        err = translate_error(exc, what=shown)
        return [
            Check(
                "database",
                "fail",
                err.message,
                err.hint or "check state.* in the config and that the server is running",
            )
        ]
    await engine.dispose()
    if not status.known:
        checks.append(
            Check(
                "schema",
                "fail",
                f"revision {status.current} is newer than this release ({status.head})",
                "upgrade PromptLine or use another database",
            )
        )
    elif status.up_to_date:
        checks.append(Check("schema", "ok", f"revision {status.current}"))
    else:
        auto = ""
        if settings.state.auto_migrate:
            auto = "; it is applied on start (state.auto_migrate)"
        checks.append(
            Check(
                "schema",
                "warn",
                f"at {status.current or 'nothing'}, head is {status.head}{auto}",
                "run `promptline db upgrade`",
            )
        )
    return checks


def _quotas(settings: Settings) -> list[Check]:
    """Where the quotas count requests per minute and concurrent runs (when any is set)."""
    from promptline.config.settings import QuotasSettings
    from promptline.core.errors import PromptLineError
    from promptline.security.quotas import counted_in_database, counting_mode

    if settings.quotas == QuotasSettings():
        return []
    try:
        shared = counted_in_database(settings.database_url())
    except PromptLineError:
        return []  # the database check above says what is wrong
    return [Check("quotas", "ok", counting_mode(shared=shared))]


def _state_files(settings: Settings) -> list[Check]:
    backend = settings.state.backend
    checks: list[Check] = []
    if backend == "file":
        from promptline.storage.files import private_dir

        directory = Path(settings.state.file_dir)
        try:
            private_dir(directory)
            writable = os.access(directory, os.W_OK)
        except OSError:
            writable = False
        checks.append(
            Check("state (file)", "ok", str(directory))
            if writable
            else Check(
                "state (file)",
                "fail",
                f"{directory} is not writable",
                "set state.file_dir to a writable directory",
            )
        )
    elif backend in ("sqlite", "postgres"):
        checks.append(Check(f"state ({backend})", "ok", "in the database above"))
    return checks


async def _state_services(settings: Settings) -> list[Check]:
    backend = settings.state.backend
    checks: list[Check] = []
    redis_url = settings.state.redis_url
    if redis_url:
        name = "state (redis)" if backend == "redis" else "redis (optional)"
        failing: Status = "fail" if backend == "redis" else "warn"
        checks.append(await _ping_redis(redis_url, name, failing))
    return checks


async def _ping_redis(url: str, name: str, failing: Status) -> Check:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=SERVICE_TIMEOUT_SECONDS)
    try:
        async with asyncio.timeout(SERVICE_TIMEOUT_SECONDS):
            info = await client.info("server")
        return Check(name, "ok", f"{_mask_url(url)} (Redis {info.get('redis_version', '?')})")
    except (OSError, TimeoutError, aioredis.RedisError) as exc:
        hint = "start Redis or fix state.redis_url"
        return Check(name, failing, f"{_mask_url(url)}: {exc}", hint)
    finally:
        await client.aclose()


PROVIDER_CONNECT_SECONDS = 3.0
PROVIDER_ANSWER_SECONDS = 5.0
"""Doctor's limits for a provider: connecting, then its list of models, which a provider that
works at all sends at once (a model call may take minutes; this one does not)."""
MCP_SECONDS = 10.0
"""The longest doctor waits for an MCP server to start and list its tools (less when its
``startup_timeout_secs`` is shorter)."""


async def _live(settings: Settings) -> list[Check]:
    """Every configured model provider and enabled MCP server, called now (all at once), and
    whether the default model's provider answered."""
    from promptline.models.registry import ProviderRegistry
    from promptline.security.egress import EgressPolicy

    registry = ProviderRegistry(settings)
    names = [n for n in settings.models.providers if registry.type_of(n) != "scripted"]
    servers = [(n, s) for n, s in settings.mcp_servers.items() if s.enabled]
    # A server that fails is reported below; its connection's own log lines would say it twice.
    quiet = logging.getLogger("promptline.mcp")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        # Providers first, then servers: starting an MCP client imports its SDK, which holds
        # the event loop long enough to eat into a provider's short limits.
        found = await asyncio.gather(*(_provider(registry, name) for name in names))
        egress = EgressPolicy(settings.security.egress_allow)
        found += await asyncio.gather(*(_mcp_server(n, s, egress) for n, s in servers))
    finally:
        quiet.setLevel(level)
        await registry.aclose()
    checks = list(found)
    checks.append(_default_model(settings, registry, dict(zip(names, found, strict=False))))
    return checks


async def _provider(registry: ProviderRegistry, name: str) -> Check:
    import time

    from promptline.core.errors import PromptLineError, ProviderTimeout
    from promptline.models.transport import Timeouts

    label = f"provider {name}"
    limits = Timeouts(
        connect=PROVIDER_CONNECT_SECONDS,
        first_byte=PROVIDER_ANSWER_SECONDS,
        total=PROVIDER_CONNECT_SECONDS + PROVIDER_ANSWER_SECONDS,
    )
    started = time.perf_counter()
    try:
        provider = registry.provider(name)
        listing = getattr(provider, "list_models", None)
        if listing is None:
            return Check(label, "warn", "configured, but its kind cannot be checked live")
        models = await listing(limits=limits)
    except ProviderTimeout as exc:
        # The limits that ran out are doctor's, not the provider's settings.
        url = exc.details.get("url", name)
        if exc.details.get("limit") == "connect_timeout_secs":
            what = f"could not connect to {url} within {PROVIDER_CONNECT_SECONDS:g} s"
        else:
            what = f"{url} took the connection but did not answer within {limits.first_byte:g} s"
        return Check(
            label,
            "fail",
            what,
            f"check that the server is up and that models.providers.{name}.base_url points at "
            "its model API (a provider lists its models at once)",
        )
    except PromptLineError as exc:
        return Check(label, "fail", exc.message, exc.hint)
    elapsed = (time.perf_counter() - started) * 1000
    where = getattr(provider, "base_url", None) or getattr(provider, "url", None) or name
    return Check(label, "ok", f"{where} answered in {elapsed:.0f} ms ({len(models)} models)")


async def _mcp_server(name: str, server: McpServerSettings, egress: EgressPolicy) -> Check:
    from promptline.tools.mcp.connection import McpConnection

    label = f"mcp server {name}"
    within = min(float(server.startup_timeout_secs), MCP_SECONDS)
    connection = McpConnection(name, server, egress=egress)
    try:
        connection.start()
        state = await connection.wait_settled(within)
        if state == "connected":
            tools = connection.tools or []
            return Check(label, "ok", f"{server.kind}, {len(tools)} tool(s)")
        why = connection.error or f"it did not start and list its tools within {within:g} s"
        return Check(
            label,
            "fail",
            why,
            f"check mcp_servers.{name} ({'command' if server.command else 'url'}); "
            f"`promptline mcp list` shows its state",
        )
    finally:
        await connection.close()


def _default_model(
    settings: Settings, registry: ProviderRegistry, providers: dict[str, Check]
) -> Check:
    from promptline.cli.launch import FALLBACK_MODEL
    from promptline.core.errors import PromptLineError

    default = settings.models.default
    if not default:
        return Check(
            "default model",
            "ok",
            f"{FALLBACK_MODEL}, offline (set models.default to use a provider)",
        )
    try:
        resolved = registry.resolve(default)
    except PromptLineError as exc:
        return Check("default model", "fail", exc.message, exc.hint)
    found = providers.get(resolved.provider)
    if found is not None and found.status == "fail":
        return Check(
            "default model",
            "fail",
            f"{resolved.id}: its provider {resolved.provider} does not work (see above)",
            found.hint,
        )
    return Check("default model", "ok", resolved.id)


def _mask_url(url: str) -> str:
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def run_doctor(options: CliOptions) -> int:
    """Print every check; the exit code is 1 when any check failed."""
    import gc

    gc.enable()  # off while the command loaded: the checks start servers and clients
    checks = asyncio.run(gather_checks(options))
    out = console()
    marks = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
    for check in checks:
        out.print(f"{marks[check.status]} [bold]{check.name}[/]: ", end="")
        out.print(check.detail, markup=False)
        if check.hint and check.status != "ok":
            out.print(f"    [dim]fix:[/] {check.hint}")
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    if failed:
        out.print(f"[red]{failed} problem(s)[/], {warned} warning(s)")
        return 1
    out.print(f"[green]all good[/] ({warned} warning(s))")
    return 0


def _server_stack() -> Check:
    """The event loop and HTTP parser `promptline serve` would use: uvloop and httptools
    when installed, else asyncio and h11 (slower, and still correct)."""
    from promptline.gateway.server import server_stack

    stack = server_stack()
    if (stack.loop, stack.http) == ("uvloop", "httptools"):
        return Check("server", "ok", str(stack))
    return Check(
        "server",
        "ok",
        str(stack),
        "install uvloop and httptools (PromptLine's dependencies where they build) for a "
        "faster gateway",
    )
