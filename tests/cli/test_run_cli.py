"""`promptline run` and `promptline runs ...`, driven in-process through click's runner on a
temporary home with the offline scripted models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promptline.cli.main import app
from promptline.cli.run_cmd import EXIT_FAILED

WRITER_SCRIPT = """\
- tool_calls:
    - name: file_write
      arguments: {path: note.txt, content: "hello from the script"}
- reply: "Wrote note.txt."
"""


def cli(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def writer_home(tmp_path: Path) -> Path:
    """The test's home, with a scripted model `scripted/writer` that calls file_write."""
    home = Path(os.environ["PROMPTLINE_HOME"])
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "writer.yaml").write_text(WRITER_SCRIPT)
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(
        f"models:\n  providers:\n    scripted:\n      scripts_dir: {scripts}\n"
    )
    return home


def test_run_json_prints_only_the_record_of_a_completed_run() -> None:
    result = cli("run", "hello there", "--model", "scripted/demo", "--json")
    record = json.loads(result.stdout)
    assert record["status"] == "completed"
    assert record["input"] == "hello there"
    assert "offline demo model" in record["output"]
    assert record["model"] == "scripted/demo"
    assert record["agent"] == "assistant"
    assert record["user_id"] == "local"
    assert record["model_calls"] == 1
    assert record["total_tokens"] > 0
    assert record["run_id"].startswith("run_")


def test_run_prints_the_answer_and_falls_back_to_the_demo_model_with_a_notice() -> None:
    result = cli("run", "hello there")
    assert "offline demo model" in result.stdout
    assert "no model configured" in result.stderr
    assert "scripted/demo" in result.stderr


def test_run_with_an_unknown_model_fails_with_exit_code_1_and_says_why() -> None:
    result = cli("run", "hello", "--model", "nowhere/nothing", code=EXIT_FAILED)
    assert "error: no configured provider serves model 'nowhere/nothing'" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.output
    as_json = cli("run", "hello", "--model", "nowhere/nothing", "--json", code=EXIT_FAILED)
    record = json.loads(as_json.stdout)
    assert record["status"] == "failed"
    assert record["error"]["code"] == "model_not_found"


def test_run_in_an_unknown_session_is_a_clear_error() -> None:
    result = cli("run", "hello", "--session", "ses_nope", code=1)
    assert "error:" in result.stderr
    assert "Traceback" not in result.output


def test_run_without_a_terminal_refuses_approvals_and_says_how_to_allow_them(
    writer_home: Path,
) -> None:
    result = cli("run", "write it", "--model", "scripted/writer", "--mode", "act")
    assert "file_write needs your approval" in result.stderr
    assert "rerun with --yes" in result.stderr
    assert "was not run" in result.stderr
    assert not list((writer_home / "workspaces").rglob("note.txt"))


def test_run_yes_approves_and_the_tool_runs(writer_home: Path) -> None:
    result = cli("run", "write it", "--model", "scripted/writer", "--mode", "act", "--yes")
    assert "Wrote note.txt." in result.stdout
    assert "approving automatically (--yes)" in result.stderr
    assert "approved file_write" in result.stderr
    written = list((writer_home / "workspaces").rglob("note.txt"))
    assert [p.read_text() for p in written] == ["hello from the script"]


def test_runs_list_show_and_replay_a_recorded_run() -> None:
    first = json.loads(cli("run", "first", "--model", "scripted/demo", "--json").stdout)
    second = json.loads(cli("run", "second", "--model", "scripted/demo", "--json").stdout)

    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    assert [r["status"] for r in listed] == ["completed", "completed"]
    assert second["run_id"] in cli("runs", "list").stdout
    assert json.loads(cli("runs", "list", "--json", "--limit", "1").stdout)[0]["input"] == "second"
    assert json.loads(cli("runs", "list", "--json", "--status", "failed").stdout) == []

    shown = cli("runs", "show", first["run_id"]).stdout
    assert "completed" in shown
    assert "first" in shown
    record = json.loads(cli("runs", "show", first["run_id"], "--json", "--events").stdout)
    assert record["run_id"] == first["run_id"]
    kinds = [e["type"] for e in record["events"]]
    assert kinds[:2] == ["message_received", "run_queued"]
    assert {"run_started", "llm_command", "llm_result", "run_completed"} <= set(kinds)
    timeline = cli("runs", "show", first["run_id"], "--events").stdout
    assert "run_completed" in timeline
    assert "llm_result" in timeline

    replayed = cli("runs", "replay", first["run_id"])
    assert "no divergence" in replayed.stdout
    report = json.loads(cli("runs", "replay", first["run_id"], "--json").stdout)
    assert report["diverged"] is False
    assert report["recorded_status"] == report["replayed_status"] == "completed"


def test_runs_replay_of_an_act_run_offered_tools_it_did_not_call_finds_no_divergence() -> None:
    record = json.loads(
        cli("run", "hello", "--model", "scripted/demo", "--mode", "act", "--json").stdout
    )
    shown = json.loads(cli("runs", "show", record["run_id"], "--json", "--events").stdout)
    [command] = [e for e in shown["events"] if e["type"] == "llm_command"]
    assert command["data"]["tools"]  # tools were offered...
    assert record["tool_calls"] == []  # ...and none was called

    replayed = cli("runs", "replay", record["run_id"])
    assert "no divergence" in replayed.stdout
    report = json.loads(cli("runs", "replay", record["run_id"], "--json").stdout)
    assert (report["diverged"], report["recorded_model_calls"], report["resumed"]) == (False, 1, 0)


def test_runs_replay_exits_1_when_the_agent_changed_since_the_recording() -> None:
    record = json.loads(cli("run", "hello", "--model", "scripted/demo", "--json").stdout)
    home = Path(os.environ["PROMPTLINE_HOME"])
    (home / "config.yaml").write_text(
        "agents:\n  assistant:\n    system_prompt: You answer like a pirate.\n"
    )
    diverged = cli("runs", "replay", record["run_id"], code=1)
    assert "1 divergence(s)" in diverged.stdout
    assert "model call 1, prompt message 1" in diverged.stdout
    report = json.loads(cli("runs", "replay", record["run_id"], "--json", code=1).stdout)
    assert report["diverged"] is True
    assert report["divergences"][0]["step"] == "model call 1, prompt message 1"


def test_runs_show_of_an_unknown_run_is_a_clear_error() -> None:
    result = cli("runs", "show", "run_nope", code=1)
    assert "no run 'run_nope'" in result.stderr
    assert "promptline runs list" in result.stderr


def test_run_says_which_mode_the_run_is_in_and_how_to_switch() -> None:
    acting = cli("run", "hello there")
    assert "mode: act" in acting.stderr
    assert "--mode plan" in acting.stderr
    assert "mode:" not in acting.stdout  # the answer alone goes to stdout

    planning = cli("run", "hello there", "--mode", "plan")
    assert "mode: plan" in planning.stderr
    assert "--mode act" in planning.stderr
    assert json.loads(cli("run", "hi", "--mode", "plan", "--json").stdout)["mode"] == "plan"
