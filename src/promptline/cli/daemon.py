"""``promptline start``, ``stop`` and ``restart``: the gateway as a resident process of one
PromptLine home, with a pid file, a rotating log and a bounded wait for each change."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptline.cli.daemon_files import GatewayFiles, alive, health_url, terminate
from promptline.cli.runtime import CliOptions, console, fail, friendly_errors, load_settings

if TYPE_CHECKING:
    from promptline.config.settings import Settings

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "StartOptions",
    "gateway_files",
    "restart",
    "start",
    "stop",
    "stop_timeout",
]

DEFAULT_START_TIMEOUT = 30.0
POLL_SECONDS = 0.1
DOT_SECONDS = 0.5
KILL_WAIT_SECONDS = 5.0
STOP_MARGIN_SECONDS = 10.0
LOG_LINES_ON_FAILURE = 20


@dataclass(frozen=True)
class StartOptions:
    """How to start the gateway (None: the config's value)."""

    host: str | None = None
    port: int | None = None
    no_auth: bool = False
    timeout: float = DEFAULT_START_TIMEOUT


def gateway_files() -> GatewayFiles:
    """The daemon files of the current PromptLine home."""
    from promptline.config import promptline_home

    return GatewayFiles(promptline_home())


def stop_timeout(settings: Settings) -> float:
    """How long a graceful stop may take: open connections get ``shutdown_timeout_secs``,
    then runs get as long again to reach a safe point, plus a margin to flush and exit."""
    return 2 * float(settings.agent.shutdown_timeout_secs) + STOP_MARGIN_SECONDS


# -- start ------------------------------------------------------------------------------------


def start(options: CliOptions, start_options: StartOptions) -> None:
    """Start the gateway in the background and wait until it answers ``/healthz``."""
    with friendly_errors():
        _start(options, start_options)


def _start(options: CliOptions, start_options: StartOptions) -> None:
    files = gateway_files()
    load_settings(options)  # a broken config is reported here, not only in the log
    running = files.running_pid()
    if running is not None:
        _refuse_second(files, running)
    if not files.claim():
        _refuse_second(files, files.read_pid())
    try:
        process = _spawn(options, start_options, files)
    except BaseException:
        files.clear()
        raise
    files.write_pid(process.pid)
    state = _wait_until_serving(files, process, start_options.timeout)
    # It runs on its own from now on; this process must not wait for it (or warn about it).
    process.returncode = 0
    _print_started(files, state)


def _refuse_second(files: GatewayFiles, pid: int | None) -> None:
    state = files.read_state() or {}
    where = f" on {state['url']}" if state.get("url") else ""
    fail(
        f"a PromptLine gateway is already running{where} (pid {pid}, home {files.home})",
        hint="`promptline status` shows it; `promptline restart` or `promptline stop` first",
    )


def _spawn(
    options: CliOptions, start_options: StartOptions, files: GatewayFiles
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "promptline.cli.detached_serve", "--home", str(files.home)]
    if options.config is not None:
        command += ["--config", str(Path(options.config).expanduser().absolute())]
    if options.profile:
        command += ["--profile", options.profile]
    if start_options.host:
        command += ["--host", start_options.host]
    if start_options.port is not None:
        command += ["--port", str(start_options.port)]
    if start_options.no_auth:
        command.append("--no-auth")
    from promptline.storage.files import open_private

    for stale in (files.state_file,):
        stale.unlink(missing_ok=True)
    # Until the process has its own rotating writer (and if the interpreter dies before),
    # its output is appended to the log as it is.
    with open(open_private(files.log_file, os.O_WRONLY | os.O_APPEND), "ab") as early_output:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=early_output,
            stderr=early_output,
            start_new_session=True,
            close_fds=True,
        )


