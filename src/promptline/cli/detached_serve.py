"""The process ``promptline start`` leaves running: the gateway of ``promptline serve`` with its
output in a size-rotated log, and files that say it is there (``gateway.json``, ``admin.key``).

Run as ``python -m promptline.cli.detached_serve --home DIR [...]``; not meant to be typed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from promptline.cli.daemon_files import GatewayFiles
from promptline.cli.rotating_log import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, RotatingLog

if TYPE_CHECKING:
    from collections.abc import Callable

    from promptline.config.settings import Settings
    from promptline.core.errors import PromptLineError
    from promptline.gateway.server import ServeInfo

__all__ = ["main"]


def say(message: str) -> None:
    """One timestamped line of the log, before its format is known (the config is read)."""
    stamp = datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S%z")
    sys.stdout.write(f"{stamp} {message}\n")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="promptline-gateway")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--profile")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--no-auth", action="store_true")
    parser.add_argument("--log-max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--log-backups", type=int, default=DEFAULT_BACKUPS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM; returns the exit code."""
    from promptline.config import load_settings
    from promptline.core.errors import PromptLineError
    from promptline.gateway.logs import announce, configure_logging

    args = _arguments(argv)
    files = GatewayFiles(args.home)
    log = RotatingLog(
        files.log_file,
        max_bytes=args.log_max_bytes,
        backups=args.log_backups,
        redirect_fds=True,
    )
    sys.stdout = sys.stderr = log
    pid = os.getpid()
    started = time.monotonic()
    starting = f"starting the PromptLine gateway (pid {pid}, home {args.home})"
    try:
        settings = load_settings(args.config, profile=args.profile)
    except PromptLineError as exc:
        say(starting)
        _say_error(say, exc)
        files.clear(pid=pid)
        say(f"stopped (pid {pid}, up {time.monotonic() - started:.1f} s)")
        return 1
    # From here on every line, the gateway's own included, is in the configured format.
    configure_logging(settings.logging, log)
    announce(starting)
    try:
        return _serve(args, files, pid, settings)
    finally:
        files.clear(pid=pid)
        announce(f"stopped (pid {pid}, up {time.monotonic() - started:.1f} s)")


def _say_error(line: Callable[[str], None], exc: PromptLineError) -> None:
    line(f"error: {exc.message}")
    if exc.hint:
        line(f"hint: {exc.hint}")


def _serve(args: argparse.Namespace, files: GatewayFiles, pid: int, settings: Settings) -> int:

    from promptline.core.errors import PromptLineError
    from promptline.gateway.logs import announce
    from promptline.gateway.server import run_serving, serve

    def ready(info: ServeInfo) -> None:
        base = info.urls[0]
        files.write_state(
            {
                "pid": pid,
                "url": base,
                "urls": info.urls,
                "host": info.host,
                "port": info.port,
                "websocket_port": info.websocket_port,
                "auth": not args.no_auth,
                "started_at": datetime.now(UTC).isoformat(),
                # The key itself is in admin.key (written by `serve`), never in this log:
                # logs are kept, rotated, shipped.
                "admin_key_new": info.admin_key_file is not None,
                "config": str(args.config) if args.config else None,
                "profile": args.profile,
            }
        )
        announce(
            f"serving on {base} (REST {base}/v1, WebSocket {base.replace('http', 'ws', 1)}/v1/ws)"
        )
        for extra in info.urls[1:]:
            announce(f"also serving the WebSocket on {extra}")
        if info.admin_key_file is not None:
            announce(
                f"an admin API key was made on this first start: it is in {info.admin_key_file}"
            )
        elif info.admin_key is not None:
            announce(
                "an admin API key was made on this first start but could not be kept; "
                "make another with `promptline keys create --role admin`"
            )
        if args.no_auth:
            announce("authentication is off (loopback only)")

    try:
        run_serving(
            lambda: serve(
                settings,
                host=args.host,
                port=args.port,
                auth=False if args.no_auth else None,
                on_ready=ready,
            )
        )
    except PromptLineError as exc:
        _say_error(announce, exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
