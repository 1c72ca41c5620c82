"""`promptline secrets set|list|delete|rotate`, run as a user runs them (a real process), and
what `config show`, `config validate` and `doctor` say of ``${secret:NAME}``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
from cryptography.fernet import Fernet

from promptline.config.secrets import SECRETS_KEY_ENV, SecretStore

PROMPTLINE = [sys.executable, "-m", "promptline.cli.main"]
VALUE = "sk-cli-distinctive-51d2"
CONFIG = """\
models:
  providers:
    lab:
      base_url: "http://127.0.0.1:9/v1"
      api_key: "${secret:LAB_KEY}"
      models: ["m"]
"""


def env_of(home: Path, **more: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLINE")}
    return {**clean, "PROMPTLINE_HOME": str(home), **more}


def promptline(
    home: Path, *args: str, stdin: str | None = "", code: int = 0, **env: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*PROMPTLINE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_of(home, **env),
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_set_takes_the_value_from_stdin_and_list_shows_names_never_values(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"

    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE + "\n")
    listed = promptline(home, "secrets", "list")
    as_json = json.loads(promptline(home, "secrets", "list", "--json").stdout)

    assert SecretStore(home, {}).get("LAB_KEY") == VALUE  # the pipe's newline is not kept
    assert "LAB_KEY" in listed.stdout
    assert VALUE not in listed.stdout + listed.stderr
    assert [entry["name"] for entry in as_json] == ["LAB_KEY"]
    assert set(as_json[0]) == {"name", "set_at"}


def test_set_from_an_environment_variable(tmp_path: Path) -> None:
    home = tmp_path / "home"

    promptline(home, "secrets", "set", "LAB_KEY", "--from-env", "MY_KEY", MY_KEY=VALUE)

    assert SecretStore(home, {}).get("LAB_KEY") == VALUE


def test_set_asks_with_a_hidden_prompt_in_a_terminal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    child = pexpect.spawn(
        PROMPTLINE[0],
        [*PROMPTLINE[1:], "secrets", "set", "LAB_KEY"],
        env=env_of(home),
        encoding="utf-8",
        timeout=30,
    )
    try:
        child.expect("value of LAB_KEY: ")
        child.sendline(VALUE)
        child.expect("Repeat for confirmation: ")
        child.sendline(VALUE)
        child.expect(pexpect.EOF)
        shown = child.before
    finally:
        child.close(force=True)

    assert "stored in" in shown
    assert VALUE not in shown  # not echoed
    assert SecretStore(home, {}).get("LAB_KEY") == VALUE


def test_a_value_on_the_command_line_is_refused_with_the_ways_that_work(tmp_path: Path) -> None:
    home = tmp_path / "home"

    done = promptline(home, "secrets", "set", "LAB_KEY", VALUE, code=1)

    assert "never taken from the command line" in done.stderr
    assert "--from-env VAR" in done.stderr
    assert not (home / "secrets.json").exists()


def test_a_bad_name_and_an_empty_value_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"

    bad = promptline(home, "secrets", "set", "lab-key", stdin="x", code=1)
    empty = promptline(home, "secrets", "set", "LAB_KEY", stdin="", code=1)

    assert "'lab-key' is not a valid secret name" in bad.stderr
    assert "upper-case letter" in bad.stderr
    assert "the value of secret LAB_KEY is empty" in empty.stderr


def test_delete_removes_and_an_unknown_name_is_an_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE)

    promptline(home, "secrets", "delete", "LAB_KEY")
    again = promptline(home, "secrets", "delete", "LAB_KEY", code=1)

    assert "there is no secret LAB_KEY" in again.stderr
    assert SecretStore(home, {}).listing() == []


def test_rotate_replaces_the_key_file_and_the_config_still_loads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE)
    (home / "config.yaml").write_text(CONFIG)
    old_key = (home / "secrets.key").read_bytes()

    done = promptline(home, "secrets", "rotate")

    assert done.stdout == ""
    assert "1 secret(s) re-encrypted" in done.stderr
    assert (home / "secrets.key").read_bytes() != old_key
    promptline(home, "config", "validate")
    assert SecretStore(home, {}).get("LAB_KEY") == VALUE


def test_rotate_with_the_key_in_the_environment_prints_the_new_key_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old = Fernet.generate_key().decode()
    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE, **{SECRETS_KEY_ENV: old})

    done = promptline(home, "secrets", "rotate", **{SECRETS_KEY_ENV: old})

    new = done.stdout.strip()
    assert SecretStore(home, {SECRETS_KEY_ENV: new}).get("LAB_KEY") == VALUE
    assert f"put it in {SECRETS_KEY_ENV}" in done.stderr
    assert not (home / "secrets.key").exists()


def test_config_show_prints_the_reference_not_the_value(tmp_path: Path) -> None:
    home = tmp_path / "home"
    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE)
    (home / "config.yaml").write_text(CONFIG)

    for args in (("config", "show"), ("config", "show", "--show-secrets")):
        shown = promptline(home, *args).stdout
        assert "api_key: ${secret:LAB_KEY}" in shown
        assert VALUE not in shown


def test_validate_and_doctor_report_an_unknown_secret_with_the_command_to_set_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(CONFIG)

    validated = promptline(home, "config", "validate", code=1)
    doctor = promptline(home, "doctor", code=1)

    for said in (validated.stderr, doctor.stdout):
        flat = " ".join(said.split())
        assert "models.providers.lab.api_key: secret LAB_KEY is not in the secrets store" in flat
        assert "set it with `promptline secrets set LAB_KEY`" in flat


def test_doctor_says_which_keys_come_from_the_store_and_where_the_key_is(tmp_path: Path) -> None:
    home = tmp_path / "home"
    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE)
    (home / "config.yaml").write_text(CONFIG)
    (home / "secrets.json").chmod(0o644)

    said = " ".join(promptline(home, "doctor", code=1).stdout.split())  # the provider is down

    assert (
        f"secrets: 1 key(s) from {home / 'secrets.json'} (models.providers.lab.api_key); "
        f"master key from the key file {home / 'secrets.key'}; the store may be read by others"
    ) in said
    assert f"chmod 600 {home / 'secrets.json'}" in said
    assert VALUE not in said


def test_a_wrong_master_key_is_an_error_message_not_a_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE)
    (home / "config.yaml").write_text(CONFIG)
    wrong = {SECRETS_KEY_ENV: Fernet.generate_key().decode()}

    shown = promptline(home, "config", "show", code=1, **wrong)
    listed = promptline(home, "secrets", "list", **wrong)  # names need no key

    assert "cannot be decrypted with the master key" in shown.stderr
    assert "LAB_KEY" in listed.stdout


def test_a_key_file_others_may_read_is_refused_with_the_chmod(tmp_path: Path) -> None:
    home = tmp_path / "home"
    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE)
    (home / "secrets.key").chmod(0o640)

    done = promptline(home, "secrets", "set", "OTHER", stdin="x", code=1)

    assert "may be read by others (mode 0640)" in done.stderr
    assert f"chmod 600 {home / 'secrets.key'}" in " ".join(done.stderr.split())


def test_every_change_is_on_the_audit_trail_by_name_never_by_value(tmp_path: Path) -> None:
    home = tmp_path / "home"

    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE + "\n")
    promptline(home, "secrets", "set", "OTHER_KEY", stdin="another-value\n")
    promptline(home, "secrets", "rotate")
    promptline(home, "secrets", "delete", "OTHER_KEY")
    report = promptline(home, "audit", "report", "--format", "json").stdout

    activity = json.loads(report)["activity"]
    done = [(row["action"], row["target"], row["actor"]) for row in activity]
    actor = done[0][2]
    assert actor.startswith("os:")
    assert done == [
        ("secret.set", "LAB_KEY", actor),
        ("secret.set", "OTHER_KEY", actor),
        ("secret.rotated", None, actor),
        ("secret.deleted", "OTHER_KEY", actor),
    ]
    assert VALUE not in report
    assert "another-value" not in report


def test_a_change_the_log_cannot_record_says_so_and_stays_done(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    promptline(home, "secrets", "set", "LAB_KEY", stdin=VALUE + "\n")
    (home / "config.yaml").write_text(CONFIG, encoding="utf-8")

    deleted = promptline(home, "secrets", "delete", "LAB_KEY")

    assert "not on the audit trail: secret.deleted could not be recorded" in deleted.stderr
    assert "LAB_KEY" in deleted.stderr
    assert SecretStore(home, {}).get("LAB_KEY") is None
