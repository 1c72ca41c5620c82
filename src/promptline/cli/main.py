"""The `promptline` command tree (click). Command bodies live in `commands.py` and import what
they use inside, so `promptline --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

from promptline import __version__
from promptline.cli.runtime import CliOptions
from promptline.core.runs import RUN_STATUSES
from promptline.core.sandbox import SANDBOX_CHOICES

if TYPE_CHECKING:
    from promptline.cli.daemon import StartOptions

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _opts(ctx: click.Context) -> CliOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliOptions) else CliOptions()


pass_options = click.make_pass_decorator(CliOptions, ensure=True)


@click.group(
    context_settings=CONTEXT,
    epilog="New here? `promptline demo` shows a whole agent run, offline; "
    "`promptline init` writes a config; `promptline chat` starts a conversation; "
    "`promptline doctor` checks the setup.",
)
@click.option(
    "--config",
    "-c",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: $PROMPTLINE_HOME/config.yaml).",
)
@click.option("--profile", "-p", help="Profile overlay to apply: dev, test, prod, ...")
@click.version_option(__version__, "--version", "-V", prog_name="promptline")
@click.pass_context
def app(ctx: click.Context, config: Path | None, profile: str | None) -> None:
    """PromptLine: a local-first runtime and gateway for AI agents."""
    ctx.obj = CliOptions(config=config, profile=profile)


# -- config -----------------------------------------------------------------------------------


@app.group("config")
def config_group() -> None:
    """Show, check and locate the configuration."""


@config_group.command("show", short_help="Print the effective configuration.")
@click.option(
    "--show-secrets",
    is_flag=True,
    help="Print credentials instead of *** (values from the secret store stay ${secret:NAME}).",
)
@pass_options
def config_show(options: CliOptions, show_secrets: bool) -> None:
    """Print the effective configuration (defaults, files, profile and env overrides merged)."""
    from promptline.cli import commands

    commands.config_show(options, show_secrets=show_secrets)


@config_group.command("validate", short_help="Check a config file and list every problem.")
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@pass_options
def config_validate(options: CliOptions, path: Path | None) -> None:
    """Check a config file; print every problem with its key path; exit 1 if any."""
    from promptline.cli import commands

    commands.config_validate(options, path)


@config_group.command("path", short_help="Print where the config file and the home are.")
@pass_options
def config_path(options: CliOptions) -> None:
    """Print where the config file is (or would be) and the home directory."""
    from promptline.cli import commands

    commands.config_path(options)


# -- db ---------------------------------------------------------------------------------------


@app.group("db")
def db_group() -> None:
    """Create and inspect the database schema."""


@db_group.command("upgrade")
@pass_options
def db_upgrade(options: CliOptions) -> None:
    """Create the schema, or migrate it to this release's revision."""
    from promptline.cli import commands

    commands.db_upgrade(options)


@db_group.command("current", short_help="Print the schema revision; is it up to date?")
@pass_options
def db_current(options: CliOptions) -> None:
    """Print the database's schema revision and whether it is up to date."""
    from promptline.cli import commands

    commands.db_current(options)


# -- events -----------------------------------------------------------------------------------


@app.group("events")
def events_group() -> None:
    """Read the event log."""


