"""Keys of features that do not exist yet load at their default, while a value that would
switch the feature on is refused as "not supported yet", naming the key, the line and what to
do; the seed's example, which only switches such features off, still loads (its
`sandbox_enabled: false` as the process sandbox)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promptline.config import load_settings
from promptline.config.validation import unused_key_warnings
from promptline.core.errors import ConfigError

Write = Callable[..., Path]


def refusal(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ or {})
    return caught.value.message


def test_the_seed_example_loads_with_every_feature_it_names_switched_off(
    seed_config: Path,
) -> None:
    settings = load_settings(seed_config, environ={})

    assert settings.security.sandbox == "process"  # its `sandbox_enabled: false`
    assert (settings.channels.slack.enabled, settings.channels.discord.enabled) == (False, False)
    assert unused_key_warnings(settings) == []  # its token variables are unset


def test_a_channel_port_equal_to_the_gateway_port_loads(write_config: Write) -> None:
    path = write_config(
        "gateway:\n  port: 9000\n  websocket_port: 9001\n"
        "channels:\n  http:\n    port: 9000\n  websocket:\n    port: 9001\n"
    )

    settings = load_settings(path, environ={})

    assert (settings.channels.http.port, settings.channels.websocket.port) == (9000, 9001)


def test_a_channel_port_of_its_own_is_refused_naming_the_gateway_key(write_config: Write) -> None:
    path = write_config("channels:\n  http:\n    port: 9000\n  websocket:\n    port: 9001\n")

    lines = refusal(path).splitlines()[1:]

    assert lines == [
        f"  - {path}:3: channels.http.port: not supported yet: the HTTP channel is served on "
        "gateway.port (8080), and a port of its own is not; remove channels.http.port, or set "
        "gateway.port: 9000 (see 'Not supported yet' in docs/configuration.md)",
        f"  - {path}:5: channels.websocket.port: not supported yet: /v1/ws is served on "
        "gateway.port (8080), and a port of its own is not; remove channels.websocket.port, or "
        "set gateway.websocket_port: 9001 (see 'Not supported yet' in docs/configuration.md)",
    ]


def test_channel_ports_left_unset_follow_the_gateway() -> None:
    settings = load_settings(environ={"PROMPTLINE__GATEWAY__PORT": "9000"})

    assert (settings.channels.http.port, settings.channels.websocket.port) == (None, None)
