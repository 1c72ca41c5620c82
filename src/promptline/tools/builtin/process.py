"""A child process for a tool: run in its own process group under resource limits, its output
captured (head and tail when huge), streamed and saved to a bounded file, and the whole group
killed when the call ends, times out or is cancelled, so nothing it started outlives the call."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from promptline.storage.files import PRIVATE_FILE_MODE, private_dir
from promptline.tools.base import ToolError
from promptline.tools.builtin.file_read import MAX_READ_BYTES
from promptline.tools.builtin.workspace import resolve_in_workspace, workspace_root
from promptline.tools.executor import OutputCapture

__all__ = [
    "MAX_OUTPUT_FILE_BYTES",
    "OUTPUT_FOLDER",
    "OutputFile",
    "ProcessResult",
    "kill_tree",
    "minimal_env",
    "run_process",
]

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DRAIN_SECS = 2.0
"""How long output is still read after the group was killed: only a process that left the
group (``setsid``) and kept the pipe open can make this wait, and it is not waited for longer."""

OUTPUT_FOLDER = ".promptline/tool-output"
"""Where, in the workspace, the output files of commands are kept."""

MAX_OUTPUT_FILE_BYTES = MAX_READ_BYTES
"""The most an output file holds: as much as ``file_read`` reads, so the model can page
through any of them. A command that prints more has its head and tail kept, and a line in
between says how much was cut; a runaway command cannot fill the disk."""

OUTPUT_FILE_TAIL_BYTES = 1024 * 1024
"""How much of the end of a cut output its file keeps (the only part held in memory)."""


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


class OutputFile:
    """The whole output of one command in a file of the workspace, up to ``limit`` bytes.

    Past the limit the file keeps the first bytes and, once closed, the last ``tail`` ones
    around a line saying how many were cut; only that tail is held in memory. A write that
    fails (a full disk) stops the writing and is kept in `error`, never raised: the command
    and its answer go on without the file.
    """

    def __init__(
        self,
        file: BinaryIO,
        name: str,
        *,
        limit: int = MAX_OUTPUT_FILE_BYTES,
        tail: int = OUTPUT_FILE_TAIL_BYTES,
    ) -> None:
        self.name = name
        """The file's path relative to the workspace root, with ``/``."""
        self.total = 0
        """Bytes of output written to the file or cut from it."""
        self.error: str | None = None
        self._file = file
        self._tail_limit = min(tail, limit // 2)
        # Room for the line that says what was cut.
        self._head_limit = max(0, limit - self._tail_limit - 160)
        self._head = 0
        self._head_open = True
        self._tail = bytearray()
        self._closed = False
        self._cut = 0

    @classmethod
    def create(
        cls,
        workspace: Path,
        call_id: str,
        *,
        limit: int = MAX_OUTPUT_FILE_BYTES,
        tail: int = OUTPUT_FILE_TAIL_BYTES,
    ) -> OutputFile:
        """A new file in the workspace's `OUTPUT_FOLDER`, named after ``call_id``.

        The name keeps only letters, digits, ``_`` and ``-`` of the id, and gets ``-2``,
        ``-3``... when taken (ids may repeat across runs): an existing file is never
        reopened, and the folder may not lead out of the workspace (`ToolError`). The folder
        gets a ``.gitignore`` so that ``git add --all`` leaves the files out.
        """
        folder = resolve_in_workspace(workspace, OUTPUT_FOLDER)
        try:
            private_dir(folder)
            with contextlib.suppress(FileExistsError), _create(folder / ".gitignore") as ignore:
                ignore.write(b"*\n")
            stem = re.sub(r"[^A-Za-z0-9_-]", "_", call_id)[:64] or "call"
            file = None
            for n in range(1, 101):
                name = f"{stem}.log" if n == 1 else f"{stem}-{n}.log"
                with contextlib.suppress(FileExistsError):
                    file = _create(folder / name)
                    break
            if file is None:  # a hundred calls with this id: stop counting
                name = f"{stem}-{secrets.token_hex(8)}.log"
                file = _create(folder / name)
        except OSError as exc:
            raise ToolError(
                f"cannot save the command's output in {OUTPUT_FOLDER}: {exc.strerror or exc}",
                hint="make the workspace writable, or remove what is in the way there",
            ) from exc
        root = workspace_root(workspace)
        return cls(file, (folder / name).relative_to(root).as_posix(), limit=limit, tail=tail)

    @property
    def cut(self) -> int:
        """Bytes of output the file does not hold (between its head and its tail)."""
        if self._closed:
            return self._cut
        return self.total - self._head - min(len(self._tail), self._tail_limit)

    def write(self, text: str) -> None:
        """Append ``text`` (as UTF-8) to the file, or to the kept tail once the head is full."""
        if self._closed:
            return
        data = text.encode("utf-8", "replace")
        self.total += len(data)
        if self._head_open:
            if len(data) <= self._head_limit - self._head:
                self._put(data)
                self._head += len(data)
                return
            # The head ends here, at the start of a character; the rest begins the tail.
            split = _char_start(data, self._head_limit - self._head, back=True)
            self._put(data[:split])
            self._head += split
            self._head_open = False
            data = data[split:]
        self._tail += data
        if len(self._tail) > 2 * self._tail_limit:
            del self._tail[: len(self._tail) - self._tail_limit]

    def close(self) -> None:
        """Write the kept tail, after a line saying how much was cut, and close the file."""
        if self._closed:
            return
        tail = bytes(self._tail[max(0, len(self._tail) - self._tail_limit) :])
        tail = tail[_char_start(tail, 0) :]
        self._closed = True
        self._cut = self.total - self._head - len(tail)
        if self._cut:
            self._put(
                f"\n[... {self._cut} bytes cut: this file keeps the first {self._head} and the "
                f"last {len(tail)} bytes of the output ...]\n".encode()
            )
        self._put(tail)
        self._tail = bytearray()
        try:
            self._file.close()
        except OSError as exc:
            self.error = self.error or exc.strerror or str(exc)

    def _put(self, data: bytes) -> None:
        if self.error is not None or not data:
            return
        try:
            self._file.write(data)
        except OSError as exc:
            self.error = exc.strerror or str(exc)


def _create(path: Path) -> BinaryIO:
    """``path`` made and opened for writing; never an existing file, never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    return os.fdopen(fd, "wb", buffering=64 * 1024)


def _char_start(data: bytes, index: int, *, back: bool = False) -> int:
    """``index`` moved past UTF-8 continuation bytes (forward, or ``back``) to where a
    character starts, so a cut never splits one."""
    if back:
        while 0 < index < len(data) and data[index] & 0xC0 == 0x80:
            index -= 1
    else:
        while index < len(data) and data[index] & 0xC0 == 0x80:
            index += 1
    return index


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
    orphans to keep it so). Without /proc, only ``root`` is killed."""
    stopped: set[int] = set()
    for _ in range(50):
        new = _descendants(root) - stopped
        if not new:
            break
        for pid in new:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= new
    for pid in [root, *stopped, *_descendants(root)]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _descendants(root: int) -> set[int]:
    seen: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as file:
                    found = [int(word) for word in file.read().split()]
            except OSError:
                continue
            for child in found:
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
    return seen


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
