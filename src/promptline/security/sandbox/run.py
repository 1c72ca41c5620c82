"""A child process in its own process group: its output captured (head and tail when huge)
and streamed, the whole group killed when it ends, times out, passes an output bound or is
cancelled, so nothing it started outlives it. Every sandbox runs its commands with it."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from promptline.core.output_capture import OutputCapture

__all__ = ["ProcessResult", "kill_tree", "run_process"]

DRAIN_SECS = 2.0
"""How long output is still read after the group was killed: only a process that left the
group (``setsid``) and kept the pipe open can make this wait, and it is not waited for longer."""


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How a child process ended: its exit code (negative: killed by that signal; None when
    it was killed for running out of time) and its combined output."""

    exit_code: int | None
    output: str
    omitted_chars: int
    timed_out: bool
    output_cut_at: int | None = None
    """Set when the output passed ``max_output_bytes``: the bytes kept (the process was
    killed there)."""


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    time_limit: float | None = None,
    max_output_chars: int = 100_000,
    on_output: Callable[[str], None] | None = None,
    stdin: bytes | None = None,
    max_output_bytes: int | None = None,
    pass_fds: Sequence[int] = (),
) -> ProcessResult:
    """Run ``argv`` with stdout+stderr combined, in a new session (so it and everything it
    starts form one process group); its stdin is ``stdin``, or closed.

    ``on_output`` receives the output as it arrives. When ``time_limit`` passes the process
    and its descendants are killed and the result says ``timed_out``. When the output passes
    ``max_output_bytes`` they are killed too and the result says where it was cut
    (``output_cut_at``). When the calling task is cancelled they are killed and
    `asyncio.CancelledError` propagates. When the process exits, whatever it left running in
    its group is killed too. `OSError` (such as the program not existing) is raised as is.
    """
    loop = asyncio.get_running_loop()
    capture = OutputCapture(max_output_chars)
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(loop, capture, on_output, max_output_bytes),
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    if stdin is not None:
        pipe = transport.get_pipe_transport(0)
        if isinstance(pipe, asyncio.WriteTransport):
            pipe.write(stdin)
            pipe.write_eof()
    timed_out = False
    try:
        try:
            async with asyncio.timeout(time_limit):
                await asyncio.wait(
                    {asyncio.shield(protocol.exited), asyncio.shield(protocol.overflow)},
                    return_when=asyncio.FIRST_COMPLETED,
                )
        except TimeoutError:
            timed_out = True
    finally:
        if transport.get_returncode() is None:
            kill_tree(transport.get_pid())
        _kill_group(transport.get_pid())
        await _settle(transport, protocol)
    cut = protocol.overflow.done()
    return ProcessResult(
        exit_code=None if timed_out else transport.get_returncode(),
        output=capture.text(),
        omitted_chars=capture.omitted,
        timed_out=timed_out and not cut,
        output_cut_at=max_output_bytes if cut else None,
    )


class _Protocol(asyncio.SubprocessProtocol):
    """Receives the output as it comes and tells when the process exited and when its
    output ended (which can be later: a process it started may still hold the pipe)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capture: OutputCapture,
        on_output: Callable[[str], None] | None,
        max_bytes: int | None = None,
    ) -> None:
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.overflow: asyncio.Future[None] = loop.create_future()
        """Done once the output passed ``max_bytes`` (what came after was dropped)."""
        self._capture = capture
        self._on_output = on_output
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._room = max_bytes

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data if isinstance(data, bytes) else data.encode()
        if self._room is not None:
            if len(chunk) > self._room:
                chunk = chunk[: self._room]
                if not self.overflow.done():
                    self.overflow.set_result(None)
            self._room -= len(chunk)
        self._emit(self._decoder.decode(chunk))

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


def kill_tree(root: int) -> None:
    """SIGKILL ``root`` and every process below it, found through /proc, stopping them first
    so that none forks a new one meanwhile: a descendant that left the group (``setsid``) is
    found as long as its line of parents leads to ``root`` (the sandbox's launcher adopts
    orphans to keep it so). Without /proc, only ``root`` is killed. (The launcher's own
    `launcher.kill_tree`, standard library only, does the walk.)"""
    from promptline.security.sandbox import launcher

    launcher.kill_tree(root)
    with contextlib.suppress(OSError):
        os.kill(root, signal.SIGKILL)


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
