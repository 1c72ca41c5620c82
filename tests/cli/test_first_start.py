"""A first start as the README tells it, with real processes in a fresh ``~/.promptline``
(``HOME`` is the test's folder): `make run`'s `promptline db upgrade` and `promptline serve`
keep the admin key in ``~/.promptline/admin.key``, and the README's later steps (its curl
examples, `promptline status`, `promptline start`) work with it. Everything PromptLine then
leaves in the home, after serve, chat, run and sessions too, is readable by its owner only."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

SCRIPT = Path(sys.executable).parent / "promptline"
README = Path(__file__).parents[2] / "README.md"
WAIT = 30.0
URL_LINE = re.compile(r"PromptLine gateway on (http://localhost:(\d+))")


def environment(tmp_path: Path) -> dict[str, str]:
    """A user whose home folder is ``tmp_path``, with nothing of PromptLine's set."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "NO_COLOR": "1",
        "TERM": "dumb",
        "COLUMNS": "400",  # no line of the CLI's is wrapped
    }


def promptline(env: dict[str, str], *args: str, code: int = 0) -> str:
    done = subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=WAIT, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    return output


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[tuple[str, list[str]]]:
    """`promptline serve --port 0` until it says where it serves; yields its URL and what it
    printed up to its last line ("Ctrl-C ... stops it"); SIGTERM on exit."""
    with log.open("w") as errors:
        process = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        assert process.stdout is not None
        printed: list[str] = []
        for line in process.stdout:
            printed.append(line.rstrip("\n"))
            if "stops it gracefully" in line:
                break
        found = next((URL_LINE.search(line) for line in printed if URL_LINE.search(line)), None)
        assert found is not None, "\n".join(printed) + log.read_text()
        yield found.group(1), printed
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=WAIT)
    assert process.returncode == 0, log.read_text()


def readme_curl_block(port: int) -> str:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    [block] = [b for b in blocks if "export PROMPTLINE_API_KEY=" in b]
    return block.replace("localhost:8080", f"localhost:{port}")


def not_private(home: Path) -> list[str]:
    """Every path under ``home`` (and ``home`` itself) that others may read or enter."""
    wrong = []
    for path in [home, *home.rglob("*")]:
        mode = path.lstat().st_mode & 0o777
        wanted = 0o700 if path.is_dir() else 0o600
        if mode != wanted:
            wrong.append(f"{oct(mode)} {path.relative_to(home.parent)}")
    return wrong


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("jq")),
    reason="the README's examples need bash, curl and jq",
)
def test_a_first_serve_keeps_the_admin_key_and_the_readmes_later_steps_work_with_it(
    tmp_path: Path,
) -> None:
    env = environment(tmp_path)
    home = tmp_path / ".promptline"
    kept = home / "admin.key"

    promptline(env, "db", "upgrade")
    with serving(env, tmp_path / "serve.log") as (url, printed):
        key = kept.read_text(encoding="ascii").strip()
        assert kept.stat().st_mode & 0o777 == 0o600
        assert f"  export PROMPTLINE_API_KEY={key}" in printed
        assert any(f"A copy is kept in {kept}" in line for line in printed)

        # The README's curl examples, as written (the key read from the file).
        port = int(url.rsplit(":", 1)[1])
        script = "set -euo pipefail\n" + readme_curl_block(port)
        done = subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=WAIT
        )
        assert done.returncode == 0, done.stdout + done.stderr

        # Without a key, or with a refused one, the CLI says where the kept one is and how
        # to make another.
        get_a_key = (
            f"export PROMPTLINE_API_KEY=$(cat {kept}); "
            "`promptline keys create --role admin` makes another"
        )
        assert get_a_key in promptline(env, "status", "--url", url)
        refused = promptline(env, "status", "--url", url, "--key", key + "x")
        assert "the API key was refused" in refused
        assert get_a_key in refused
        chat = promptline(env, "chat", "--remote", url, "--key", key + "x", code=1)
        assert "error: the API key is not valid" in chat
        assert get_a_key in chat
        with_key = promptline({**env, "PROMPTLINE_API_KEY": key}, "status", "--url", url)
        assert "sessions    1" in with_key

    # Its log went to the terminal: a line per request, with the key's id, never the key.
    log = (tmp_path / "serve.log").read_text()
    key_id = key[len("pl_") : len("pl_key_") + 26]
    assert re.search(rf"promptline\.access: GET /v1/agents 200 \S+ ms {key_id}$", log, re.M)
    assert key not in log

    # A later `promptline start` makes no key; it says where the kept one is, status reads it.
    started = promptline(env, "start", "--port", "0")
    try:
        assert key not in started
        assert f"export PROMPTLINE_API_KEY=$(cat {kept})" in started
        status = promptline(env, "status")
        assert f"key         from {kept}" in status
        assert "sessions    1" in status
    finally:
        promptline(env, "stop")

    assert not_private(home) == []


def in_process(tmp_path: Path, *args: str) -> str:
    """`promptline ARGS` in this process (faster than a new one), for the user of `environment`."""
    from click.testing import CliRunner

    from promptline.cli.main import app

    result = CliRunner().invoke(
        app, list(args), env={"HOME": str(tmp_path), "PROMPTLINE_HOME": None}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_chat_run_and_sessions_leave_only_private_files_in_a_fresh_home(tmp_path: Path) -> None:
    env = environment(tmp_path)
    home = tmp_path / ".promptline"

    in_process(tmp_path, "run", "hello", "--json")
    session = in_process(tmp_path, "sessions", "new", "--user", "alice", "--channel", "cli")
    in_process(tmp_path, "sessions", "add", session.strip(), "What is the capital of France?")
    in_process(tmp_path, "sessions", "show", session.strip())
    in_process(tmp_path, "sessions", "search", "capital")
    # The REPL on a terminal, which keeps its input history in the home.
    chat = pexpect.spawn(
        str(SCRIPT),
        ["chat"],
        env={**env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"},
        encoding="utf-8",
        timeout=WAIT,
        dimensions=(40, 160),
    )
    try:
        chat.expect("you>")
        chat.send("hello there\r")
        chat.expect('You said: "hello there"')
        chat.expect("you>")
        chat.sendeof()
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)

    assert (home / "chat_history").is_file()
    assert (home / "state.db").is_file()
    assert not_private(home) == []