def _wait_until_serving(
    files: GatewayFiles, process: subprocess.Popen[bytes], timeout: float
) -> dict[str, Any]:
    err = console(stderr=True)
    err.print(f"starting the PromptLine gateway (pid {process.pid})", end="")
    progress = _Dots(err.file)
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            progress.end()
            files.clear(pid=process.pid)
            _show_log_tail(files)
            fail(
                f"the gateway stopped while starting (exit code {code})",
                hint=f"the lines above are the end of its log ({files.log_file}); "
                "`promptline serve` runs it in the foreground",
            )
        state = files.read_state()
        if state and state.get("pid") == process.pid and _answers(str(state["url"])):
            progress.end(" ready")
            return state
        if time.monotonic() > deadline:
            progress.end()
            fail(
                f"the gateway (pid {process.pid}) did not answer /healthz within "
                f"{timeout:g} s; it is still starting, or stuck",
                hint="`promptline logs` shows what it did; `promptline stop` stops it",
            )
        progress.tick()
        time.sleep(POLL_SECONDS)


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(health_url(url) + "/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _print_started(files: GatewayFiles, state: dict[str, Any]) -> None:
    out = console()
    base = str(state["url"])
    out.print(f"PromptLine gateway running on [bold]{base}[/] (pid {state['pid']})", markup=True)
    out.print(f"  REST      {base}/v1   (OpenAPI: {base}/openapi.json, docs: {base}/docs)")
    out.print(f"  WebSocket {base.replace('http', 'ws', 1)}/v1/ws")
    for extra in state.get("urls", [])[1:]:
        out.print(f"  WebSocket {extra}")
    out.print(f"  health    {base}/healthz, {base}/readyz")
    out.print(f"  log       {files.log_file}")
    from promptline.cli.serve_cmd import print_kept_admin_key, print_new_admin_key

    key = files.read_admin_key() if state.get("admin_key_new") else None
    if key:
        print_new_admin_key(key, files.admin_key_file, base)
    elif state.get("auth", True):
        print_kept_admin_key(base)
    if not state.get("auth", True):
        out.print("[yellow]authentication is off (loopback only)[/]", markup=True)
    out.print(
        "`promptline status` checks it, `promptline logs -f` follows its log, "
        "`promptline stop` stops it.",
        style="dim",
    )


def _show_log_tail(files: GatewayFiles) -> None:
    from promptline.cli.logs_cmd import last_lines

    err = console(stderr=True)
    for line in last_lines(files.log_file, LOG_LINES_ON_FAILURE):
        err.print(f"  | {line}", markup=False, highlight=False)


# -- stop -------------------------------------------------------------------------------------


def stop(options: CliOptions, *, timeout: float | None, force: bool) -> bool:
    """Stop the gateway gracefully (SIGTERM), waiting at most ``timeout`` seconds (default:
    `stop_timeout`); with ``force``, SIGKILL it after that. True when one was stopped."""
    files = gateway_files()
    out = console()
    pid = files.running_pid()
    if pid is None:
        out.print(f"no PromptLine gateway is running (home {files.home})")
        return False
    if timeout is None:
        timeout = _configured_stop_timeout(options)
    err = console(stderr=True)
    err.print(f"stopping the PromptLine gateway (pid {pid})", end="")
    progress = _Dots(err.file)
    began = time.monotonic()
    terminate(pid)
    if _wait_gone(pid, timeout, progress.tick):
        progress.end()
        files.clear(pid=pid)
        out.print(f"stopped (pid {pid}, in {time.monotonic() - began:.1f} s)")
        return True
    progress.end()
    if not force:
        fail(
            f"the gateway (pid {pid}) is still running after {timeout:g} s: runs may still be "
            "finishing",
            hint="wait and run `promptline stop` again, or `promptline stop --force` to kill "
            "it (runs in flight then resume from their last completed step on the next start)",
        )
    terminate(pid, force=True)
    if not _wait_gone(pid, KILL_WAIT_SECONDS, lambda: None):
        fail(f"the gateway (pid {pid}) survived SIGKILL", hint=f"look at it: ps -p {pid}")
    files.clear(pid=pid)
    out.print(f"killed (pid {pid}) after {timeout:g} s without a graceful stop")
    return True


def _configured_stop_timeout(options: CliOptions) -> float:
    from promptline.core.errors import ConfigError

    try:
        return stop_timeout(load_settings(options))
    except ConfigError:
        from promptline.config.settings import AgentSettings

        return 2 * float(AgentSettings().shutdown_timeout_secs) + STOP_MARGIN_SECONDS


def _wait_gone(pid: int, timeout: float, tick: Callable[[], None]) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        tick()
        time.sleep(POLL_SECONDS)
    return True


# -- restart ----------------------------------------------------------------------------------


def restart(
    options: CliOptions, start_options: StartOptions, *, timeout: float | None, force: bool
) -> None:
    """Stop the gateway (if it runs) and start it again; the host, port and auth it ran with
    are kept unless given anew."""
    previous = gateway_files().read_state() or {}
    stop(options, timeout=timeout, force=force)
    if previous:
        start_options = StartOptions(
            host=start_options.host or previous.get("host"),
            port=start_options.port if start_options.port is not None else previous.get("port"),
            no_auth=start_options.no_auth or previous.get("auth") is False,
            timeout=start_options.timeout,
        )
    start(options, start_options)


class _Dots:
    """Progress on stderr: a dot every half second while waiting."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._next = time.monotonic() + DOT_SECONDS

    def tick(self) -> None:
        if time.monotonic() >= self._next:
            self._stream.write(".")
            self._stream.flush()
            self._next += DOT_SECONDS

    def end(self, text: str = "") -> None:
        self._stream.write(text + "\n")
        self._stream.flush()
