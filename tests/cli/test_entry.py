"""The `promptline` script's entry: a short command skips the garbage collector and the
interpreter's teardown, and what a user sees (output, exit code, exit handlers) is the same as an
ordinary exit."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptline.cli.runtime import run

SCRIPT = "import sys; from promptline.cli.main import main; sys.argv[0] = 'promptline'; main()"
"""What the installed `promptline` script does."""

ORDINARY = (
    "import sys; from promptline.cli.main import app; sys.argv[0] = 'promptline'; "
    "app(prog_name='promptline')"
)
"""The same command tree exited the ordinary way (interpreter teardown, collector on)."""


def promptline(entry: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROMPTLINE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", entry, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("models:\n  default: scripted/demo\n")
    return home


@pytest.mark.parametrize(
    "args",
    [
        ["config", "show"],
        ["sessions", "show", "ses_00000000000000000000000000"],
        ["runs", "show", "run_unknown"],
        ["no-such-command"],
        ["--version"],
        ["config", "validate"],
    ],
)
def test_a_command_prints_and_exits_as_the_ordinary_exit_does(home: Path, args: list[str]) -> None:
    ordinary = promptline(ORDINARY, *args, home=home)
    fast = promptline(SCRIPT, *args, home=home)
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        ordinary.returncode,
        ordinary.stdout,
        ordinary.stderr,
    )


def test_a_long_output_reaches_a_pipe_whole(home: Path) -> None:
    sid = promptline(SCRIPT, "sessions", "new", home=home).stdout.strip()
    texts = [letter * 40_000 for letter in "xyz"]  # more than a pipe holds: read as written
    for text in texts:
        assert promptline(SCRIPT, "sessions", "add", sid, text, home=home).returncode == 0
    shown = promptline(SCRIPT, "sessions", "show", sid, home=home)
    assert shown.returncode == 0
    assert len(shown.stdout) > 120_000
    for text in texts:
        assert text in shown.stdout.replace("\n", "")


def test_exit_handlers_run_before_the_process_ends(tmp_path: Path) -> None:
    mark = tmp_path / "exit-handler-ran"
    code = (
        "import atexit, sys, pathlib\n"
        f"atexit.register(pathlib.Path({str(mark)!r}).write_text, 'yes')\n"
        "from promptline.cli.main import main\n"
        "sys.argv = ['promptline', '--version']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 0
    assert mark.read_text() == "yes"


def test_a_closed_pipe_exits_the_ordinary_way(home: Path) -> None:
    reader = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "config", "show"],
        env={**os.environ, "PROMPTLINE_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None
    reader.stdout.close()  # as `promptline config show | head -0` does
    _, err = reader.communicate(timeout=60)
    assert reader.returncode != 0 or err == b""  # never a hang, never a traceback
    assert b"Traceback" not in err


@pytest.fixture
def collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


def test_a_long_lived_command_turns_the_collector_back_on(collector_off: None) -> None:
    async def body() -> bool:
        return gc.isenabled()

    assert gc.isenabled() is False
    assert run(body) is True
