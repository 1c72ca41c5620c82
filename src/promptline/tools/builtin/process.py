"""A child process for a tool: run in its own process group under resource limits, its output
captured (head and tail when huge) and streamed, and the whole group killed when the call
ends, times out or is cancelled, so nothing it started outlives the call."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import math
import os
import resource
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "OutputCapture",
    "ProcessLimits",
    "ProcessResult",
    "minimal_env",
    "run_process",
]

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DRAIN_SECS = 2.0
"""How long output is still read after the group was killed: only a process that left the
group (``setsid``) and kept the pipe open can make this wait, and it is not waited for longer."""


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    """Kernel limits for a child process: address space and CPU time (None: not limited)."""

    memory_mb: int | None = None
    cpu_secs: int | None = None

    @classmethod
    def from_config(cls, limits: Mapping[str, Any], wall_secs: float | None) -> ProcessLimits:
        """Limits from ``security.resource_limits`` (``memory_mb``, ``cpu_percent``) and the
        call's time limit.

        RLIMIT_CPU is a budget of CPU seconds, not a share, so ``cpu_percent`` becomes that
        share of the wall-clock limit: 80 % of 300 s is 240 CPU seconds per process.
        """
        memory = limits.get("memory_mb")
        percent = limits.get("cpu_percent")
        cpu: int | None = None
        if wall_secs is not None and math.isfinite(wall_secs):
            share = 100.0 if percent is None else float(percent)
            cpu = max(1, math.ceil(wall_secs * share / 100.0))
        return cls(memory_mb=int(memory) if memory else None, cpu_secs=cpu)

    def shell_prefix(self) -> str:
        """``ulimit`` commands that apply these limits in a POSIX shell, then run ``$1``.

        The limits are set by the child's own shell rather than in a ``preexec_fn``, which
        Python documents as unsafe in a process with threads (tools run in worker threads).
        Each limit is clamped to the hard limit this process already has, since an
        unprivileged process may lower a limit but never raise it.
        """
        steps: list[str] = []
        if self.memory_mb is not None:
            kib = _clamp(resource.RLIMIT_AS, self.memory_mb * 1024 * 1024) // 1024
            steps.append(f"ulimit -v {kib}")
        if self.cpu_secs is not None:
            hard = _clamp(resource.RLIMIT_CPU, self.cpu_secs + 1)
            soft = min(self.cpu_secs, hard)
            # The soft limit sends SIGXCPU (the shell reports it), the hard one a second later
            # kills. Soft first: a hard limit below the current soft one is refused.
            steps += [f"ulimit -S -t {soft}", f"ulimit -H -t {hard}"]
        steps.append('exec /bin/sh -c "$1"')
        return " && ".join(steps)


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How a child process ended: its exit code (negative: killed by that signal; None when
    it was killed for running out of time) and its combined output."""

    exit_code: int | None
    output: str
    omitted_chars: int
    timed_out: bool


class OutputCapture:
    """Keeps the head and the tail of a stream of text, counting what was left out between
    them, so a command printing gigabytes costs a bounded amount of memory."""

    def __init__(self, limit: int) -> None:
        self._head_limit = limit * 3 // 4
        self._tail_limit = limit - self._head_limit
        self._head: list[str] = []
        self._head_len = 0
        self._tail = ""
        self.total = 0

    def add(self, text: str) -> None:
        """Append ``text`` to what was captured."""
        self.total += len(text)
        room = self._head_limit - self._head_len
        if room > 0:
            taken = text[:room]
            self._head.append(taken)
            self._head_len += len(taken)
            text = text[room:]
        if text:
            self._tail = (self._tail + text)[-self._tail_limit :] if self._tail_limit else ""

    @property
    def omitted(self) -> int:
        """How many characters are missing between head and tail."""
        return self.total - self._head_len - len(self._tail)

    def text(self) -> str:
        """The captured text, with a marker where characters were left out."""
        head = "".join(self._head)
        if self.omitted:
            return f"{head}\n[... {self.omitted} characters omitted ...]\n{self._tail}"
        return head + self._tail


def minimal_env(workspace: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a tool's process gets: a PATH, HOME set to the workspace and a UTF-8
    locale, and nothing else of the server's (its API keys and tokens stay out)."""
    env = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": str(workspace),
        "LANG": "C.UTF-8",
    }
    if extra:
        env.update(extra)
    return env


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    time_limit: float | None = None,
    max_output_chars: int = 100_000,
    on_output: Callable[[str], None] | None = None,
) -> ProcessResult:
    """Run ``argv`` with stdin closed and stdout+stderr combined, in a new session (so it and
    everything it starts form one process group).

    ``on_output`` receives the output as it arrives. When ``time_limit`` passes the group is
    killed and the result says ``timed_out``. When the calling task is cancelled the group is
    killed and `asyncio.CancelledError` propagates. When the process exits, whatever it left
    running in its group is killed too. `OSError` (such as the program not existing) is
    raised as is.
    """
    loop = asyncio.get_running_loop()
    capture = OutputCapture(max_output_chars)
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(loop, capture, on_output),
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    timed_out = False
    try:
        try:
            async with asyncio.timeout(time_limit):
                await asyncio.shield(protocol.exited)
        except TimeoutError:
            timed_out = True
    finally:
        _kill_group(transport.get_pid())
        await _settle(transport, protocol)
    return ProcessResult(
        exit_code=None if timed_out else transport.get_returncode(),
        output=capture.text(),
        omitted_chars=capture.omitted,
        timed_out=timed_out,
    )


class _Protocol(asyncio.SubprocessProtocol):
    """Receives the output as it comes and tells when the process exited and when its
    output ended (which can be later: a process it started may still hold the pipe)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capture: OutputCapture,
        on_output: Callable[[str], None] | None,
    ) -> None:
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._capture = capture
        self._on_output = on_output
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self._emit(self._decoder.decode(data if isinstance(data, bytes) else data.encode()))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._emit(self._decoder.decode(b"", final=True))

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        # Called once the process has exited and every pipe is closed.
        if not self.closed.done():
            self.closed.set_result(None)

    def _emit(self, text: str) -> None:
        if text:
            self._capture.add(text)
            if self._on_output is not None:
                self._on_output(text)


def _kill_group(pgid: int) -> None:
    # The group outlives its leader while any member lives, so its id cannot be reused by
    # another group before the last member is gone; an empty group is simply not found.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _settle(transport: asyncio.SubprocessTransport, protocol: _Protocol) -> None:
    """Wait for the killed leader and the end of its output, even while being cancelled,
    then release the pipes."""
    waiting = asyncio.ensure_future(_ended(protocol))
    try:
        await asyncio.shield(waiting)
    except asyncio.CancelledError:
        # Cancelled again while cleaning up: finish anyway (it is quick), then pass it on.
        await waiting
        raise
    finally:
        transport.close()


async def _ended(protocol: _Protocol) -> None:
    await protocol.exited
    # Every process of the group is dead, so the output ends at once, unless one left the
    # group (setsid) with the pipe: that one is not waited for long.
    await asyncio.wait({protocol.closed}, timeout=DRAIN_SECS)


def _clamp(which: int, wanted: int) -> int:
    _, hard = resource.getrlimit(which)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
