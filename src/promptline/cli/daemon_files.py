"""Where a gateway started with ``promptline start`` keeps its files under the PromptLine home
(pid file, log, what it listens on, the first admin key), and whether its process is alive."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptline.config.home import ADMIN_KEY_FILE_NAME

__all__ = [
    "GatewayFiles",
    "alive",
    "health_url",
    "terminate",
    "write_replacing",
]

PID_FILE = "gateway.pid"
STATE_FILE = "gateway.json"
ADMIN_KEY_FILE = ADMIN_KEY_FILE_NAME
LOG_DIR = "logs"
LOG_FILE = "gateway.log"


@dataclass(frozen=True)
class GatewayFiles:
    """The files of the resident gateway of one PromptLine home.

    ``gateway.pid`` holds the process id (written by ``promptline start``), ``gateway.json``
    what the running process listens on (written by it once it serves), ``admin.key`` the
    admin key made on the first start (written by ``serve``), ``logs/gateway.log`` its
    output. Each is readable by its owner only (0600, in folders of mode 0700).
    """

    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / PID_FILE

    @property
    def state_file(self) -> Path:
        return self.home / STATE_FILE

    @property
    def admin_key_file(self) -> Path:
        return self.home / ADMIN_KEY_FILE

    @property
    def log_file(self) -> Path:
        return self.home / LOG_DIR / LOG_FILE

    def read_pid(self) -> int | None:
        """The pid in the pid file, or None when there is none (or it is not a number)."""
        try:
            text = self.pid_file.read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def running_pid(self) -> int | None:
        """The pid of the live gateway process, else None (a stale pid file is removed)."""
        pid = self.read_pid()
        if pid is None:
            if self.pid_file.exists():
                self.clear()
            return None
        if alive(pid):
            return pid
        self.clear()
        return None

    def claim(self) -> bool:
        """Create the pid file (with this process's pid until the gateway's is known); False
        when it exists already: another gateway runs, or another start is under way."""
        from promptline.storage.files import PRIVATE_FILE_MODE, private_dir

        private_dir(self.home)
        try:
            fd = os.open(self.pid_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(f"{os.getpid()}\n")
        return True

    def write_pid(self, pid: int) -> None:
        write_replacing(self.pid_file, f"{pid}\n")

    def read_state(self) -> dict[str, Any] | None:
        """What the running gateway wrote about itself (pid, urls, ...), if anything."""
        try:
            value = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def write_state(self, state: dict[str, Any]) -> None:
        write_replacing(self.state_file, json.dumps(state, indent=2) + "\n")

    def read_admin_key(self) -> str | None:
        try:
            key = self.admin_key_file.read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError, PermissionError):
            return None
        return key or None

    def clear(self, *, pid: int | None = None) -> None:
        """Remove the pid and state files (only if they still name ``pid``, when given)."""
        if pid is not None and self.read_pid() not in (pid, None):
            return
        for path in (self.pid_file, self.state_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def alive(pid: int) -> bool:
    """True while ``pid`` is a running process that looks like PromptLine's (a pid reused by
    another program, or a zombie, counts as gone)."""
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it is our own child that has exited (tests start gateways in-process).
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and not ours to judge
    proc = Path("/proc") / str(pid)
    if not proc.is_dir():
        return _ps_says_promptline(pid)
    try:
        stat = (proc / "stat").read_text(encoding="ascii", errors="replace")
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""
    return state != "Z" and b"promptline" in cmdline


def _ps_says_promptline(pid: int) -> bool:
    """Without /proc (macOS, the BSDs): ask ps for the command line; if ps cannot tell,
    the process counts as alive (refusing a start is safer than running two)."""
    import subprocess

    try:
        done = subprocess.run(
            ["ps", "-p", str(pid), "-o", "stat=", "-o", "command="],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return True
    if done.returncode != 0:
        return not done.stdout and bool(done.stderr)  # no such process: exit 1, no output
    line = done.stdout.strip()
    return not line.startswith("Z") and "promptline" in line


def terminate(pid: int, *, force: bool = False) -> None:
    """Send SIGTERM (a graceful stop), or SIGKILL when ``force``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)


def health_url(base: str) -> str:
    """``base`` reachable from this machine: a wildcard bind address becomes loopback."""
    for wildcard, loopback in (("//0.0.0.0:", "//127.0.0.1:"), ("//[::]:", "//[::1]:")):
        base = base.replace(wildcard, loopback)
    return base.rstrip("/")


def write_replacing(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a reader sees the old file or the new one),
    readable by its owner only."""
    from promptline.storage.files import write_atomically

    write_atomically(path, text.encode("utf-8"))
