"""The `promptline` command, driven in-process through click's runner on a temporary home."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from promptline import __version__
from promptline.cli.main import app


def run(*args: str, home: Path | None = None, ok: bool = True) -> Result:
    env = {"PROMPTLINE_HOME": str(home)} if home else None
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_version_is_printed() -> None:
    assert run("--version").output.strip() == f"promptline, version {__version__}"


def test_help_lists_every_command_group() -> None:
    out = run("--help").output
    for name in ("config", "db", "events", "sessions", "doctor"):
        assert name in out


def test_config_validate_accepts_the_seed_example() -> None:
    seed = Path(__file__).parents[1] / "fixtures" / "seed_config.yaml"
    assert "ok" in run("config", "validate", str(seed)).output


def test_config_validate_accepts_a_home_without_a_config_file(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    home.mkdir()
    out = run("config", "validate", home=home).output
    assert "ok" in out
    assert "defaults are used" in out


def test_config_validate_refuses_a_named_file_that_is_missing(tmp_path: Path) -> None:
    result = run("config", "validate", str(tmp_path / "nope.yaml"), ok=False)
    assert result.exit_code == 1
    assert "config file not found" in result.output


def test_config_validate_names_file_line_and_key_path_of_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("gateway:\n  port: eighty\nstate:\n  backend: sqlit\n")
    result = run("config", "validate", str(bad), ok=False)
    assert result.exit_code == 1
    assert f"{bad}:2: gateway.port" in result.output
    assert "state.backend" in result.output
    assert "did you mean 'sqlite'" in result.output


def test_config_validate_warns_of_an_mcp_server_at_an_address_egress_refuses(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    servers = (
        "mcp_servers:\n"
        "  docs: {url: 'http://127.0.0.1:9000/mcp'}\n"
        "  wiki: {url: 'http://10.1.2.3/mcp'}\n"
        "  public: {url: 'https://93.184.216.34/mcp'}\n"
        "  named: {url: 'http://docs.internal/mcp'}\n"
    )
    config.write_text(servers + "security:\n  egress_allow: [10.0.0.0/8]\n")

    result = run("config", "validate", str(config))

    assert result.exit_code == 0  # valid: the server is refused when it is connected
    warnings = [line for line in result.output.splitlines() if "is refused" in line]
    assert warnings == [
        "warning: mcp_servers.docs: http://127.0.0.1:9000/mcp is refused: 127.0.0.1 is a loopback "
        'address (this machine); add "127.0.0.1" to security.egress_allow to allow it'
    ]


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text('models:\n  providers:\n    openai:\n      api_key: "sk-very-secret"\n')
    out = run("--config", str(cfg), "config", "show").output
    assert "sk-very-secret" not in out
    assert "***" in out
    assert "sk-very-secret" in run("--config", str(cfg), "config", "show", "--show-secrets").output


def test_db_upgrade_then_current_reports_up_to_date() -> None:
    assert "behind" in run("db", "current").output
    assert "schema at revision" in run("db", "upgrade").output
    assert "up to date" in run("db", "current").output


def test_doctor_passes_on_defaults_and_fails_with_a_fix_for_a_dead_redis(tmp_path: Path) -> None:
    assert "all good" in run("doctor").output
    cfg = tmp_path / "config.yaml"
    cfg.write_text('state:\n  backend: redis\n  redis_url: "redis://127.0.0.1:1/0"\n')
    result = run("--config", str(cfg), "doctor", ok=False)
    assert result.exit_code == 1
    assert "state (redis)" in result.output
    assert "fix:" in result.output


def test_doctor_reports_a_broken_config_without_a_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("gateway: [unclosed\n")
    result = run("--config", str(cfg), "doctor", ok=False)
    assert result.exit_code == 1
    assert "config" in result.output
    assert "Traceback" not in result.output


def test_a_session_made_on_the_command_line_may_have_a_sandbox_of_its_own(
    tmp_path: Path,
) -> None:
    sid = run("sessions", "new", "--channel", "slack", "--sandbox", "docker").output.strip()
    run("sessions", "add", sid, "hello")

    shown = run("sessions", "show", sid).output.splitlines()
    plain = run("sessions", "show", run("sessions", "new").output.strip()).output

    assert "sandbox=docker" in shown
    assert "sandbox=" not in plain
    refused = run("sessions", "new", "--sandbox", "jail", ok=False)
    assert refused.exit_code == 2
    assert "'jail' is not one of" in refused.output


def test_session_tour_new_add_show_search_replay_tail(tmp_path: Path) -> None:
    sid = run("sessions", "new", "--user", "alice").output.strip()
    run("sessions", "add", sid, "What is the capital of France?")
    run("sessions", "add", sid, "Paris.", "--role", "assistant")
    shown = run("sessions", "show", sid).output
    assert "capital of France" in shown
    assert "Paris." in shown
    assert sid in run("sessions", "list").output
    assert sid in run("sessions", "search", "capital").output
    assert "no matches" in run("sessions", "search", "zebra").output
    timeline = run("events", "replay", "--session", sid).output
    for kind in ("session_created", "message_received", "message_sent"):
        assert kind in timeline
    lines = run("events", "tail", "--json", "--session", sid).output.strip().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    only = run("events", "tail", "--json", "--type", "message_sent").output.strip().splitlines()
    assert [json.loads(line)["type"] for line in only] == ["message_sent"]


def test_export_import_round_trips_into_another_home(tmp_path: Path) -> None:
    sid = run("sessions", "new", "--user", "bob").output.strip()
    run("sessions", "add", sid, "remember the milk")
    exported = tmp_path / "s.json"
    run("sessions", "export", sid, "-o", str(exported))
    other = tmp_path / "other-home"
    assert run("sessions", "import", str(exported), home=other).output.strip() == sid
    again = tmp_path / "again.json"
    run("sessions", "export", sid, "-o", str(again), home=other)
    assert again.read_bytes() == exported.read_bytes()


def test_import_of_a_foreign_document_is_refused_clearly(tmp_path: Path) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps({"format": "promptline.session", "version": 99}))
    result = run("sessions", "import", str(doc), ok=False)
    assert result.exit_code == 1
    assert "error:" in result.output
    doc.write_text("{not json")
    assert "not JSON" in run("sessions", "import", str(doc), ok=False).output


def test_unknown_session_is_a_clear_error() -> None:
    result = run("sessions", "show", "ses_nope", ok=False)
    assert result.exit_code == 1
    assert "error:" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_installed_entry_point_runs(args: list[str]) -> None:
    script = Path(sys.executable).parent / "promptline"
    done = subprocess.run([str(script), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "promptline" in done.stdout.lower()


def test_a_damaged_database_file_is_reported_and_left_untouched(tmp_path: Path) -> None:
    home = tmp_path / "damaged"
    home.mkdir()
    db = home / "state.db"
    db.write_bytes(b"this is not a database" * 10)
    for args in (["sessions", "list"], ["db", "upgrade"], ["events", "tail"]):
        result = run(*args, home=home, ok=False)
        assert result.exit_code == 1
        assert "not a database or is damaged" in result.output
        assert "Traceback" not in result.output
    assert db.read_bytes() == b"this is not a database" * 10


def test_an_admin_key_needs_no_user_and_acts_as_admin() -> None:
    made = json.loads(run("keys", "create", "--role", "admin", "--json").output)
    assert (made["user_id"], made["role"]) == ("admin", "admin")
    listed = json.loads(run("keys", "list", "--json").output)
    assert [(k["key_id"], k["user_id"], k["role"]) for k in listed] == [
        (made["key_id"], "admin", "admin")
    ]


def test_a_user_key_without_its_user_is_refused_with_the_fix() -> None:
    refused = run("keys", "create", ok=False)
    assert refused.exit_code == 2
    assert "a user's key needs --user NAME" in refused.output
    assert "promptline keys create --role admin" in refused.output
    assert json.loads(run("keys", "list", "--json").output) == []
