"""`promptline start`/`status`/`restart`/`stop`/`logs` against a real gateway process on a free
port, with the PromptLine home in a temporary folder."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promptline.cli.daemon_files import GatewayFiles, alive
from promptline.cli.logs_cmd import last_lines
from promptline.cli.main import app
from promptline.cli.rotating_log import RotatingLog

WAIT_SECS = 10.0
UNSET = {"PROMPTLINE_API_KEY": None, "PROMPTLINE_URL": None}


def cli(*args: str, code: int | None = 0) -> Result:
    result = CliRunner().invoke(app, list(args), env=UNSET, catch_exceptions=False)
    if code is not None:
        assert result.exit_code == code, result.output
    return result


@pytest.fixture
def files(tmp_path: Path) -> Iterator[GatewayFiles]:
    """The daemon files of the test's home; a gateway left running by a failed test is killed."""
    gateway = GatewayFiles(tmp_path / "home")
    yield gateway
    pid = gateway.read_pid()
    if pid is not None and alive(pid):
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + WAIT_SECS
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def served_port(files: GatewayFiles) -> int:
    state = files.read_state()
    assert state is not None
    return int(state["port"])


def test_start_status_second_start_restart_stop_logs_round_trip(files: GatewayFiles) -> None:
    started = cli("start", "--port", "0")

    pid = files.read_pid()
    assert pid is not None
    assert alive(pid)
    port = served_port(files)
    assert f"http://localhost:{port}" in started.output
    key = files.read_admin_key()
    assert key is not None
    assert f"export PROMPTLINE_API_KEY={key}" in started.output
    assert files.admin_key_file.stat().st_mode & 0o777 == 0o600
    assert key not in files.log_file.read_text()  # the secret is not in the log

    status = cli("status")
    assert f"pid {pid}" in status.output
    assert "ready: database ok" in status.output
    assert "sessions    0" in status.output
    assert f"from {files.admin_key_file}" in status.output
    report = json.loads(cli("status", "--json").output)
    assert report["running"]
    assert report["ready"]
    assert report["exit_code"] == 0
    assert report["sessions"]["value"] == 0
    assert "scripted" in report["providers"]

    # A URL given explicitly never gets the local admin key; a key given for it is used.
    remote = cli("status", "--url", f"http://127.0.0.1:{port}")
    assert "sessions    unknown (no API key: pass --key or set PROMPTLINE_API_KEY)" in remote.output
    assert (
        "sessions    0" in cli("status", "--url", f"http://127.0.0.1:{port}", "--key", key).output
    )

    second = cli("start", code=1)
    assert f"already running on http://localhost:{port} (pid {pid}" in second.output

    restarted = cli("restart")
    new_pid = files.read_pid()
    assert new_pid is not None
    assert new_pid != pid
    assert not alive(pid)
    assert served_port(files) == port  # the port it had is kept
    assert key not in restarted.output  # only the first start makes (and shows) a key
    assert f"export PROMPTLINE_API_KEY=$(cat {files.admin_key_file})" in restarted.output

    stopped = cli("stop")
    assert f"stopped (pid {new_pid}" in stopped.output
    assert not alive(new_pid)
    assert not files.pid_file.exists()
    assert not files.state_file.exists()

    assert "not running" in cli("status", code=3).output
    assert "no PromptLine gateway is running" in cli("stop").output
    log = cli("logs", "-n", "100").output
    assert f"serving on http://localhost:{port}" in log
    assert f"stopped (pid {new_pid}" in log
    # An access line per request: status's own, with the id of the key it read.
    key_id = key[len("pl_") : len("pl_key_") + 26]  # pl_<key id>_<secret>
    assert "INFO promptline.access: GET /healthz 200 " in log
    assert re.search(rf"GET /v1/sessions 200 \d+\.\d ms {key_id}$", log, re.MULTILINE)
    assert key not in log
    assert len(cli("logs", "-n", "2").output.splitlines()) == 2


@pytest.mark.slow
def test_with_logging_format_json_every_line_of_the_gateway_log_is_a_json_object(
    files: GatewayFiles,
) -> None:
    files.home.mkdir(parents=True)
    (files.home / "config.yaml").write_text("logging:\n  format: json\n")

    cli("start", "--port", "0")
    key = files.read_admin_key()
    assert key is not None
    cli("status")
    cli("stop")

    text = files.log_file.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    messages = [entry["message"] for entry in entries]
    assert messages[0].startswith("starting the PromptLine gateway (pid ")
    assert any(m.startswith("serving on http://localhost:") for m in messages)
    assert messages[-1].startswith("stopped (pid ")
    access = {
        (e["method"], e["path"], e["status"], e["key_id"])
        for e in entries
        if e["logger"] == "promptline.access"
    }
    key_id = key[len("pl_") : len("pl_key_") + 26]
    assert {("GET", "/healthz", 200, "-"), ("GET", "/v1/sessions", 200, key_id)} <= access
    assert key not in text


