"""The audit trail end to end: a scripted run whose approval is given, one whose approval is
denied, a sensitive tool call, failed logins and a key made on the command line; then
``promptline audit report`` lists every one of them in each format, from SQLite (read through
sqlite3) and from PostgreSQL (through the services)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from gateway_support import auth, gateway_app, make_keys
from rest_support import CONFIG, WRITER, ended, waiting_run
from webhook_support import WebhookServer

from promptline.cli.main import app as cli
from promptline.config import load_settings
from promptline.config.settings import Settings

BAD_KEY = "pl_key_" + "0" * 26 + "_" + "x" * 32


def audit_settings(home: Path, database_url: str, webhook: str) -> Settings:
    """The REST tests' settings (``scripted/writer`` asks before ``file_write``), with
    ``file_write`` sensitive, alerts sent to ``webhook``, and the log at ``database_url``."""
    scripts = home / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "writer.yaml").write_text(WRITER, encoding="utf-8")
    extra = f"""\
security:
  alerts:
    sensitive: [file_write, key.created, key.revoked, auth.repeated_failures]
    auth_failures_per_minute: 3
    webhook_url: "{webhook}"
    webhook_retries: 0
state:
  backend: {"postgres" if database_url.startswith("postgres") else "sqlite"}
  database_url: "{database_url}"
