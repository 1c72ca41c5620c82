"""The `promptline` command tree (click). Command bodies live in `commands.py` and import what
they use inside, so `promptline --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click

from promptline import __version__
from promptline.cli.runtime import CliOptions

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _opts(ctx: click.Context) -> CliOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliOptions) else CliOptions()


pass_options = click.make_pass_decorator(CliOptions, ensure=True)


@click.group(
    context_settings=CONTEXT,
    epilog="New here? `promptline demo` shows a whole agent run, offline; "
    "`promptline chat` starts a conversation; `promptline doctor` checks the setup.",
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


@config_group.command("show")
@click.option("--show-secrets", is_flag=True, help="Print secrets instead of ***.")
@pass_options
def config_show(options: CliOptions, show_secrets: bool) -> None:
    """Print the effective configuration (defaults, files, profile and env overrides merged)."""
    from promptline.cli import commands

    commands.config_show(options, show_secrets=show_secrets)


@config_group.command("validate")
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@pass_options
def config_validate(options: CliOptions, path: Path | None) -> None:
    """Check a config file; print every problem with its key path; exit 1 if any."""
    from promptline.cli import commands

    commands.config_validate(options, path)


@config_group.command("path")
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


@db_group.command("current")
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
@pass_options
def sessions_new(options: CliOptions, user: str, channel: str, tenant: str) -> None:
    """Create a session and print its id."""
    from promptline.cli import commands

    commands.sessions_new(options, user=user, channel=channel, tenant=tenant)


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


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON.")
@pass_options
def models_list(options: CliOptions, as_json: bool) -> None:
    """Every known model: capabilities, prices per million tokens, and which are configured."""
    from promptline.cli import models_cmd

    models_cmd.list_models(options, as_json=as_json)


@models_group.command("test")
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
@pass_options
def chat(
    options: CliOptions,
    agent: str | None,
    model: str | None,
    session: str | None,
    mode: str | None,
) -> None:
    """Talk to an agent: answers stream in, tool calls show, approvals are asked inline.

    Enter sends; Esc then Enter (or a trailing backslash) starts a new line. Ctrl-C stops
    the answer being written, Ctrl-D or /exit leaves; /help lists the slash commands.
    """
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


@runs_group.command("list")
@click.option("--session", help="Only runs of this session.")
@click.option("--agent", help="Only runs of this agent.")
@click.option(
    "--status",
    type=click.Choice(
        ["running", "waiting_approval", "completed", "failed", "cancelled", "interrupted"]
    ),
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


@runs_group.command("show")
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


@app.command("doctor")
@pass_options
def doctor(options: CliOptions) -> None:
    """Check the configuration, database and services; say what is wrong and how to fix it."""
    from promptline.cli.doctor import run_doctor

    raise SystemExit(run_doctor(options))


# -- gateway ----------------------------------------------------------------------------------


@app.command("serve")
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
@click.option("--user", "-u", required=True, help="The user the key acts as.")
@click.option("--tenant", "-t", default="default", show_default=True, help="The user's tenant.")
@click.option(
    "--role",
    type=click.Choice(["user", "admin"]),
    default="user",
    show_default=True,
    help="admin sees every session of its tenant.",
)
@click.option("--name", default="", help="A note to tell keys apart.")
@click.option("--json", "as_json", is_flag=True, help="Print the record and the key as JSON.")
@pass_options
def keys_create(
    options: CliOptions, user: str, tenant: str, role: str, name: str, as_json: bool
) -> None:
    """Make an API key; it is printed once."""
    from promptline.cli import serve_cmd

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


def main() -> None:
    """Entry point of the `promptline` script."""
    app(prog_name="promptline")


if __name__ == "__main__":
    main()
