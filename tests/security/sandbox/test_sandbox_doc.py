"""docs/security.md stays true: its backends and network values are the ones the settings
accept, its limits and their defaults are the settings model's, the launcher counts as often
as it says, and its example configuration loads with the sandboxes it names."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from promptline.config import load_settings
from promptline.config.settings import ResourceLimitsSettings, SandboxChoice, SandboxNetwork
from promptline.security.sandbox import Sandboxes, launcher

DOC = Path(__file__).parents[3] / "docs" / "security.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def section(doc: str, title: str) -> str:
    start = doc.index(f"\n## {title}\n")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end >= 0 else len(doc)]


def test_the_backends_are_those_the_settings_accept(doc: str) -> None:
    rows = re.findall(r"^\| `([a-z]+)` \| ", section(doc, "Sandboxes"), flags=re.M)
    backends = [row for row in rows if not row.endswith(("_percent", "_mb", "_secs", "_files"))]
    backends = [row for row in backends if row != "max_processes"]

    assert ["auto", *backends] == list(typing.get_args(SandboxChoice))


def test_the_network_values_are_those_the_settings_accept(doc: str) -> None:
    table = section(doc, "Sandboxes").split("### Network", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `sandbox_network: ([a-z]+)`", table, flags=re.M)

    assert rows == list(typing.get_args(SandboxNetwork))


def test_the_limits_and_their_defaults_are_the_settings_models(doc: str) -> None:
    table = section(doc, "Sandboxes").split("### Limits", 1)[1].split("\n\n", 2)[2]
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| `(\d+)` \|", table, flags=re.M))

    defaults = ResourceLimitsSettings().model_dump()
    assert rows == {key: str(value) for key, value in defaults.items()}


def test_the_launcher_counts_processes_as_often_as_it_says(doc: str) -> None:
    assert f"counted every {launcher.POLL_SECS * 1000:g} ms" in doc


def test_the_example_loads_with_a_sandbox_per_agent_and_per_channel(
    doc: str, tmp_path: Path
) -> None:
    [example] = re.findall(r"^```yaml\n(.*?)^```", section(doc, "Sandboxes"), flags=re.S | re.M)
    path = tmp_path / "config.yaml"
    path.write_text(example, encoding="utf-8")

    settings = load_settings(path, environ={})
    sandboxes = Sandboxes(settings)

    assert settings.security.sandbox_pass_env == ["TZ"]
    assert sandboxes.setting_for("builder") == "bubblewrap"
    assert sandboxes.setting_for("ops") == "process"
    assert sandboxes.setting_for("other") == "auto"
    # What the text under the example says it means.
    assert sandboxes.kind_for("ops", channel="http") == "process"
    assert sandboxes.kind_for("ops", channel="slack") == "docker"
    assert sandboxes.kind_for("builder") == "bubblewrap"
    assert sandboxes.kind_for("builder", channel="slack") == "docker"
