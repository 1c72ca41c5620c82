"""Which sandbox a call runs in when its agent, its session's channel and its session each
choose one: the strongest (none < process < bubblewrap < docker, ``auto`` resolved first), so
no level can loosen what another set."""

from __future__ import annotations

import itertools

import pytest

from promptline.config.settings import Settings
from promptline.security.sandbox import SANDBOX_STRENGTH, Sandboxes, choice, strongest
from promptline.security.sandbox.base import SandboxKind

KINDS: list[SandboxKind] = ["none", "process", "bubblewrap", "docker"]


def test_the_strength_order_is_none_process_bubblewrap_docker() -> None:
    assert sorted(SANDBOX_STRENGTH, key=SANDBOX_STRENGTH.__getitem__) == KINDS


@pytest.mark.parametrize(("first", "second"), list(itertools.product(KINDS, repeat=2)))
def test_of_every_pair_the_stronger_wins_in_either_order(
    first: SandboxKind, second: SandboxKind
) -> None:
    expected = KINDS[max(KINDS.index(first), KINDS.index(second))]

    assert strongest(first, second) == expected
    assert strongest(second, first) == expected


@pytest.mark.parametrize(
    ("bwrap_works", "other", "expected"),
    [
        (True, "none", "bubblewrap"),
        (True, "process", "bubblewrap"),
        (True, "docker", "docker"),
        (False, "none", "process"),
        (False, "process", "process"),
        (False, "bubblewrap", "bubblewrap"),
        (False, "docker", "docker"),
    ],
)
def test_auto_is_resolved_before_it_is_compared(
    monkeypatch: pytest.MonkeyPatch, bwrap_works: bool, other: SandboxKind, expected: str
) -> None:
    monkeypatch.setattr(choice, "bwrap_problem", lambda: None if bwrap_works else "no bwrap")

    assert strongest("auto", other) == expected
    assert strongest(other, "auto") == expected


def test_a_level_that_chooses_nothing_is_left_out() -> None:
    assert strongest("none", None, None) == "none"
    assert strongest(None, "docker", None) == "docker"


def sandboxes(agent: str | None, channels: dict[str, str], default: str = "process") -> Sandboxes:
    config: dict[str, object] = {
        "security": {"sandbox": default, "sandbox_channels": channels},
        "agents": {"helper": {"sandbox": agent}} if agent else {},
    }
    return Sandboxes(Settings.model_validate(config))


@pytest.mark.parametrize(
    ("agent", "channel", "session"), list(itertools.product(KINDS, [None, *KINDS], [None, *KINDS]))
)
def test_a_call_runs_in_the_strongest_of_its_agent_channel_and_session(
    agent: SandboxKind, channel: SandboxKind | None, session: SandboxKind | None
) -> None:
    chosen = sandboxes(agent, {"group": channel} if channel else {})
    levels = [k for k in (agent, channel, session) if k is not None]
    expected = max(levels, key=KINDS.index)

    assert chosen.kind_for("helper", channel="group", session=session) == expected
    assert chosen.for_call("helper", channel="group", session=session).kind == expected


def test_an_agent_without_a_setting_has_security_sandbox_as_its_level() -> None:
    chosen = sandboxes(None, {"slack": "bubblewrap"}, default="none")

    assert chosen.kind_for("other") == "none"
    assert chosen.kind_for("other", channel="slack") == "bubblewrap"
    assert chosen.kind_for("other", channel="http") == "none"


def test_an_agent_set_to_none_in_a_docker_channel_runs_in_docker() -> None:
    chosen = sandboxes("none", {"telegram": "docker"})

    assert chosen.kind_for("helper", channel="telegram") == "docker"
    assert chosen.kind_for("helper", channel="telegram", session="process") == "docker"
