"""``promptline service install``: a systemd user unit that runs ``promptline serve`` for this
PromptLine home (written, or printed with ``--print``; systemctl is left to you)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from promptline.cli.runtime import CliOptions, console, fail, friendly_errors, load_settings

__all__ = ["UNIT_NAME", "install", "render_unit", "serve_command", "unit_path"]

UNIT_NAME = "promptline.service"
ENV_FILE = "gateway.env"
RESTART_SEC = 5


def unit_path() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user/promptline.service`` (``~/.config`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser().absolute() / "systemd" / "user" / UNIT_NAME


def serve_command(config: Path | None) -> list[str]:
    """The command line of the service: this installation's ``promptline serve``."""
    script = Path(sys.executable).absolute().parent / "promptline"
    found = str(script) if script.exists() else shutil.which("promptline")
    command = (
        [found] if found else [str(Path(sys.executable).absolute()), "-m", "promptline.cli.main"]
    )
    if config is not None:
        command += ["--config", str(config)]
    return [*command, "serve"]


def render_unit(*, command: list[str], home: Path, profile: str | None, stop_timeout: float) -> str:
    """The unit file's text."""
    environment = [f"Environment={_quote('PROMPTLINE_HOME=' + str(home))}"]
    if profile:
        environment.append(f"Environment={_quote('PROMPTLINE_PROFILE=' + profile)}")
    exec_start = " ".join(_quote(arg).replace("$", "$$") for arg in command)
    lines = [
        "# PromptLine gateway, written by `promptline service install`.",
        "[Unit]",
        "Description=PromptLine gateway (REST /v1, WebSocket /v1/ws)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        *environment,
        "# Variables the config reads as ${NAME} (OPENAI_API_KEY=...), one NAME=value a line;",
        "# keep the file private (chmod 600). A user service does not see your shell's variables.",
        f"EnvironmentFile=-{_escape(str(home / ENV_FILE))}",
        f"WorkingDirectory={_escape(str(home))}",  # a path: taken whole, never quoted
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "# SIGTERM: stop taking requests, let runs reach a safe point, flush the log. Only the",
        "# gateway gets it (tools it runs are stopped by it); what is left gets SIGKILL after",
        "# TimeoutStopSec = 2 x agent.shutdown_timeout_secs + 10 s.",
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        f"TimeoutStopSec={round(stop_timeout)}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def install(options: CliOptions, *, print_only: bool, force: bool) -> None:
    """Write the unit (or print it) and say how to enable it."""
    from promptline.cli.daemon import gateway_files, stop_timeout
    from promptline.config import promptline_home

    with friendly_errors():
        settings = load_settings(options)
    config = Path(options.config).expanduser().absolute() if options.config else None
    unit = render_unit(
        command=serve_command(config),
        home=promptline_home(),
        profile=options.profile or os.environ.get("PROMPTLINE_PROFILE") or None,
        stop_timeout=stop_timeout(settings),
    )
    if print_only:
        sys.stdout.write(unit)
        return
    path = unit_path()
    if path.exists() and path.read_text(encoding="utf-8") != unit and not force:
        fail(
            f"{path} exists and differs from the unit this would write",
            hint="`promptline service install --print` shows the new one; --force replaces it",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit, encoding="utf-8")
    promptline_home().mkdir(parents=True, exist_ok=True)  # the unit's WorkingDirectory
    out = console()
    out.print(f"[green]wrote[/] {path}", markup=True, highlight=False)
    out.print("enable and start it (systemctl is not run for you):")
    for command in (
        "systemctl --user daemon-reload",
        f"systemctl --user enable --now {UNIT_NAME}",
        f"systemctl --user status {UNIT_NAME}",
        f"journalctl --user -u {UNIT_NAME} -f      # its output",
        "loginctl enable-linger $USER              # keep it running after you log out",
    ):
        out.print(f"  {command}", markup=False, highlight=False)
    env_file = promptline_home() / ENV_FILE
    out.print(
        f"Keys the config reads from the environment go in {env_file} (NAME=value lines, "
        "chmod 600).",
        markup=False,
        highlight=False,
    )
    if gateway_files().running_pid() is not None:
        out.print(
            "[yellow]A gateway started with `promptline start` runs now: `promptline stop` it "
            "before starting the service (they would want the same port).[/]",
            markup=True,
        )


def _escape(value: str) -> str:
    # `%` starts a systemd specifier everywhere in a unit file.
    return value.replace("%", "%%")


def _quote(value: str) -> str:
    value = _escape(value)
    if value and not any(c in value for c in " \t\"'\\;"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
