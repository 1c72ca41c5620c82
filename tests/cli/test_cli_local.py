"""The local commands (sessions new/add/show/search, events tail, runs list/show, config show,
models list) on a SQLite home: they reach its database through `sqlite3`, without loading
SQLAlchemy or the services, and print what the full path prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promptline.cli.main import app
from promptline.storage import local

HEAVY = (
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "redis",
    "httpx",
    "promptline.app",
    "promptline.sessions.manager",
    "promptline.gateway",
    "promptline.runtime.run",
)
"""What no local command loads."""

PROBE = """\
import json, sys
from click.testing import CliRunner
from promptline.cli.main import app

heavy = {heavy!r}
loaded = {{}}
for name, commands in {groups!r}:
    for args in commands:
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
    loaded[name] = sorted(m for m in heavy if m in sys.modules)
print(json.dumps(loaded))
"""


def cli(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def home() -> dict[str, str]:
    """The test's home with two sessions, their messages and one run; the ids to use."""
    sid = cli("sessions", "new", "--user", "alice").output.strip()
    cli("sessions", "add", sid, "Where is the invoice for March?")
    cli("sessions", "add", sid, "It was sent on the 2nd.", "--role", "assistant")
    cli("sessions", "new", "--user", "bob", "--tenant", "globex")
    record = json.loads(cli("run", "hello there", "--model", "scripted/demo", "--json").stdout)
    return {"session": sid, "run": record["run_id"]}


def test_the_local_commands_load_neither_sqlalchemy_nor_the_services(
    home: dict[str, str],
) -> None:
    sid, rid = home["session"], home["run"]
    sessions_and_log = [
        ["sessions", "new"],
        ["sessions", "add", sid, "one more"],
        ["sessions", "show", sid],
        ["sessions", "search", "invoice"],
        ["events", "tail"],
        ["events", "tail", "--json", "--session", sid],
        ["config", "show"],
        ["models", "list"],
    ]
    runs = [["runs", "list"], ["runs", "show", rid, "--events"]]
    groups = [("sessions and log", sessions_and_log), ("runs", runs)]
    code = PROBE.format(heavy=(*HEAVY, "asyncio"), groups=groups)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=dict(os.environ),
    )
    loaded = json.loads(done.stdout)
    assert loaded["sessions and log"] == []
    assert loaded["runs"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["sessions", "show", "{session}"],
        ["sessions", "search", "invoice"],
        ["sessions", "search", "march", "--session", "{session}"],
        ["sessions", "search", "zebra"],
        ["events", "tail"],
        ["events", "tail", "--json", "-n", "3"],
        ["events", "tail", "--type", "message_sent"],
        ["runs", "list"],
        ["runs", "list", "--json"],
        ["runs", "show", "{run}", "--events"],
        ["runs", "show", "{run}", "--json", "--events"],
    ],
)
def test_a_local_command_prints_what_the_full_path_prints(
    home: dict[str, str], args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = [arg.format(**home) for arg in args]
    local_output = cli(*argv).output
    monkeypatch.setattr(local, "open_local", lambda url: None)
    assert cli(*argv).output == local_output


def test_a_session_added_to_locally_is_what_the_full_path_shows(
    home: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = cli("sessions", "new", "--user", "carol", "--channel", "web").output.strip()
    message_id = cli("sessions", "add", sid, "a note", "--role", "system").output.strip()
    monkeypatch.setattr(local, "open_local", lambda url: None)
    shown = cli("sessions", "show", sid).output
    assert "user=carol channel=web" in shown
    assert "system: a note" in shown
    timeline = [
        json.loads(line)
        for line in cli("events", "tail", "--json", "--session", sid).output.splitlines()
    ]
    assert [e["type"] for e in timeline] == ["session_created", "message_sent"]
    assert timeline[1]["data"]["message"]["id"] == message_id


def test_a_home_without_a_database_yet_is_made_by_the_full_path(tmp_path: Path) -> None:
    fresh = Path(os.environ["PROMPTLINE_HOME"])
    assert not (fresh / "state.db").exists()
    sid = cli("sessions", "new").output.strip()
    assert (fresh / "state.db").is_file()
    assert sid in cli("sessions", "show", sid).output
