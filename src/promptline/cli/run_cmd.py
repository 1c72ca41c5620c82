"""Body of ``promptline run``: one task, one run, its answer, and an exit code that says how
the run ended."""

from __future__ import annotations

import sys
from typing import Literal

from promptline.cli.runtime import CliOptions, run, services, write_json

EXIT_COMPLETED = 0
EXIT_FAILED = 1
"""The run failed (or could not start: a bad config, an unknown agent or session)."""
EXIT_CANCELLED = 3
"""The run was cancelled or interrupted (not by Ctrl-C here)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C cancelled the run."""

NO_TERMINAL = (
    "nobody can approve it here (stdin is not a terminal); rerun with --yes to approve, "
    "or allow the tool under `tools:` in the config"
)


def run_task(
    options: CliOptions,
    task: str,
    *,
    agent: str | None,
    model: str | None,
    session: str | None,
    mode: Literal["plan", "act"] | None,
    as_json: bool,
    yes: bool,
) -> None:
    """Run ``task`` once; print the answer (or, with ``as_json``, the run record)."""
    from promptline.cli.launch import LOCAL_USER, pick_model, start_watched
    from promptline.cli.live import (
        RunView,
        approve_all,
        ask_with,
        describe_mode,
        on_interrupt,
        refuse_all,
    )
    from promptline.cli.terminal import PlainInput
    from promptline.runtime.records import load_run

    async def main() -> int:
        async with services(options) as app:
            app.settings.channels.require_on("cli")
            await app.start_runtime()
            chosen = app.runtime.agent(agent)
            model_id, notice = pick_model(app.settings, chosen, model)
            view = RunView(
                permissions=app.permissions,
                out=sys.stdout,
                notes=sys.stderr,
                stream=sys.stdout.isatty(),
                show_answer=not as_json,
                show_tools=not as_json,
                decided_by=LOCAL_USER,
            )
            if notice:
                view.note(view.style.dim(notice))
            if not as_json:
                view.note(view.style.dim(describe_mode(mode or chosen.mode, switch="--mode")))
            if yes:
                view.approver = approve_all(view.note, by_whom="--yes")
                view.decided_by = f"{LOCAL_USER} (--yes)"
            elif sys.stdin.isatty():
                view.approver = ask_with(PlainInput(sys.stderr).ask, view.note)
            else:
                view.approver = refuse_all(NO_TERMINAL)
                view.decided_by = "promptline run"
            started, feed = await start_watched(
                app, task, agent=chosen, session_id=session, mode=mode, model=model_id
            )
            interrupted = False

            def cancel() -> None:
                nonlocal interrupted
                interrupted = True
                started.cancel("cancelled with Ctrl-C", by="user")

            with on_interrupt(cancel):
                result = await view.follow(started, feed)
            if as_json:
                write_json((await load_run(app.events, started.id)).to_dict())
            if result.status == "completed":
                return EXIT_COMPLETED
            if result.status == "failed":
                return EXIT_FAILED
            return EXIT_INTERRUPTED if interrupted else EXIT_CANCELLED

    code = run(main)
    if code:
        raise SystemExit(code)
