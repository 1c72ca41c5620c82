"""Reading what the user types: prompt_toolkit on a terminal (history, multi-line input,
Ctrl-C), plain lines from stdin anywhere else."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings

CONTINUATION = "... "


class LineInput(Protocol):
    """Where the chat reads messages and answers from."""

    async def read(self, prompt: str) -> str | None:
        """A message; None when the user leaves (Ctrl-D, end of input). Ctrl-C gives ""."""
        ...

    async def ask(self, question: str) -> str | None:
        """A one-line answer; None when the user gives up (Ctrl-C, Ctrl-D)."""
        ...


class LineReader:
    """Lines of a stream, read in a daemon thread so the event loop never blocks on them, and
    a line is never lost when the one waiting for it gives up."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdin
        self._queue: asyncio.Queue[str | None] | None = None
        self._eof = False

    async def readline(self) -> str | None:
        """The next line without its line break; None at the end of the input."""
        if self._eof:
            return None
        if self._queue is None:
            self._queue = asyncio.Queue()
            loop = asyncio.get_running_loop()
            threading.Thread(
                target=self._pump, args=(loop, self._queue), daemon=True, name="stdin"
            ).start()
        line = await self._queue.get()
        if line is None:
            self._eof = True
            return None
        return line.rstrip("\r\n")

    def _pump(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
        while True:
            try:
                line = self._stream.readline()
            except (OSError, ValueError):
                line = ""
            try:
                loop.call_soon_threadsafe(queue.put_nowait, line or None)
            except RuntimeError:  # the loop is closed: nobody listens any more
                return
            if not line:
                return


class PlainInput:
    """Plain lines (stdin or stdout is not a terminal): a trailing backslash continues the
    message on the next line. Input that does not come from a terminal is echoed, so a
    transcript shows what was sent."""

    def __init__(self, out: TextIO, reader: LineReader | None = None) -> None:
        self.out = out
        self.reader = reader or LineReader()
        self.echo = not _isatty(sys.stdin)

    async def read(self, prompt: str) -> str | None:
        lines: list[str] = []
        current = prompt
        while True:
            line = await self._line(current)
            if line is None:
                return "\n".join(lines) if lines else None
            if line.endswith("\\"):
                lines.append(line[:-1])
                current = CONTINUATION
                continue
            lines.append(line)
            return "\n".join(lines)

    async def ask(self, question: str) -> str | None:
        return await self._line(question)

    async def _line(self, prompt: str) -> str | None:
        self.out.write(prompt)
        self.out.flush()
        line = await self.reader.readline()
        if self.echo:
            self.out.write((line if line is not None else "") + "\n")
            self.out.flush()
        return line


class TerminalInput:
    """prompt_toolkit on a terminal: history kept in ``history_file``, Esc+Enter (or a
    trailing backslash) for a new line, Ctrl-C to clear the line, Ctrl-D to leave."""

    def __init__(self, history_file: Path) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        from promptline.storage.files import private_file

        try:
            # prompt_toolkit appends to the file as it finds it: made private first.
            private_file(history_file)
            history: FileHistory | InMemoryHistory = FileHistory(str(history_file))
        except OSError:
            history = InMemoryHistory()
        self._messages: PromptSession[str] = PromptSession(
            history=history,
            multiline=True,
            key_bindings=_message_keys(),
            prompt_continuation=lambda width, line, wrapped: CONTINUATION.rjust(width),
        )
        self._answers: PromptSession[str] = PromptSession()

    async def read(self, prompt: str) -> str | None:
        try:
            return await self._messages.prompt_async(prompt, handle_sigint=False)
        except KeyboardInterrupt:
            return ""
        except EOFError:
            return None

    async def ask(self, question: str) -> str | None:
        try:
            return await self._answers.prompt_async(question, handle_sigint=False)
        except (KeyboardInterrupt, EOFError):
            return None


def _message_keys() -> KeyBindings:
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

    keys = KeyBindings()

    @keys.add("enter")
    def _send(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if buffer.document.is_cursor_at_the_end and buffer.text.endswith("\\"):
            buffer.delete_before_cursor(1)
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @keys.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return keys


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def is_terminal() -> bool:
    """True when both stdin and stdout are terminals (prompt_toolkit needs both)."""
    return _isatty(sys.stdin) and _isatty(sys.stdout)
