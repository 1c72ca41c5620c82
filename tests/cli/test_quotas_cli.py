"""`promptline quotas`: a user's and its tenant's quotas with what they used, as a table and
as the JSON of ``GET /v1/quotas``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from promptline.cli.main import app


def run(home: Path, *args: str) -> Result:
    result = CliRunner().invoke(
        app, list(args), env={"PROMPTLINE_HOME": str(home)}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result


def test_quotas_shows_the_limits_and_what_the_user_and_its_tenant_used(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "quotas:\n  user: {max_sessions: 10, storage_mb: 5}\n  tenant: {concurrent_runs: 4}\n",
        encoding="utf-8",
    )
    run(tmp_path, "sessions", "new", "--user", "alice", "--tenant", "acme")
    run(tmp_path, "sessions", "new", "--user", "bob", "--tenant", "acme")

    found = json.loads(
        run(tmp_path, "quotas", "--user", "alice", "--tenant", "acme", "--json").output
    )

    assert found["counting"] == "per_process"
    assert found["user"]["scope"] == "user:alice"
    assert (found["user"]["limits"]["max_sessions"], found["user"]["used"]["max_sessions"]) == (
        10,
        1,
    )
    assert found["user"]["limits"]["storage_mb"] == 5
    assert found["tenant"]["limits"]["concurrent_runs"] == 4
    assert found["tenant"]["used"]["max_sessions"] == 2
    table = run(tmp_path, "quotas", "--user", "alice", "--tenant", "acme").output
    assert "user:alice limit" in table
    assert "tenant:acme limit" in table
    assert "storage_mb" in table
    assert "per process:" in table
