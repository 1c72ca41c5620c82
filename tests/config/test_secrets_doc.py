"""The Secrets section of docs/security.md stays true: its commands run as written, its example
loads from the store, and the credential keys it lists are the schema's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from promptline.config import Settings, load_settings
from promptline.config.fieldtypes import is_secret_field
from promptline.config.secrets import KEY_FILE_NAME, SECRETS_KEY_ENV, STORE_FILE_NAME, SecretStore

DOC = Path(__file__).parents[2] / "docs" / "security.md"
SCRIPT = Path(sys.executable).parent / "promptline"


def section() -> str:
    doc = DOC.read_text(encoding="utf-8")
    start = doc.index("\n## Secrets\n")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end >= 0 else len(doc)]


def fenced(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section(), flags=re.S | re.M)


def credential_keys(model: type[BaseModel]) -> set[str]:
    """The names of every `Secret` field below ``model``."""
    found: set[str] = set()
    for name, field in model.model_fields.items():
        if is_secret_field(field.json_schema_extra):
            found.add(name)
        for inner in _models(field.annotation):
            found |= credential_keys(inner)
    return found


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models(arg)]


def test_the_commands_run_as_written(tmp_path: Path) -> None:
    [commands] = fenced("sh")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLINE")}
    env |= {
        "PATH": f"{SCRIPT.parent}{os.pathsep}{env.get('PATH', '')}",
        "PROMPTLINE_HOME": str(home),
        "OPENAI_API_KEY": "sk-from-the-doc",
    }

    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "OPENAI_API_KEY" in done.stdout  # listed
    assert "sk-from-the-doc" not in done.stdout + done.stderr
    assert SecretStore(home, {}).get("OPENAI_API_KEY") == "sk-from-the-doc"
    # The store, its key, and the log that holds the audit record of each change.
    assert sorted(p.name for p in home.iterdir() if not p.name.startswith(".")) == sorted(
        [KEY_FILE_NAME, STORE_FILE_NAME, "state.db"]
    )
    for path in home.rglob("*"):
        if path.is_file():
            assert b"sk-from-the-doc" not in path.read_bytes(), path


def test_the_example_takes_the_provider_key_from_the_store(tmp_path: Path) -> None:
    [example] = fenced("yaml")
    home = tmp_path / "home"
    SecretStore(home, {}).set("OPENAI_API_KEY", "sk-stored")
    path = tmp_path / "config.yaml"
    path.write_text(example, encoding="utf-8")

    settings = load_settings(path, environ={"PROMPTLINE_HOME": str(home)})

    assert settings.models.providers["openai"].api_key == "sk-stored"


def test_the_credential_keys_listed_are_the_schemas() -> None:
    text = section()
    listed = text.split("accepted only in a **credential key**", 1)[1].split(").", 1)[0]
    names = {name.rsplit(".", 1)[-1] for name in re.findall(r"`([a-z_.]+)`", listed)}

    assert names == credential_keys(Settings)


def test_the_files_and_the_variable_are_named_as_in_the_code() -> None:
    text = section()

    for name in (STORE_FILE_NAME, KEY_FILE_NAME, SECRETS_KEY_ENV, f"{KEY_FILE_NAME}.new"):
        assert f"`{name}`" in text