@events_group.command("tail")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they are stored.")
@click.option("--session", help="Only events of this session.")
@click.option("--type", "-t", "types", multiple=True, help="Only this event type (repeatable).")
@click.option("--limit", "-n", default=20, show_default=True, help="How many recent events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@pass_options
def events_tail(
    options: CliOptions,
    follow: bool,
    session: str | None,
    types: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """Print the most recent events; with --follow, every new one too."""
    from promptline.cli import commands

    commands.events_tail(
        options, follow=follow, session=session, types=list(types), limit=limit, as_json=as_json
    )


@events_group.command("replay")
@click.option("--session", required=True, help="Session whose timeline to print.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@pass_options
def events_replay(options: CliOptions, session: str, as_json: bool) -> None:
    """Print a session's whole timeline, read back from the log."""
    from promptline.cli import commands

    commands.events_replay(options, session=session, as_json=as_json)


# -- sessions ---------------------------------------------------------------------------------


@app.group("sessions")
def sessions_group() -> None:
    """List, inspect, export, import and search sessions."""


@sessions_group.command("list")
@click.option("--user", help="Only this user's sessions.")
@click.option("--channel", help="Only this channel's sessions.")
@click.option("--tenant", help="Only this tenant's sessions.")
@click.option("--limit", "-n", default=50, show_default=True)
@pass_options
def sessions_list(
    options: CliOptions, user: str | None, channel: str | None, tenant: str | None, limit: int
) -> None:
    """List sessions, newest first."""
    from promptline.cli import commands

    commands.sessions_list(options, user=user, channel=channel, tenant=tenant, limit=limit)


@sessions_group.command("show")
@click.argument("session_id")
@pass_options
def sessions_show(options: CliOptions, session_id: str) -> None:
    """Show a session and its message history."""
    from promptline.cli import commands

    commands.sessions_show(options, session_id)


@sessions_group.command("new")
@click.option("--user", default="local", show_default=True, help="Owner of the session.")
@click.option("--channel", default="cli", show_default=True, help="Channel it belongs to.")
@click.option("--tenant", default="default", show_default=True, help="Tenant it belongs to.")
@click.option(
    "--sandbox",
    type=click.Choice(SANDBOX_CHOICES),
    default=None,
    help="Its own sandbox; its commands run in the strongest of this, its channel's and its "
    "agent's.",
)
@pass_options
def sessions_new(
    options: CliOptions, user: str, channel: str, tenant: str, sandbox: str | None
) -> None:
    """Create a session and print its id."""
    from promptline.cli import commands

    commands.sessions_new(options, user=user, channel=channel, tenant=tenant, sandbox=sandbox)


@sessions_group.command("add")
@click.argument("session_id")
@click.argument("text")
@click.option(
    "--role",
    default="user",
    show_default=True,
    type=click.Choice(["user", "assistant", "system", "tool"]),
)
@pass_options
def sessions_add(options: CliOptions, session_id: str, text: str, role: str) -> None:
    """Append a message to a session's history."""
    from promptline.cli import commands

    commands.sessions_add(options, session_id, text, role=role)


@sessions_group.command("export")
@click.argument("session_id")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file instead of stdout.",
)
@pass_options
def sessions_export(options: CliOptions, session_id: str, output: Path | None) -> None:
    """Export a session (record and history) as a JSON document."""
    from promptline.cli import commands

    commands.sessions_export(options, session_id, output)


@sessions_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--as-new-id", is_flag=True, help="Import under a new session id.")
@pass_options
def sessions_import(options: CliOptions, file: Path, as_new_id: bool) -> None:
    """Import a session written by `promptline sessions export`."""
    from promptline.cli import commands

    commands.sessions_import(options, file, as_new_id=as_new_id)


@sessions_group.command("search")
@click.argument("query")
@click.option("--session", help="Search this session only.")
@click.option("--limit", "-n", default=20, show_default=True)
@pass_options
def sessions_search(options: CliOptions, query: str, session: str | None, limit: int) -> None:
    """Full-text search over message history."""
    from promptline.cli import commands

    commands.sessions_search(options, query, session=session, limit=limit)


# -- models -----------------------------------------------------------------------------------


@app.group("models")
def models_group() -> None:
    """List the model catalogue and try a model."""


@models_group.command("list", short_help="Every known model: capabilities and prices.")
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON.")
@pass_options
def models_list(options: CliOptions, as_json: bool) -> None:
    """Every known model: capabilities, prices per million tokens, and which are configured."""
    from promptline.cli import models_cmd

    models_cmd.list_models(options, as_json=as_json)


@models_group.command("test", short_help="Make one real call to a model.")
@click.argument("model")
@click.option("--prompt", help="What to send (default: ask for a short greeting).")
@click.option("--stream", is_flag=True, help="Stream the answer as it is produced.")
@pass_options
def models_test(options: CliOptions, model: str, prompt: str | None, stream: bool) -> None:
    """Make one real call to MODEL (provider/model); print the answer, latency and usage."""
    from promptline.cli import models_cmd

    models_cmd.test_model(options, model, prompt=prompt, stream=stream)


# -- agents: chat, run, runs, demo ------------------------------------------------------------

MODE = click.Choice(["plan", "act"])
MODEL_HELP = (
    "Model id such as openai/gpt-4o-mini (default: the agent's, else models.default, "
    "else the offline scripted/demo)."
)


@app.command("chat", short_help="Talk to an agent in the terminal (a REPL).")
@click.option("--agent", "-a", help="Agent to talk to (default: assistant).")
@click.option("--model", "-m", help=MODEL_HELP)
@click.option("--session", "-s", help="Continue this session (default: a new one).")
@click.option("--mode", type=MODE, help="plan or act (default: the agent's mode).")
@click.option(
    "--remote",
    "-r",
    metavar="URL",
    envvar="PROMPTLINE_URL",
    help="Talk to the gateway at URL (promptline serve) instead of running agents here "
    "[env: PROMPTLINE_URL].",
)
@click.option(
    "--key",
    "-k",
    envvar="PROMPTLINE_API_KEY",
    help="API key for --remote [env: PROMPTLINE_API_KEY].",
)
@pass_options
def chat(
    options: CliOptions,
    agent: str | None,
    model: str | None,
    session: str | None,
    mode: str | None,
    remote: str | None,
    key: str | None,
) -> None:
    """Talk to an agent: answers stream in, tool calls show, approvals are asked inline.

    Enter sends; Esc then Enter (or a trailing backslash) starts a new line. Ctrl-C stops
    the answer being written, Ctrl-D or /exit leaves; /help lists the slash commands.
    With --remote the agents run on a gateway, reached through the client library.
    """
    if remote:
        from promptline.cli.remote_chat import remote_chat

        remote_chat(remote, key, agent=agent, model=model, session=session, mode=_mode(mode))
        return
    from promptline.cli.chat import chat as chat_body

    chat_body(options, agent=agent, model=model, session=session, mode=_mode(mode))


@app.command("run", short_help="Run one task and print the answer.")
@click.argument("task")
@click.option("--agent", "-a", help="Agent to run (default: assistant).")
@click.option("--model", "-m", help=MODEL_HELP)
@click.option("--session", "-s", help="Run in this session (default: a run of its own).")
@click.option("--mode", type=MODE, help="plan or act (default: the agent's mode).")
@click.option("--json", "as_json", is_flag=True, help="Print only the run record, as JSON.")
@click.option("--yes", "-y", is_flag=True, help="Approve every permission request.")
@pass_options
def run_command(
    options: CliOptions,
    task: str,
    agent: str | None,
    model: str | None,
    session: str | None,
    mode: str | None,
    as_json: bool,
    yes: bool,
) -> None:
    """Run one TASK and print the answer.

    Approvals are asked on a terminal; with --yes they are given; otherwise they are
    refused. Exit code: 0 completed, 1 failed, 3 cancelled, 130 stopped with Ctrl-C.
    """
    from promptline.cli.run_cmd import run_task

    run_task(
        options,
        task,
        agent=agent,
        model=model,
        session=session,
        mode=_mode(mode),
        as_json=as_json,
        yes=yes,
    )


@app.group("runs")
def runs_group() -> None:
    """List, inspect and replay recorded runs."""


@runs_group.command("list", short_help="The most recent runs: status, model, tokens, cost.")
@click.option("--session", help="Only runs of this session.")
@click.option("--agent", help="Only runs of this agent.")
@click.option(
    "--status",
    type=click.Choice(RUN_STATUSES),
    help="Only runs with this status.",
)
@click.option("--limit", "-n", default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the run records as JSON.")
@pass_options
def runs_list(
    options: CliOptions,
    session: str | None,
    agent: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The most recent runs, newest first: status, model, tokens and cost."""
    from promptline.cli import runs_cmd

    runs_cmd.runs_list(
        options, session=session, agent=agent, status=status, limit=limit, as_json=as_json
    )


@runs_group.command("show", short_help="One run's record (and with --events, its timeline).")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@click.option("--events", "with_events", is_flag=True, help="Add the run's event timeline.")
@pass_options
def runs_show(options: CliOptions, run_id: str, as_json: bool, with_events: bool) -> None:
    """A run's record (what it was asked, what it answered, what it used)."""
    from promptline.cli import runs_cmd

    runs_cmd.runs_show(options, run_id, as_json=as_json, with_events=with_events)


@runs_group.command("replay")
@click.argument("run_id")
@click.option("--live-tools", is_flag=True, help="Run the tools for real (in a scratch folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_options
def runs_replay(options: CliOptions, run_id: str, live_tools: bool, as_json: bool) -> None:
    """Run a recorded run again from its log and report every divergence.

    The model's answers come from the record; so do the tools' unless --live-tools. Nothing
    is written to the log. Exit code: 0 no divergence, 1 it diverged.
    """
    from promptline.cli import runs_cmd

    runs_cmd.runs_replay(options, run_id, live_tools=live_tools, as_json=as_json)


@app.command("demo", short_help="A whole agent run, offline, with an approval and its timeline.")
@click.option("--keep", is_flag=True, help="Keep the demo's home (under the PromptLine home).")
@click.option("--interactive", "-i", is_flag=True, help="Answer the approval yourself.")
def demo(keep: bool, interactive: bool) -> None:
    """A whole agent run, offline, on a temporary home: a tool call, its approval, the
    answer, and the run's timeline from the event log. Needs no key and no network."""
    from promptline.cli.demo import demo as demo_body

    demo_body(CliOptions(), keep=keep, interactive=interactive)


def _mode(value: str | None) -> Literal["plan", "act"] | None:
    if value is None:
        return None
    return "plan" if value == "plan" else "act"


# -- doctor -----------------------------------------------------------------------------------


@app.command("doctor", short_help="Check the setup and say how to fix what is wrong.")
@pass_options
def doctor(options: CliOptions) -> None:
    """Check the configuration, database and services; say what is wrong and how to fix it."""
    from promptline.cli.doctor import run_doctor

    raise SystemExit(run_doctor(options))


# -- gateway ----------------------------------------------------------------------------------


@app.command("serve", short_help="Run the gateway in the foreground (REST, WebSocket).")
@click.option("--host", help="Interface to bind (default: gateway.host).")
@click.option("--port", type=int, help="Port (default: gateway.port; 0 picks a free one).")
@click.option("--no-auth", is_flag=True, help="No API keys (allowed on loopback only).")
@pass_options
def serve(options: CliOptions, host: str | None, port: int | None, no_auth: bool) -> None:
    """Run the gateway: REST /v1, WebSocket /v1/ws, the OpenAI-compatible API."""
    from promptline.cli import serve_cmd

    serve_cmd.serve(options, host=host, port=port, no_auth=no_auth)


@app.group("keys")
def keys_group() -> None:
    """Make, list and revoke API keys (stored as hashes)."""


@keys_group.command("create")
@click.option(
    "--user",
    "-u",
    help="The user the key acts as (an admin key's default: admin, as the first start's).",
)
@click.option("--tenant", "-t", default="default", show_default=True, help="The user's tenant.")
@click.option(
    "--role",
    type=click.Choice(["admin", "operator", "user", "viewer"]),
    default="user",
    show_default=True,
    help="admin: everything in its tenant; operator: runs and approves across the tenant, "
    "no keys; user: its own sessions; viewer: reads its own (see docs/auth.md).",
)
@click.option("--name", default="", help="A note to tell keys apart.")
@click.option("--json", "as_json", is_flag=True, help="Print the record and the key as JSON.")
@pass_options
def keys_create(
    options: CliOptions, user: str | None, tenant: str, role: str, name: str, as_json: bool
) -> None:
    """Make an API key; it is printed once."""
    from promptline.cli import serve_cmd

    if user is None:
        if role != "admin":
            raise click.UsageError(
                "a user's key needs --user NAME, the user it acts as "
                "(an admin key may leave it out: promptline keys create --role admin)"
            )
        user = "admin"

    serve_cmd.keys_create(options, user=user, tenant=tenant, role=role, name=name, as_json=as_json)


@keys_group.command("list")
@click.option("--tenant", "-t", help="Only keys of this tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_options
def keys_list(options: CliOptions, tenant: str | None, as_json: bool) -> None:
    """List the keys (never the keys themselves)."""
    from promptline.cli import serve_cmd

    serve_cmd.keys_list(options, tenant=tenant, as_json=as_json)


@keys_group.command("revoke")
@click.argument("key_id")
@pass_options
def keys_revoke(options: CliOptions, key_id: str) -> None:
    """Revoke a key: it stops working at once."""
    from promptline.cli import serve_cmd

    serve_cmd.keys_revoke(options, key_id)


# -- members ----------------------------------------------------------------------------------

_ROLE_HELP = (
    "admin: everything in its tenant; operator: runs and approves across the tenant, no "
    "keys; user: its own sessions; viewer: reads its own (see docs/auth.md)."
)
_ROLES = click.Choice(["admin", "operator", "user", "viewer"])


@app.group("members")
def members_group() -> None:
    """The members of a tenant: users with a role and a password to sign in with."""


@members_group.command("add")
@click.option("--tenant", "-t", default="default", show_default=True, help="The tenant.")
@click.option("--user", "-u", required=True, help="The member's user id.")
@click.option("--role", type=_ROLES, default="user", show_default=True, help=_ROLE_HELP)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--no-password", is_flag=True, help="No password: the member uses API keys.")
@click.option("--json", "as_json", is_flag=True, help="Print the member as JSON.")
@pass_options
def members_add(
    options: CliOptions,
    tenant: str,
    user: str,
    role: str,
    password_stdin: bool,
    no_password: bool,
    as_json: bool,
) -> None:
    """Add a member (the password is asked for, or read with --password-stdin)."""
    from promptline.cli import members_cmd

    if password_stdin and no_password:
        raise click.UsageError("--password-stdin and --no-password exclude each other")
    password = None if no_password else members_cmd.read_password(from_stdin=password_stdin)
    members_cmd.members_add(
        options,
        tenant=tenant,
        user=user,
        role=role,
        password=password,
        as_json=as_json,
    )


@members_group.command("list")
@click.option("--tenant", "-t", default="default", show_default=True, help="The tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_options
def members_list(options: CliOptions, tenant: str, as_json: bool) -> None:
    """List a tenant's members (never a password)."""
    from promptline.cli import members_cmd

    members_cmd.members_list(options, tenant=tenant, as_json=as_json)


@members_group.command("set")
@click.option("--tenant", "-t", default="default", show_default=True, help="The tenant.")
@click.option("--user", "-u", required=True, help="The member's user id.")
@click.option("--role", type=_ROLES, help="A new role. " + _ROLE_HELP)
@click.option("--password", "new_password", is_flag=True, help="Set a new password (asked for).")
@click.option("--password-stdin", is_flag=True, help="Set a new password read from stdin.")
@click.option("--no-password", is_flag=True, help="Remove the password (API keys only).")
@pass_options
def members_set(
    options: CliOptions,
    tenant: str,
    user: str,
    role: str | None,
    new_password: bool,
    password_stdin: bool,
    no_password: bool,
) -> None:
    """Change a member's role or password."""
    from promptline.cli import members_cmd

    if sum((new_password, password_stdin, no_password)) > 1:
        raise click.UsageError("choose one of --password, --password-stdin and --no-password")
    if role is None and not (new_password or password_stdin or no_password):
        raise click.UsageError("nothing to change: give --role, --password or --no-password")
    password = None
    if new_password or password_stdin:
        password = members_cmd.read_password(from_stdin=password_stdin)
    members_cmd.members_set(
        options,
        tenant=tenant,
        user=user,
        role=role,
        password=password,
        clear_password=no_password,
    )


@members_group.command("remove")
@click.option("--tenant", "-t", default="default", show_default=True, help="The tenant.")
@click.option("--user", "-u", required=True, help="The member's user id.")
@pass_options
def members_remove(options: CliOptions, tenant: str, user: str) -> None:
    """Remove a member; the user's API keys in the tenant are revoked too."""
    from promptline.cli import members_cmd

    members_cmd.members_remove(options, tenant=tenant, user=user)


# -- audit ------------------------------------------------------------------------------------


@app.group("audit")
def audit_group() -> None:
    """Compliance reports read from the event log."""


@audit_group.command("report", short_help="Who did what, approvals, alerts, failed logins.")
@click.option("--from", "since", help="Start of the period (YYYY-MM-DD or an ISO time; UTC).")
@click.option("--to", "until", help="End of the period (a date alone: to the end of that day).")
@click.option("--tenant", "-t", help="Only this tenant's events.")
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["md", "csv", "json"]),
    default="md",
    show_default=True,
    help="Markdown, CSV or JSON.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    help="Write the report to this file instead of printing it.",
)
@pass_options
def audit_report(
    options: CliOptions,
    since: str | None,
    until: str | None,
    tenant: str | None,
    fmt: Literal["md", "csv", "json"],
    output: Path | None,
) -> None:
    """The compliance report of a period: who did what (actor, action, target, outcome,
    time), approvals given and denied, security alerts, quota hits and failed logins."""
    from promptline.cli import audit_cmd

    audit_cmd.report(options, since=since, until=until, tenant=tenant, fmt=fmt, output=output)


@app.command("quotas", short_help="A user's and its tenant's quotas, and what they used.")
@click.option("--user", required=True, help="The user.")
@click.option("--tenant", default="default", show_default=True, help="Its tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as GET /v1/quotas).")
@pass_options
def quotas(options: CliOptions, user: str, tenant: str, as_json: bool) -> None:
    """The quotas (quotas:) of a user and of its tenant, with what each used of the tokens
    and dollars of today, the sessions and the storage; and whether requests and runs are
    counted per process or shared by the processes on the database."""
    from promptline.cli import commands

    commands.quotas_show(options, tenant=tenant, user=user, as_json=as_json)


@app.group("auth")
def auth_group() -> None:
    """The keys that sign access tokens."""


@auth_group.command("rotate-key")
@pass_options
def auth_rotate_key(options: CliOptions) -> None:
    """Sign new access tokens with a new key; the previous one still verifies the tokens it
    signed until they expire (security.tokens.access_ttl_secs). A running gateway picks the
    new key up within a second."""
    from promptline.cli import serve_cmd

    serve_cmd.auth_rotate_key(options)


@app.group("secrets")
def secrets_group() -> None:
    """The encrypted secret store: values the config uses as ${secret:NAME}.

    Kept in secrets.json in the home, each value encrypted under a master key from
    $PROMPTLINE_SECRETS_KEY or secrets.key beside it (made with the first secret)."""


@secrets_group.command("set", short_help="Store a secret; its value from stdin or a prompt.")
@click.argument("name")
@click.argument("extra", nargs=-1, metavar="")
@click.option("--from-env", metavar="VAR", help="Take the value from environment variable VAR.")
@pass_options
def secrets_set(
    options: CliOptions, name: str, extra: tuple[str, ...], from_env: str | None
) -> None:
    """Store secret NAME (A-Z, 0-9 and _, starting with a letter), replacing its old value.

    The value is read from stdin when it is piped, else from a hidden prompt, or with
    --from-env from a variable; never from the command line, where `ps` shows it."""
    from promptline.cli import secrets_cmd

    secrets_cmd.set_secret(name, from_env=from_env, extra=extra, options=options)


@secrets_group.command("list", short_help="The secrets' names and when they were set.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def secrets_list(as_json: bool) -> None:
    """List the secrets' names and when each was set (never the values)."""
    from promptline.cli import secrets_cmd

    secrets_cmd.list_secrets(as_json=as_json)


@secrets_group.command("delete", short_help="Remove a secret.")
@click.argument("name")
@pass_options
def secrets_delete(options: CliOptions, name: str) -> None:
    """Remove secret NAME from the store."""
    from promptline.cli import secrets_cmd

    secrets_cmd.delete(name, options=options)


@secrets_group.command("rotate", short_help="Re-encrypt every secret under a new master key.")
@pass_options
def secrets_rotate(options: CliOptions) -> None:
    """Re-encrypt every secret under a new master key, in one atomic replacement of the
    store; the old key is kept nowhere after. With a key file the new key replaces it; with
    $PROMPTLINE_SECRETS_KEY the new key is printed once, to be put in its place."""
    from promptline.cli import secrets_cmd

    secrets_cmd.rotate(options=options)


# -- the resident gateway: start, stop, restart, status, logs ---------------------------------

START_TIMEOUT_HELP = "Seconds to wait for /healthz to answer."
STOP_TIMEOUT_HELP = (
    "Seconds to wait for a graceful stop (default: 2 x agent.shutdown_timeout_secs + 10)."
)


def _start_options(host: str | None, port: int | None, no_auth: bool, wait: float) -> StartOptions:
    from promptline.cli.daemon import StartOptions

    return StartOptions(host=host, port=port, no_auth=no_auth, timeout=wait)


@app.command("start", short_help="Run the gateway in the background (pid file, rotating log).")
@click.option("--host", help="Interface to bind (default: gateway.host).")
@click.option("--port", type=int, help="Port (default: gateway.port; 0 picks a free one).")
@click.option("--no-auth", is_flag=True, help="No API keys (allowed on loopback only).")
@click.option("--wait", default=30.0, show_default=True, help=START_TIMEOUT_HELP)
@pass_options
def start(
    options: CliOptions, host: str | None, port: int | None, no_auth: bool, wait: float
) -> None:
    """Start `promptline serve` in the background and wait until it answers.

    Its pid goes to $PROMPTLINE_HOME/gateway.pid, its output to
    $PROMPTLINE_HOME/logs/gateway.log (rotated at 10 MiB, 5 kept). A second start is
    refused while it runs. On the first start an admin API key is made: it is printed, and
    a copy is kept in $PROMPTLINE_HOME/admin.key (mode 0600) for `promptline status`.
    """
    from promptline.cli import daemon

    daemon.start(options, _start_options(host, port, no_auth, wait))


@app.command("stop", short_help="Stop the background gateway gracefully.")
@click.option("--timeout", type=float, help=STOP_TIMEOUT_HELP)
@click.option("--force", is_flag=True, help="SIGKILL it if it has not stopped by then.")
@pass_options
def stop(options: CliOptions, timeout: float | None, force: bool) -> None:
    """Send SIGTERM and wait for the gateway to stop: runs reach a safe point, the log is
    flushed. Exit 1 if it is still running after the timeout (unless --force)."""
    from promptline.cli import daemon

    daemon.stop(options, timeout=timeout, force=force)


@app.command("restart", short_help="Stop the background gateway and start it again.")
@click.option("--host", help="Interface to bind (default: as before, else gateway.host).")
@click.option("--port", type=int, help="Port (default: as before, else gateway.port).")
@click.option("--no-auth", is_flag=True, help="No API keys (allowed on loopback only).")
@click.option("--wait", default=30.0, show_default=True, help=START_TIMEOUT_HELP)
@click.option("--timeout", type=float, help=STOP_TIMEOUT_HELP)
@click.option("--force", is_flag=True, help="SIGKILL it if it has not stopped by then.")
@pass_options
def restart(
    options: CliOptions,
    host: str | None,
    port: int | None,
    no_auth: bool,
    wait: float,
    timeout: float | None,
    force: bool,
) -> None:
    """`stop`, then `start` with the host, port and auth the gateway had (or those given)."""
    from promptline.cli import daemon

    daemon.restart(options, _start_options(host, port, no_auth, wait), timeout=timeout, force=force)


@app.command("status", short_help="Is the gateway up? Health, sessions, active runs, providers.")
@click.option("--url", envvar="PROMPTLINE_URL", help="Gateway to ask (env PROMPTLINE_URL).")
@click.option(
    "--key",
    envvar="PROMPTLINE_API_KEY",
    help="API key (env PROMPTLINE_API_KEY; locally, else $PROMPTLINE_HOME/admin.key).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_options
def status(options: CliOptions, url: str | None, key: str | None, as_json: bool) -> None:
    """Ask a gateway how it is: its process (local), /healthz, /readyz, the sessions and
    active runs its key can see, its providers.

    Exit code: 0 ready, 1 answering but not ready (or its process does not answer),
    3 not running.
    """
    from promptline.cli import status_cmd

    status_cmd.status(options, url=url, key=key, as_json=as_json)


@app.command("logs", short_help="Print the background gateway's log.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing what it writes (Ctrl-C stops).")
@click.option("--lines", "-n", default=50, show_default=True, help="How many recent lines.")
@pass_options
def logs(options: CliOptions, follow: bool, lines: int) -> None:
    """The last lines of $PROMPTLINE_HOME/logs/gateway.log (and its rotated files)."""
    from promptline.cli import logs_cmd

    logs_cmd.logs(options, lines=lines, follow=follow)


# -- setup: init, service ---------------------------------------------------------------------

PROVIDERS = ["openai", "anthropic", "gemini", "deepseek", "kimi", "ollama", "compatible", "demo"]


@app.command("init", short_help="First-run setup: providers, keys, channels -> config.yaml.")
@click.option("--non-interactive", is_flag=True, help="Ask nothing: take every answer from flags.")
@click.option("--force", is_flag=True, help="Replace an existing config (kept as .bak).")
@click.option("--skip-test", is_flag=True, help="Do not call each provider once (offline).")
@click.option(
    "--provider",
    "providers",
    multiple=True,
    type=click.Choice(PROVIDERS),
    help="A provider to configure (repeatable; default: demo).",
)
@click.option(
    "--api-key-env",
    multiple=True,
    metavar="[PROVIDER=]VAR",
    help="Write the key as ${VAR} (default: the provider's usual variable).",
)
@click.option(
    "--api-key",
    multiple=True,
    metavar="[PROVIDER=]KEY",
    help="Write the key itself into the file (prefer --api-key-env).",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="[PROVIDER=]NAMES",
    help="Models it serves, comma-separated (default: a small one).",
)
@click.option(
    "--base-url",
    multiple=True,
    metavar="[PROVIDER=]URL",
    help="Its endpoint (required for compatible).",
)
@click.option(
    "--compatible-name",
    default="compatible",
    show_default=True,
    help="Name of the compatible provider in the config.",
)
@click.option("--default-model", help="models.default (default: the first model).")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    type=click.Choice(["cli", "http", "websocket"]),
    help="A channel to enable (repeatable; default: all three).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="gateway.host")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="gateway.port"
)
@pass_options
def init(
    options: CliOptions,
    non_interactive: bool,
    force: bool,
    skip_test: bool,
    providers: tuple[str, ...],
    api_key_env: tuple[str, ...],
    api_key: tuple[str, ...],
    models: tuple[str, ...],
    base_url: tuple[str, ...],
    compatible_name: str,
    default_model: str | None,
    channels: tuple[str, ...],
    host: str,
    port: int,
) -> None:
    """Write $PROMPTLINE_HOME/config.yaml: pick providers, say where their keys are, test
    each with one call, enable channels. Refuses to overwrite a config without --force.

    \b
    promptline init                      # asks
    promptline init --non-interactive --provider openai \\
        --api-key-env OPENAI_API_KEY --model gpt-4o-mini
    promptline init --non-interactive --provider demo --skip-test
    """
    from promptline.cli.init_cmd import InitFlags
    from promptline.cli.init_cmd import init as init_body

    init_body(
        options,
        InitFlags(
            non_interactive=non_interactive,
            force=force,
            skip_test=skip_test,
            providers=list(providers),
            api_key_env=list(api_key_env),
            api_key=list(api_key),
            models=list(models),
            base_url=list(base_url),
            compatible_name=compatible_name,
            default_model=default_model,
            channels=list(channels),
            host=host,
            port=port,
        ),
    )


@app.group("service")
def service_group() -> None:
    """Run the gateway as a system service."""


@service_group.command("install", short_help="Write a systemd user unit that runs the gateway.")
@click.option("--print", "print_only", is_flag=True, help="Print the unit; write nothing.")
@click.option("--force", is_flag=True, help="Replace a unit that differs.")
@pass_options
def service_install(options: CliOptions, print_only: bool, force: bool) -> None:
    """Write a systemd user unit (~/.config/systemd/user/promptline.service) that runs
    `promptline serve` for this PromptLine home, and print the systemctl commands that
    enable it (they are not run)."""
    from promptline.cli import service_cmd

    service_cmd.install(options, print_only=print_only, force=force)


from promptline.cli.mcp_cmd import mcp_group  # noqa: E402
from promptline.cli.skills_cmd import skills_group  # noqa: E402
from promptline.cli.tools_cmd import tools_group  # noqa: E402

app.add_command(mcp_group)
app.add_command(skills_group)
app.add_command(tools_group)


def main() -> None:
    """Entry point of the `promptline` script.

    Most commands are short: they load their modules, do one thing and exit. Two costs of such
    a process are not the command's own, and are skipped:

    - the cyclic garbage collector, which runs dozens of times while the modules load (their
      objects all live until exit), is off until a command starts something long-lived
      (`promptline.cli.runtime.run` turns it back on, for the gateway, chat and the full set of
      services);
    - tearing the interpreter down (freeing every module's objects one by one, a tenth of a
      short command's time): once the command has ended, its exit handlers are run, its output
      flushed and the process ends (`_exit`). A process with another thread still running, or
      whose output cannot be flushed, exits the ordinary way.
    """
    import gc

    gc.disable()
    try:
        app(prog_name="promptline")
    except SystemExit as done:
        _exit(done.code)
    _exit(0)


def _exit(code: object) -> None:
    """End the process with ``code`` (as `SystemExit` takes it) without the interpreter's
    teardown, when nothing is left that the teardown would do."""
    import atexit
    import os
    import sys
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    if threading.active_count() > 1:
        sys.exit(status)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(status)  # a closed pipe: the ordinary exit says so as Python does
    os._exit(status)


if __name__ == "__main__":
    main()
