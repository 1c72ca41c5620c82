"""`promptline chat --remote URL`: the REPL against a real gateway, through a pseudo-terminal
(pexpect) as a person would use it: the answer streams in, approvals are answered inline
through the API, Ctrl-C cancels the run on the gateway, slash commands work remotely. The
gateway runs on the test's loop; the terminal is driven from a thread."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pexpect
from click.testing import CliRunner
from client_support import Served

from promptline.cli.main import app
from promptline.client import AsyncPromptLine

SCRIPT = Path(sys.executable).parent / "promptline"
TIMEOUT = 30
PROMPT = "you>"


def spawn(home: Path, *args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    """``promptline chat ARGS`` in a pseudo-terminal, once it shows its first prompt."""
    child = pexpect.spawn(
        str(SCRIPT),
        ["chat", *args],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "PROMPTLINE_HOME": str(home / "terminal-home"),
            "TERM": "xterm",
            "NO_COLOR": "1",
            "PROMPT_TOOLKIT_NO_CPR": "1",
            **(env or {}),
        },
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(40, 160),
    )
    child.expect("PromptLine chat")
    child.expect(PROMPT)
    return child


async def in_terminal(scenario: Callable[[], None]) -> None:
    await asyncio.to_thread(scenario)


def leave(child: pexpect.spawn) -> None:
    child.send("/exit\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


async def test_remote_chat_streams_the_answer_and_answers_slash_commands(
    served: Served, tmp_path: Path
) -> None:
    def scenario() -> None:
        child = spawn(tmp_path, "--remote", served.url, "--key", served.keys.alice)
        child.send("hello\\\r")
        child.send("there\r")
        child.expect(r"\(session (ses_\w+)\)")
        child.expect("Hello from PromptLine's offline demo model!")
        child.expect('You said: "hello there"')
        child.expect(r"\[\d[\d,]* tokens")
        child.expect(PROMPT)
        child.send("/cost\r")
        child.expect(r"1 model call\(s\)")
        child.send("/tools\r")
        child.expect(r"file_write\s+ask")
        child.send("/model nowhere/nothing\r")
        child.expect("error: no configured provider serves model 'nowhere/nothing'")
        child.send("/model scripted/demo\r")
        child.expect("model: scripted/demo")
        child.send("/mode plan\r")
        child.expect("mode: plan")
        child.send("/session list\r")
        child.expect(r"\* ses_\w+\s+\d+ messages")
        child.send("/session new\r")
        child.expect(r"session: ses_\w+ \(new\)")
        child.send("/help\r")
        child.expect("/session switch ID")
        child.send("/nonsense\r")
        child.expect("unknown command /nonsense")
        child.expect(PROMPT)
        leave(child)

    await in_terminal(scenario)
    async with AsyncPromptLine(served.url, served.keys.alice) as client:
        sessions = (await client.sessions.list(channel="cli")).items
        assert len(sessions) == 2
        talked = await client.sessions.get(sessions[1].id)
    assert [m.role for m in talked.history] == ["user", "assistant"]
    assert talked.history[0].text == "hello\nthere"


async def test_remote_chat_asks_for_an_approval_inline_and_answers_through_the_api(
    served: Served, tmp_path: Path
) -> None:
    def scenario() -> None:
        child = spawn(
            tmp_path,
            "--model",
            "scripted/writer",
            env={"PROMPTLINE_URL": served.url, "PROMPTLINE_API_KEY": served.keys.alice},
        )
        child.send("write the note\r")
        child.expect(r"-> file_write\(path=\"note.txt\"")
        child.expect("file_write needs your approval")
        child.expect(r"allow file_write\?")
        child.send("y\r")
        child.expect("approved file_write for this call by alice")
        child.expect("Done: note.txt is written.")
        child.expect(PROMPT)
        leave(child)

    await in_terminal(scenario)
    async with AsyncPromptLine(served.url, served.keys.alice) as client:
        (run,) = (await client.runs.list()).items
    assert run.status == "completed"
    assert run.tool_calls == ["file_write"]


async def test_ctrl_c_cancels_the_run_on_the_gateway_and_the_repl_goes_on(
    served: Served, tmp_path: Path
) -> None:
    def scenario() -> None:
        child = spawn(
            tmp_path, "-r", served.url, "-k", served.keys.alice, "--model", "scripted/sleeper"
        )
        child.send("take a nap\r")
        child.expect(r"\| started")  # the command's own output: it is running now
        child.sendintr()
        child.expect("run cancelled")
        child.expect(PROMPT)
        child.send("/model scripted/demo\r")
        child.expect("model: scripted/demo")
        child.send("are you still there\r")
        child.expect("offline demo model")
        child.expect(PROMPT)
        leave(child)

    await in_terminal(scenario)
    async with AsyncPromptLine(served.url, served.keys.alice) as client:
        runs = (await client.runs.list()).items
    assert [r.status for r in runs] == ["completed", "cancelled"]
    assert runs[1].cancelled_by == "alice"


async def test_remote_chat_with_a_wrong_key_or_agent_fails_clearly(served: Served) -> None:
    def scenario() -> None:
        for args in (
            ["--key", "pl_not_a_key"],
            ["--key", served.keys.alice, "--agent", "nobody"],
            ["--key", served.keys.alice, "--session", "ses_nope"],
        ):
            result = CliRunner().invoke(
                app, ["chat", "--remote", served.url, *args], input="", catch_exceptions=False
            )
            assert result.exit_code == 1, result.output
            assert "error:" in result.stderr
            assert "Traceback" not in result.output

    await in_terminal(scenario)


async def test_remote_chat_reads_plain_lines_when_stdin_is_not_a_terminal(
    served: Served,
) -> None:
    def scenario() -> str:
        lines = "hello\\\nthere\n/mode act\n/cost\n/bogus\n"
        result = CliRunner().invoke(
            app,
            ["chat", "--remote", served.url, "--key", served.keys.bob],
            input=lines,
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        return result.stdout

    out = await asyncio.to_thread(scenario)
    assert "(remote: " in out
    assert 'You said: "hello there"' in out
    assert "mode: act" in out
    assert "1 model call(s)" in out
    assert "unknown command /bogus" in out
