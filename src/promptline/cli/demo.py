"""Body of ``promptline demo``: a whole run, offline, on a home of its own: a tool call that
needs an approval, the approval, the answer, and the run's timeline from the event log."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from promptline.cli.runtime import CliOptions, fail, run

if TYPE_CHECKING:
    from promptline.tools.base import Tool

TASK = "What is 2+3? Use the add tool"
MODEL = "scripted/demo"
DEMO_CONFIG = """\
# Written by `promptline demo`: the offline demo model, and an `add` tool that needs approval.
models:
  default: scripted/demo
tools:
  add: ask
"""
KEPT_FOLDER = "demo"
"""Where ``--keep`` puts the demo's home: a folder of the PromptLine home (never its own
database or config)."""


def demo(options: CliOptions, *, keep: bool, interactive: bool) -> None:
    """Run the demo on a temporary home (removed afterwards unless ``keep``)."""
    from promptline.config import promptline_home

    if interactive and not sys.stdin.isatty():
        fail("--interactive needs a terminal to ask on", hint="run it without --interactive")
    if keep:
        from promptline.storage.files import private_dir

        home = private_dir(promptline_home() / KEPT_FOLDER)
    else:
        home = Path(tempfile.mkdtemp(prefix="promptline-demo-"))
    try:
        with _home(home):
            run_id = run(lambda: _demo(home, interactive=interactive))
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    out = sys.stdout
    if keep:
        out.write(
            f"\nThe demo's home is kept in {home}. Look at the run again with:\n"
            f"  PROMPTLINE_HOME={home} promptline runs show {run_id} --events\n"
        )
    else:
        out.write(
            "\nThe demo's temporary home was removed; `promptline demo --keep` keeps it.\n"
            'Next: `promptline chat` for a conversation, `promptline run "..."` for one task.\n'
        )


@contextlib.contextmanager
def _home(home: Path) -> Iterator[None]:
    """Point everything that reads the environment at ``home``, and only there."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("PROMPTLINE_"):
            del os.environ[name]
    os.environ["PROMPTLINE_HOME"] = str(home)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def _demo(home: Path, *, interactive: bool) -> str:
    from promptline.app import build_app
    from promptline.cli.launch import LOCAL_USER, start_watched
    from promptline.cli.live import RunView, Style, approve_all, ask_with
    from promptline.cli.terminal import PlainInput
    from promptline.cli.timeline import print_events
    from promptline.config import load_settings
    from promptline.events.protocols import EventFilter

    out = sys.stdout
    style = Style.for_stream(out)
    from promptline.storage.files import write_atomically

    config = home / "config.yaml"
    write_atomically(config, DEMO_CONFIG.encode("utf-8"))
    settings = load_settings(config, environ={"PROMPTLINE_HOME": str(home)})

    def say(text: str = "") -> None:
        out.write(text + "\n")
        out.flush()

    say(style.bold("PromptLine demo") + ": one agent run, offline (no API key, no network).")
    say(style.dim(f"home: {home}"))
    say(style.dim(f"model: {MODEL} (scripted: it calls an `add` tool when it is offered one)"))
    say(style.dim("tool: add, with permission `ask`: every call waits for an approval"))
    say()
    async with build_app(settings) as app:
        app.tools.register(add_tool())
        runtime = await app.start_runtime()
        agent = runtime.agent().evolve(tools=("add",))
        view = RunView(permissions=app.permissions, out=out, footer=True, decided_by=LOCAL_USER)
        if interactive:
            view.approver = ask_with(PlainInput(out).ask, view.note)
        else:
            view.approver = approve_all(
                view.note, by_whom="demo; `promptline demo --interactive` lets you answer"
            )
            view.decided_by = "demo"
        say(style.bold("you> ") + TASK)
        started, feed = await start_watched(app, TASK, agent=agent, mode="act", model=MODEL)
        result = await view.follow(started, feed)
        events = await app.events.read_all(EventFilter(run_id=started.id))
        say()
        print_events(
            events, title=f"timeline of {started.id} ({len(events)} events, {result.status})"
        )
        say(
            style.dim(
                "Every line above is an event in the append-only log: the model call and its "
                "streamed text, the tool call, the permission request and its answer."
            )
        )
    return started.id


def add_tool() -> Tool:
    """The demo's ``add``: it changes nothing, but is not marked read-only, so the
    permission policy applies to it (read-only tools run without asking)."""
    from promptline.tools.function import tool

    @tool(name="add", read_only=False, inline=True)
    def add(a: float, b: float) -> int | float:
        """Add two numbers and return the sum.

        Args:
            a: The first number.
            b: The second number.
        """
        total = a + b
        return int(total) if float(total).is_integer() else total

    return add
