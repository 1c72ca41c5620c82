"""`promptline chat`: the REPL through a pseudo-terminal (pexpect), as a person would use it,
and with plain lines on stdin. The assertions are on the text; timeouts are generous."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest
from click.testing import CliRunner

from promptline.cli.main import app

SCRIPT = Path(sys.executable).parent / "promptline"
TIMEOUT = 30
PROMPT = "you>"  # prompt_toolkit draws the space after it as a cursor move

WRITER = """\
- tool_calls:
    - name: file_write
      arguments: {path: note.txt, content: "hello from the script"}
- reply: "Wrote note.txt."
"""
SLEEPER = """\
- reply: "Taking a nap."
  tool_calls:
    - name: shell_execute
      arguments: {command: "echo started; sleep 120; echo woke up"}
- reply: "Awake again."
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A PromptLine home whose scripted provider also has the `writer` and `sleeper` scripts."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "writer.yaml").write_text(WRITER)
    (scripts / "sleeper.yaml").write_text(SLEEPER)
    folder = tmp_path / "promptline-home"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        f"models:\n  providers:\n    scripted:\n      scripts_dir: {scripts}\n"
    )
    return folder


Spawn = Callable[..., pexpect.spawn]


@pytest.fixture
def chat(home: Path) -> Iterator[Spawn]:
    """Starts ``promptline chat ARGS`` in a pseudo-terminal and waits for its first prompt."""
    children: list[pexpect.spawn] = []

    def start(*args: str) -> pexpect.spawn:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "PROMPTLINE_HOME": str(home),
            "TERM": "xterm",
            "NO_COLOR": "1",
            # Nobody answers cursor position requests here; do not wait for them.
            "PROMPT_TOOLKIT_NO_CPR": "1",
        }
        child = pexpect.spawn(
            str(SCRIPT),
            ["chat", *args],
            env=env,
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(40, 160),
        )
        children.append(child)
        child.expect("PromptLine chat")
        child.expect(PROMPT)
        return child

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def records(home: Path, *args: str) -> object:
    result = CliRunner().invoke(
        app, list(args), env={"PROMPTLINE_HOME": str(home)}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def leave(child: pexpect.spawn) -> None:
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_chat_streams_the_answer_and_keeps_a_multi_line_message_together(
    chat: Spawn, home: Path
) -> None:
    child = chat("--model", "scripted/demo")
    child.send("hello\\\r")  # a trailing backslash continues the message
    child.send("there\r")
    child.expect("Hello from PromptLine's offline demo model!")
    child.expect('You said: "hello there"')
    child.expect(PROMPT)
    child.send("/cost\r")
    child.expect(r"1 model call\(s\)")
    child.expect(PROMPT)
    leave(child)

    runs = records(home, "runs", "list", "--json")
    assert isinstance(runs, list)
    assert [r["input"] for r in runs] == ["hello\nthere"]
    shown = records(home, "runs", "show", runs[0]["run_id"], "--json", "--events")
    assert isinstance(shown, dict)
    kinds = [e["type"] for e in shown["events"]]
    assert "llm_result" in kinds
    assert "llm_delta" not in kinds  # streamed live (seen above), not stored
    assert "hello" in (home / "chat_history").read_text()


def test_chat_asks_for_an_approval_inline_and_runs_the_tool_after_y(
    chat: Spawn, home: Path
) -> None:
    child = chat("--model", "scripted/writer", "--mode", "act")
    child.send("write the note\r")
    child.expect(r"-> file_write\(path=\"note.txt\"")
    child.expect("file_write needs your approval")
    child.expect(r"allow file_write\?")
    child.send("y\r")
    child.expect("approved file_write for this call by local")
    child.expect("Wrote note.txt.")
    child.expect(PROMPT)
    leave(child)
    written = list((home / "workspaces").rglob("note.txt"))
    assert [p.read_text() for p in written] == ["hello from the script"]


def test_ctrl_c_cancels_the_run_in_flight_and_the_repl_goes_on(chat: Spawn, home: Path) -> None:
    (home / "config.yaml").write_text(
        (home / "config.yaml").read_text()
        + "tools:\n  shell_execute: allow\nsecurity:\n  require_approval: false\n"
    )
    child = chat("--model", "scripted/sleeper", "--mode", "act")
    child.send("take a nap\r")
    child.expect(r"\| started")  # the command's own output: it is running now
    child.sendintr()
    child.expect("run cancelled")
    child.expect(PROMPT)
    child.send("/model scripted/demo\r")
    child.expect("model: scripted/demo")
    child.expect(PROMPT)
    child.send("are you still there\r")
    child.expect("offline demo model")
    child.expect(PROMPT)
    child.send("/exit\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    runs = records(home, "runs", "list", "--json")
    assert isinstance(runs, list)
    assert [r["status"] for r in runs] == ["completed", "cancelled"]
    assert runs[1]["cancelled_by"] == "user"


def test_chat_slash_commands_answer_at_the_prompt(chat: Spawn) -> None:
    child = chat("--model", "scripted/demo")
    child.send("/help\r")
    child.expect("/session switch ID")
    child.expect(PROMPT)
    child.send("/mode act\r")
    child.expect("mode: act")
    child.send("/tools\r")
    child.expect(r"file_write\s+ask")
    child.expect(PROMPT)
    child.send("/model nowhere/nothing\r")
    child.expect("error: no configured provider serves model 'nowhere/nothing'")
    child.send("/session new\r")
    child.expect(r"session: (ses_\w+) \(new\)")
    session = child.match.group(1)
    child.send("/session list\r")
    child.expect(rf"\* {session}")
    child.send("/nonsense\r")
    child.expect("unknown command /nonsense")
    child.expect(PROMPT)
    child.send("/exit\r")
    child.expect(pexpect.EOF)


def test_chat_reads_plain_lines_when_stdin_is_not_a_terminal() -> None:
    lines = "hello\\\nthere\n/mode act\n/cost\n/bogus\n"
    result = CliRunner().invoke(
        app, ["chat", "--model", "scripted/demo"], input=lines, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "you> hello\\" in out  # piped input is echoed after the prompt
    assert 'You said: "hello there"' in out
    # The greeting says the mode (act by default) and how to switch; /mode says it again.
    greeting = out.split("you>", 1)[0]
    assert "mode act" in greeting
    assert "/mode plan" in greeting
    assert "mode: act" in out
    assert "1 model call(s)" in out
    assert "unknown command /bogus" in out


def test_chat_with_an_unknown_session_or_agent_fails_clearly() -> None:
    for args in (["--session", "ses_nope"], ["--agent", "nobody"]):
        result = CliRunner().invoke(app, ["chat", *args], input="", catch_exceptions=False)
        assert result.exit_code == 1, result.output
        assert "error:" in result.stderr
        assert "Traceback" not in result.output