"""
    config = home / "config.yaml"
    config.write_text(CONFIG.format(scripts=scripts) + extra, encoding="utf-8")
    return load_settings(config, environ={"PROMPTLINE_HOME": str(home)})


async def scenario(settings: Settings) -> dict[str, Any]:
    """Approve one run's file_write, deny another's, knock three times with a bad key."""
    async with gateway_app(settings) as (app, client):
        keys = await make_keys(app)
        given = await waiting_run(client, keys.alice)
        answer = await client.post(
            f"/v1/approvals/{given.request['request_id']}",
            json={"approve": True},
            headers=auth(keys.alice),
        )
        assert answer.status_code == 200, answer.text
        assert await ended(client, keys.alice, given.run_id) == "completed"
        denied = await waiting_run(client, keys.alice)
        answer = await client.post(
            f"/v1/approvals/{denied.request['request_id']}",
            json={"approve": False, "reason": "not today"},
            headers=auth(keys.alice),
        )
        assert answer.status_code == 200, answer.text
        assert await ended(client, keys.alice, denied.run_id) == "completed"
        for _ in range(3):
            refused = await client.get("/v1/sessions", headers=auth(BAD_KEY))
            assert refused.status_code == 401
    return {"given": given.request["request_id"], "denied": denied.request["request_id"]}


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def home() -> Path:
    return Path(os.environ["PROMPTLINE_HOME"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_report_lists_approvals_alerts_sensitive_calls_and_failed_logins(
    backend: str, home: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = str(request.getfixturevalue(f"{backend}_url"))
    with WebhookServer() as hook:
        settings = audit_settings(home, url, hook.url)
        ids = asyncio.run(scenario(settings))
        made = run_cli("keys", "create", "--user", "dave", "--tenant", "acme", "--json")
        assert made.exit_code == 0, made.output
        key_id = json.loads(made.output)["key_id"]

        as_json = run_cli("audit", "report", "--format", "json")
        md_file = tmp_path / "report.md"
        as_md = run_cli("audit", "report", "--from", "2000-01-01", "-o", str(md_file))
        as_csv = run_cli("audit", "report", "--format", "csv", "--to", "2999-12-31")

    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    approvals = {a["request_id"]: a for a in report["approvals"]}
    assert approvals[ids["given"]]["decision"] == "granted"
    assert approvals[ids["given"]]["decided_by"] == "alice"
    assert approvals[ids["given"]]["source"] == "127.0.0.1"
    assert approvals[ids["given"]]["key_id"].startswith("key_")
    assert approvals[ids["denied"]]["decision"] == "denied"
    assert approvals[ids["denied"]]["reason"] == "not today"
    tools = [a for a in report["activity"] if a["action"] == "tool:file_write"]
    # The call run once approved, and the call refused (recorded with its refusal).
    assert [(t["actor"], t["outcome"], t["tenant"]) for t in tools] == [
        ("alice", "success", "acme"),
        ("alice", "failure", "acme"),
    ]
    kinds = sorted(a["kind"] for a in report["alerts"])
    assert kinds == ["auth.repeated_failures", "key.created", "sensitive_tool"]
    [login] = report["failed_logins"]
    assert login["source"] == "127.0.0.1"
    assert login["count"] == 1
    assert login["key_id"] == "key_" + "0" * 26
    [created] = [a for a in report["activity"] if a["action"] == "key.created"]
    assert created["target"] == key_id
    assert created["actor"].startswith("os:")
    assert created["source"] == "cli"
    assert report["quota"] == []

    # The webhook got every alert, as the log holds it.
    assert sorted(body["data"]["kind"] for body in hook.bodies) == kinds

    assert as_md.exit_code == 0, as_md.output
    text = md_file.read_text(encoding="utf-8")
    for needle in (
        ids["given"],
        ids["denied"],
        "tool:file_write",
        "sensitive_tool",
        "auth.repeated_failures",
        "| 127.0.0.1 | 1 |",
        key_id,
        "## Quota hits (0)",
        "No quota hit is recorded",
    ):
        assert needle in text, needle

    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    by_section: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_section.setdefault(row["section"], []).append(row)
    assert {r["request_id"]: r["decision"] for r in by_section["approvals"]} == {
        ids["given"]: "granted",
        ids["denied"]: "denied",
    }
    assert {r["kind"] for r in by_section["alerts"]} == set(kinds)
    assert [r["source"] for r in by_section["failed_logins"]] == ["127.0.0.1"]
    assert "tool:file_write" in {r["action"] for r in by_section["activity"]}


def test_a_tenant_report_keeps_to_the_tenant(home: Path, sqlite_url: str) -> None:
    with WebhookServer() as hook:
        ids = asyncio.run(scenario(audit_settings(home, sqlite_url, hook.url)))

    acme = json.loads(run_cli("audit", "report", "--tenant", "acme", "-f", "json").output)
    globex = json.loads(run_cli("audit", "report", "--tenant", "globex", "-f", "json").output)

    assert {a["request_id"] for a in acme["approvals"]} == set(ids.values())
    # A failed login names no tenant (its key did not check out): only in the whole report.
    assert acme["failed_logins"] == []
    assert all(not rows for name, rows in globex.items() if isinstance(rows, list))


def test_a_period_with_nothing_says_so(sqlite_url: str, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(f'state:\n  database_url: "{sqlite_url}"\n', "utf-8")

    result = run_cli("audit", "report", "--from", "2001-01-01", "--to", "2001-01-31")

    assert result.exit_code == 0, result.output
    assert "- Period: 2001-01-01T00:00:00+00:00 to 2001-02-01T00:00:00+00:00" in result.output
    assert "No approval was given or denied." in result.output
    assert "No failed login is recorded." in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--from", "yesterday"], ["--from", "'yesterday' is not a date or a time"]),
        (["--to", "2026-13-01"], ["--to", "'2026-13-01' is not a date or a time", "YYYY-MM-DD"]),
        (
            ["--from", "2026-02-01", "--to", "2026-01-01"],
            ["--from (2026-02-01T00:00:00+00:00) must come before --to"],
        ),
    ],
)
def test_a_bad_period_is_refused_clearly(args: list[str], words: list[str]) -> None:
    result = run_cli("audit", "report", *args)

    assert result.exit_code == 2
    for word in words:
        assert word in result.output


def test_keys_revoked_and_standing_grants_are_on_the_trail(home: Path, sqlite_url: str) -> None:
    async def grant_for_the_session(settings: Settings) -> str:
        async with gateway_app(settings) as (app, client):
            keys = await make_keys(app)
            waiting = await waiting_run(client, keys.alice)
            answer = await client.post(
                f"/v1/approvals/{waiting.request['request_id']}",
                json={"approve": True, "scope": "session"},
                headers=auth(keys.alice),
            )
            assert answer.status_code == 200, answer.text
            assert await ended(client, keys.alice, waiting.run_id) == "completed"
            return str(waiting.request["request_id"])

    with WebhookServer() as hook:
        request_id = asyncio.run(grant_for_the_session(audit_settings(home, sqlite_url, hook.url)))
    made = json.loads(run_cli("keys", "create", "--user", "dave", "--json").output)
    revoked = run_cli("keys", "revoke", made["key_id"])
    unknown = run_cli("keys", "revoke", "key_01M8HYGCB8NVCPM8V1Y27ABSW7")

    assert revoked.exit_code == 0
    assert unknown.exit_code == 1
    report = json.loads(run_cli("audit", "report", "-f", "json").output)
    done = [(a["action"], a["target"], a["outcome"]) for a in report["activity"]]
    assert ("permissions.changed", "session:file_write", "success") in done
    assert ("key.created", made["key_id"], "success") in done
    assert ("key.revoked", made["key_id"], "success") in done
    assert ("key.revoked", "key_01M8HYGCB8NVCPM8V1Y27ABSW7", "failure") in done
    [changed] = [a for a in report["activity"] if a["action"] == "permissions.changed"]
    assert changed["actor"] == "alice"
    assert report["approvals"][0]["request_id"] == request_id
    assert report["approvals"][0]["scope"] == "session"


def test_on_a_sqlite_home_the_report_is_read_without_the_services(
    home: Path, sqlite_url: str
) -> None:
    import subprocess
    import sys

    with WebhookServer() as hook:
        ids = asyncio.run(scenario(audit_settings(home, sqlite_url, hook.url)))
    probe = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from promptline.cli.main import app\n"
        "result = CliRunner().invoke(app, ['audit', 'report', '-f', 'json'])\n"
        "heavy = sorted(m for m in ('sqlalchemy', 'promptline.app') if m in sys.modules)\n"
        "print(json.dumps({'code': result.exit_code, 'heavy': heavy, 'out': result.output}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=os.environ
    )
    found = json.loads(done.stdout)

    assert found["code"] == 0
    assert found["heavy"] == []
    report = json.loads(found["out"])
    assert {a["request_id"] for a in report["approvals"]} == set(ids.values())
