"""``security.sandbox`` and an agent's own ``sandbox``: the values accepted, the older
``sandbox_enabled`` read as one of them, and ``auto`` resolved in one place."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path

import pytest

from promptline.config import load_settings
from promptline.core.errors import ConfigError
from promptline.security.sandbox import (
    BubblewrapSandbox,
    DockerSandbox,
    Sandboxes,
    choice,
    resolve_sandbox,
)

Write = Callable[..., Path]


def test_the_default_is_auto_and_resolves_to_bubblewrap_where_bwrap_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(choice, "bwrap_problem", lambda: None)

    assert load_settings(environ={}).security.sandbox == "auto"
    assert resolve_sandbox("auto").kind == "bubblewrap"


def test_auto_falls_back_to_process_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(choice, "bwrap_problem", lambda: "bwrap is not installed")

    found = resolve_sandbox("auto")

    assert (found.kind, found.reason, found.problem) == (
        "process",
        "auto: bwrap is not installed, so process",
        None,
    )


def test_bubblewrap_asked_for_where_it_cannot_run_is_a_problem_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(choice, "bwrap_problem", lambda: "bwrap is not installed")

    found = resolve_sandbox("bubblewrap")

    assert (found.kind, found.problem) == ("bubblewrap", "bwrap is not installed")


@pytest.mark.parametrize(("written", "read"), [("true", "auto"), ("false", "process")])
def test_the_older_sandbox_enabled_key_is_read_as_a_sandbox(
    write_config: Write, written: str, read: str
) -> None:
    path = write_config(f"security:\n  sandbox_enabled: {written}\n")

    assert load_settings(path, environ={}).security.sandbox == read


def test_sandbox_enabled_and_sandbox_together_are_refused(write_config: Write) -> None:
    path = write_config("security:\n  sandbox_enabled: true\n  sandbox: none\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert "sandbox_enabled and sandbox are both set: remove sandbox_enabled" in (
        caught.value.message
    )


def test_an_unknown_sandbox_is_refused_with_the_choices(write_config: Write) -> None:
    path = write_config("security:\n  sandbox: podman\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert "expected one of 'auto', 'none', 'process', 'bubblewrap', 'docker', got 'podman'" in (
        caught.value.message
    )


def test_an_agent_may_choose_its_own_sandbox(write_config: Write) -> None:
    path = write_config(
        "security:\n  sandbox: process\n"
        "agents:\n  strict:\n    sandbox: bubblewrap\n  loose:\n    description: x\n"
    )

    sandboxes = Sandboxes(load_settings(path, environ={}))

    assert sandboxes.setting_for("strict") == "bubblewrap"
    assert sandboxes.setting_for("loose") == "process"
    assert sandboxes.setting_for(None) == "process"
    assert sandboxes.for_agent("loose").kind == "process"


def test_the_sandboxes_get_the_network_environment_and_image_settings(
    write_config: Write,
) -> None:
    path = write_config(
        "security:\n  sandbox: bubblewrap\n  sandbox_network: host\n"
        "  sandbox_pass_env: [TZ]\n  sandbox_image: alpine:3\n"
        "agents:\n  boxed:\n    sandbox: docker\n"
    )

    sandboxes = Sandboxes(load_settings(path, environ={}))
    bwrap = sandboxes.for_agent(None)
    boxed = sandboxes.for_agent("boxed")

    assert isinstance(bwrap, BubblewrapSandbox)
    assert isinstance(boxed, DockerSandbox)
    assert (bwrap.network, bwrap.pass_env) == ("host", ("TZ",))
    assert (boxed.network, boxed.image) == ("host", "alpine:3")


@pytest.mark.parametrize(
    ("written", "read"),
    [("false", "none"), ("true", "proxy"), ("none", "none"), ("proxy", "proxy"), ("host", "host")],
)
def test_sandbox_network_is_none_proxy_or_host_and_true_means_the_proxy(
    write_config: Write, written: str, read: str
) -> None:
    path = write_config(f"security:\n  sandbox_network: {written}\n")

    assert load_settings(path, environ={}).security.sandbox_network == read


def test_an_unknown_sandbox_network_names_the_values(write_config: Write) -> None:
    path = write_config("security:\n  sandbox_network: open\n")

    expected = r"security\.sandbox_network: expected one of 'none', 'proxy', 'host', got 'open'"
    with pytest.raises(ConfigError, match=expected):
        load_settings(path, environ={})


def test_the_proxy_network_gets_the_egress_policy_of_the_allow_list(
    write_config: Write,
) -> None:
    path = write_config(
        "security:\n  sandbox: bubblewrap\n  sandbox_network: proxy\n"
        "  egress_allow: [127.0.0.1, intranet.example]\n"
    )

    bwrap = Sandboxes(load_settings(path, environ={})).for_agent(None)

    assert isinstance(bwrap, BubblewrapSandbox)
    assert bwrap.egress is not None
    loopback, metadata = ip_address("127.0.0.1"), ip_address("169.254.169.254")
    assert bwrap.egress("127.0.0.1", [loopback]) is None
    assert bwrap.egress("intranet.example", [ip_address("10.0.0.7")]) is None
    assert bwrap.egress("169.254.169.254", [metadata]) == (
        "169.254.169.254 is a link-local address (the cloud metadata service); "
        "security.egress_allow does not name it"
    )
    assert bwrap.egress("db.example", [ip_address("8.8.8.8"), ip_address("10.0.0.7")]) == (
        "db.example resolves to 10.0.0.7, a private address (the local network); "
        "security.egress_allow does not name it"
    )
    assert bwrap.egress("example.com", [ip_address("93.184.215.14")]) is None