def test_a_stale_pid_file_is_cleaned_up(files: GatewayFiles) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    files.home.mkdir(parents=True)
    files.pid_file.write_text(f"{gone.pid}\n")

    assert "no PromptLine gateway is running" in cli("stop").output
    assert not files.pid_file.exists()
    files.pid_file.write_text("not a pid\n")
    assert cli("status", code=3)
    assert not files.pid_file.exists()


def test_a_gateway_that_cannot_start_is_reported_with_its_log(files: GatewayFiles) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = cli("start", "--port", str(port), code=1)

    assert "the gateway stopped while starting (exit code 1)" in result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert not files.pid_file.exists()


def test_a_broken_config_is_reported_before_anything_starts(files: GatewayFiles) -> None:
    files.home.mkdir(parents=True)
    (files.home / "config.yaml").write_text("gateway:\n  port: eighty\n")

    result = cli("start", code=1)

    assert "gateway.port" in result.output
    assert not files.pid_file.exists()
    assert not files.log_file.exists()


@contextlib.contextmanager
def stubborn_process() -> Iterator[subprocess.Popen[str]]:
    """A process that ignores SIGTERM and looks like PromptLine's (its command line says so)."""
    code = (
        "import signal, sys, time  # promptline\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        yield process
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_stop_waits_boundedly_and_kills_only_with_force(files: GatewayFiles) -> None:
    with stubborn_process() as process:
        files.home.mkdir(parents=True)
        files.pid_file.write_text(f"{process.pid}\n")

        refused = cli("stop", "--timeout", "0.3", code=1)
        assert "still running after 0.3 s" in refused.output
        assert "--force" in refused.output
        assert process.poll() is None

        killed = cli("stop", "--timeout", "0.3", "--force")
        assert f"killed (pid {process.pid})" in killed.output
        assert not alive(process.pid)
        assert not files.pid_file.exists()


def test_logs_follow_prints_new_lines_across_a_rotation(files: GatewayFiles) -> None:
    log = RotatingLog(files.log_file, max_bytes=200, backups=2)
    log.write("before\n")
    follower = subprocess.Popen(
        [str(Path(sys.executable).parent / "promptline"), "logs", "-f", "-n", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    printed, pumping = lines_of(follower)
    try:
        seen = read_until(printed, "before")
        for n in range(20):  # 20 x 15 bytes: the log rotates on the way
            log.write(f"line {n:03d} -----\n")
        seen += read_until(printed, "line 019")
    finally:
        follower.terminate()
        follower.wait(timeout=WAIT_SECS)
        log.close()
        pumping.join(timeout=WAIT_SECS)
        assert follower.stdout is not None
        follower.stdout.close()

    numbers = [line for line in seen if line.startswith("line ")]
    assert numbers == [f"line {n:03d} -----" for n in range(20)]
    assert files.log_file.with_name("gateway.log.1").exists()


def lines_of(process: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The lines ``process`` prints, as they come (read by a thread)."""
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def read_until(lines: queue.Queue[str], wanted: str) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + WAIT_SECS
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        seen.append(line)
        if wanted in line:
            return seen
    raise AssertionError(f"{wanted!r} not printed; saw {seen}")


def test_the_log_rotates_by_size_and_keeps_a_few_backups(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "gateway.log"
    log = RotatingLog(path, max_bytes=100, backups=2)
    for n in range(30):
        log.write(f"line {n:02d} of the log\n")  # 19 bytes: 5 a file
    log.close()

    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["gateway.log", "gateway.log.1", "gateway.log.2"]
    assert all(p.stat().st_size <= 100 for p in path.parent.iterdir())
    assert last_lines(path, 12, backups=2) == [f"line {n:02d} of the log" for n in range(18, 30)]


@pytest.mark.skipif(shutil.which("ps") is None, reason="needs ps")
def test_without_proc_ps_tells_a_live_gateway_from_a_gone_one() -> None:
    from promptline.cli.daemon_files import _ps_says_promptline

    with stubborn_process() as process:
        assert _ps_says_promptline(process.pid)
    gone = subprocess.Popen([sys.executable, "-c", "pass  # promptline"])
    gone.wait()
    assert not _ps_says_promptline(gone.pid)
