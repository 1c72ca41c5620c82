"""docs/configuration.md describes every key of `Settings`, and its YAML examples load."""

from __future__ import annotations

import re
import shlex
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from promptline.config import Settings, load_settings, render_settings
from promptline.config.secrets import SecretStore

DOC = Path(__file__).parent.parent.parent / "docs" / "configuration.md"


def key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key path below ``model``; mapping entries are written ``<name>``."""
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        annotation = field.annotation
        if typing.get_origin(annotation) is dict:
            path += ".<name>"
            paths.append(path)
            annotation = typing.get_args(annotation)[1]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += key_paths(annotation, f"{path}.")
    return paths


def fenced(language: str) -> list[str]:
    """The bodies of the doc's code blocks in ``language``."""
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def yaml_examples() -> list[str]:
    return fenced("yaml")


def test_walk_finds_nested_and_mapping_keys() -> None:
    paths = key_paths(Settings)

    assert "security.resource_limits.memory_mb" in paths
    assert "models.providers.<name>.api_key" in paths
    assert "tools.<name>" in paths
    assert len(paths) > 60


def test_every_settings_key_is_in_the_reference() -> None:
    text = DOC.read_text(encoding="utf-8")

    missing = [path for path in key_paths(Settings) if f"`{path}`" not in text]

    assert missing == []


def test_doc_has_yaml_examples() -> None:
    assert len(yaml_examples()) >= 3


def home_with_secrets(home: Path, text: str) -> dict[str, str]:
    """An environment whose home's secret store holds every secret ``text`` refers to."""
    store = SecretStore(home, {})
    for name in re.findall(r"\$\{secret:([A-Z][A-Z0-9_]*)\}", text):
        store.set(name, f"value-of-{name}")
    return {"PROMPTLINE_HOME": str(home)}


@pytest.mark.parametrize("index", range(len(yaml_examples())))
def test_each_yaml_example_in_the_doc_loads(index: int, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml_examples()[index], encoding="utf-8")
    environ = home_with_secrets(tmp_path / "home", yaml_examples()[index])

    settings = load_settings(path, environ=environ)

    shown = render_settings(settings, show_secrets=True)  # and it can be shown
    assert "value-of-" not in shown


def test_the_secret_example_takes_its_values_from_the_store(tmp_path: Path) -> None:
    example = next(text for text in yaml_examples() if "${secret:" in text)
    path = tmp_path / "config.yaml"
    path.write_text(example, encoding="utf-8")

    settings = load_settings(path, environ=home_with_secrets(tmp_path / "home", example))

    assert settings.models.providers["openai"].api_key == "value-of-OPENAI_API_KEY"
    assert settings.channels.telegram.bot_token == "value-of-TELEGRAM_BOT_TOKEN"
    assert settings.secret_refs == {
        "models.providers.openai.api_key": "${secret:OPENAI_API_KEY}",
        "channels.telegram.bot_token": "${secret:TELEGRAM_BOT_TOKEN}",
    }


def test_profiles_example_in_the_doc_loads_with_each_profile(tmp_path: Path) -> None:
    example = next(text for text in yaml_examples() if "profiles:" in text)
    path = tmp_path / "config.yaml"
    path.write_text(example, encoding="utf-8")

    prod = load_settings(path, environ={"DATABASE_URL": "postgresql://db/pl"}, profile="prod")

    assert load_settings(path, environ={}, profile="dev").agent.default_mode == "act"
    assert prod.database_url() == "postgresql://db/pl"
    assert prod.gateway.host == "0.0.0.0"


def test_python_example_in_the_doc_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # The suite points PROMPTLINE_HOME at an empty folder, so this is the no-file case.
    exec(compile(fenced("python")[0], str(DOC), "exec"), {})

    assert capsys.readouterr().out == "8080\n"


def test_environment_override_examples_in_the_doc_apply() -> None:
    environ = {}
    for line in fenced("sh")[0].splitlines():
        name, _, value = line.partition("=")
        environ[name] = shlex.split(value)[0]

    settings = load_settings(environ=environ)

    assert settings.gateway.port == 9000
    assert settings.security.audit_log is False
    assert settings.models.providers["openai"].api_key == "sk-..."
    assert settings.models.providers["openai"].models == ["gpt-4o", "o3"]
    assert settings.tools == {"shell_execute": "deny"}
