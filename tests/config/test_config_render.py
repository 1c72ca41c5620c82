"""``render_settings``: the effective settings as YAML, with credentials masked unless asked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from promptline.config import load_settings, mask_url, render_settings

SECRETS = """
models:
  providers:
    openai:
      api_key: sk-live-1234
      base_url: https://api.openai.com/v1
channels:
  slack:
    bot_token: xoxb-abc
    signing_secret: sig-abc
  wecom:
    corp_id: corp-1
    secret: wecom-secret
    encoding_aes_key: abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
  dingtalk:
    client_id: ding-id
    client_secret: ding-secret
state:
  postgres_url: postgresql://app:hunter2@db:5432/pl
  redis_url: redis://:redispw@cache:6379/0
  database_url: postgresql://app@db/pl?password=qs-secret&sslmode=require
"""


def test_render_masks_credentials_and_url_passwords(write_config: Callable[..., Path]) -> None:
    text = render_settings(load_settings(write_config(SECRETS), environ={}))

    for secret in ("sk-live-1234", "xoxb-abc", "sig-abc", "wecom-secret", "ding-secret"):
        assert secret not in text
    for secret in ("hunter2", "redispw", "qs-secret", "ABCDEFG"):
        assert secret not in text
    data = yaml.safe_load(text)
    assert data["models"]["providers"]["openai"]["api_key"] == "***"
    assert data["channels"]["slack"]["bot_token"] == "***"
    assert data["channels"]["wecom"]["encoding_aes_key"] == "***"
    assert data["state"]["postgres_url"] == "postgresql://app:***@db:5432/pl"
    assert data["state"]["redis_url"] == "redis://:***@cache:6379/0"
    assert data["state"]["database_url"] == "postgresql://app@db/pl?password=***&sslmode=require"


def test_render_keeps_what_is_not_secret(write_config: Callable[..., Path]) -> None:
    data = yaml.safe_load(render_settings(load_settings(write_config(SECRETS), environ={})))

    assert data["models"]["providers"]["openai"]["base_url"] == "https://api.openai.com/v1"
    assert data["channels"]["wecom"]["corp_id"] == "corp-1"
    assert data["channels"]["dingtalk"]["client_id"] == "ding-id"
    assert data["channels"]["slack"]["app_token"] is None  # unset stays null, not ***
    assert data["gateway"]["port"] == 8080


def test_show_secrets_renders_the_real_values(write_config: Callable[..., Path]) -> None:
    text = render_settings(load_settings(write_config(SECRETS), environ={}), show_secrets=True)

    assert "sk-live-1234" in text
    assert "hunter2" in text


def test_render_header_lists_sources_profile_and_unresolved(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("models:\n  providers:\n    kimi:\n      api_key: ${KIMI_API_KEY}\n")
    write_config("{}\n", name="config.dev.yaml")

    text = render_settings(load_settings(path, environ={}, profile="dev"))

    assert text.splitlines()[:4] == [
        f"# source: {path}",
        f"# source: {path.with_name('config.dev.yaml')}",
        "# profile: dev",
        "# unresolved: models.providers.kimi.api_key "
        "(environment variable KIMI_API_KEY is not set)",
    ]


def test_render_of_defaults_says_so() -> None:
    assert render_settings(load_settings(environ={})).startswith(
        "# source: built-in defaults (no config file)\n"
    )


def test_rendered_settings_with_secrets_load_back_identically(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    settings = load_settings(write_config(SECRETS), environ={})
    rendered = tmp_path / "shown.yaml"
    rendered.write_text(render_settings(settings, show_secrets=True))

    assert load_settings(rendered, environ={}).model_dump() == settings.model_dump()


def test_mask_url_leaves_urls_without_passwords_alone() -> None:
    assert mask_url("postgresql://app@db/pl") == "postgresql://app@db/pl"
    assert mask_url("https://host/path?x=1") == "https://host/path?x=1"


def test_tool_names_that_look_like_secrets_keep_their_permission() -> None:
    settings = load_settings(environ={"PROMPTLINE__TOOLS__GET_TOKEN": "allow"})

    assert yaml.safe_load(render_settings(settings))["tools"] == {"get_token": "allow"}
