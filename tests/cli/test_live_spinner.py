"""While a run waits for a model the terminal shows what it waits for and for how long, and
the line goes as soon as the answer (or anything else) is shown; nothing is drawn where the
output is not a terminal."""

from __future__ import annotations

import io

import pytest

from promptline.cli.live import RunView, Spinner, Style, elapsed
from promptline.core.events import LlmCommand, LlmCommandEvent, LlmDelta, LlmDeltaEvent

ERASE = "\r\x1b[K"


class Terminal(io.StringIO):
    """What is written to a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """Seconds that pass when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class NoPermissions:
    async def respond(self, request_id: str, **kwargs: object) -> None:
        raise AssertionError("no approval is asked in these tests")


def never_cancelled(reason: str) -> None:
    raise AssertionError(f"the run was cancelled: {reason}")


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.4, "0 s"), (12.9, "12 s"), (60, "1 min 0 s"), (185, "3 min 5 s")]
)
def test_a_wait_reads_in_seconds_then_minutes(seconds: float, shown: str) -> None:
    assert elapsed(seconds) == shown


async def test_the_spinner_says_what_it_waits_for_and_for_how_long() -> None:
    out, clock = Terminal(), Clock()
    spinner = Spinner(out, Style(False), clock=clock)

    spinner.start("waiting for lab/m1")
    first = out.getvalue()
    clock.now += 185
    spinner.draw()
    second = out.getvalue()[len(first) :]
    spinner.stop()

    assert first == f"\r{Spinner.FRAMES[0]} waiting for lab/m1 · 0 s\x1b[K"
    assert second == f"\r{Spinner.FRAMES[1]} waiting for lab/m1 · 3 min 5 s\x1b[K"
    assert out.getvalue().endswith(ERASE)
    assert spinner.label is None


async def test_a_run_view_shows_the_wait_until_the_answer_starts() -> None:
    out = Terminal()
    view = RunView(permissions=NoPermissions(), out=out)
    view.spinner.clock = Clock()

    await view.show(LlmCommandEvent(data=LlmCommand(model="lab/m1")), never_cancelled)
    waiting = out.getvalue()
    await view.show(LlmDeltaEvent(data=LlmDelta(text="Hello")), never_cancelled)
    view.spinner.stop()  # as the end of the run does; nothing is left to erase

    assert "waiting for lab/m1 · 0 s" in waiting
    assert out.getvalue() == f"{waiting}{ERASE}Hello"


async def test_nothing_is_drawn_where_the_output_is_not_a_terminal() -> None:
    out = io.StringIO()
    view = RunView(permissions=NoPermissions(), out=out)

    await view.show(LlmCommandEvent(data=LlmCommand(model="lab/m1")), never_cancelled)
    await view.show(LlmDeltaEvent(data=LlmDelta(text="Hello")), never_cancelled)

    assert out.getvalue() == "Hello"
