"""Keys of features that do not exist yet, as the commands see them: `config validate` and
`doctor` refuse a value that would switch one on and warn about a credential that waits for
one; a terminal channel switched off takes no message."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from promptline.cli.main import app

SEED = Path(__file__).parents[1] / "fixtures" / "seed_config.yaml"


def run(*args: str, code: int = 0, env: dict[str, str | None] | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_config_validate_accepts_the_seed_and_warns_about_the_tokens_it_sets() -> None:
    env: dict[str, str | None] = {"SLACK_BOT_TOKEN": "xoxb-1", "DISCORD_BOT_TOKEN": None}

    result = run("config", "validate", str(SEED), env=env)

    assert "ok" in result.stdout
    assert result.stderr.split("\n", 1)[0] == (
        "warning: channels.slack.bot_token is set, but PromptLine has no Slack channel yet, "
        "so nothing reads it (see 'Not supported yet' in docs/configuration.md)"
    )
    assert "discord" not in result.stderr  # its variable is unset: nothing is set


def test_doctor_warns_about_a_credential_nothing_reads(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("channels:\n  telegram:\n    bot_token: t-123\n", encoding="utf-8")

    out = " ".join(run("--config", str(config), "doctor").output.split())

    assert "channels.telegram.bot_token is set, but PromptLine has no Telegram channel yet" in out


def test_a_run_from_the_terminal_is_refused_while_the_cli_channel_is_off(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("channels:\n  cli:\n    enabled: false\n", encoding="utf-8")

    out = run("--config", str(config), "run", "hello", code=1).output

    assert "the cli channel is off: channels.cli.enabled is false" in out
    assert "set channels.cli.enabled: true" in out
