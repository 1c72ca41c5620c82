"""The `Settings` object: key lookup, ``require``, ``database_url``, paths, immutability, repr."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydantic
import pytest

from promptline.config import Settings, load_settings
from promptline.core.errors import ConfigError


def test_get_reads_dotted_paths_through_sections_and_mappings(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("models:\n  providers:\n    x:\n      models: [m1, m2]\n")
    settings = load_settings(path, environ={})

    assert settings.get("gateway.port") == 8080
    assert settings.get("models.providers.x.models[1]") == "m2"
    assert settings.get("security.resource_limits").cpu_percent == 80


def test_get_of_an_unknown_key_suggests_one() -> None:
    with pytest.raises(ConfigError, match=r"gateway has no key 'prot' \(did you mean 'port'\?\)"):
        Settings().get("gateway.prot")


def test_get_of_an_unconfigured_provider_says_which_are_configured() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings().require("models.providers.openai.api_key")

    assert caught.value.message == "models.providers.openai is not configured"


def test_get_of_a_malformed_path_is_an_error() -> None:
    with pytest.raises(ConfigError, match="is not a key path"):
        Settings().get("gateway..port")


def test_require_of_an_empty_key_without_a_variable_says_how_to_set_it() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings().require("models.default")

    assert caught.value.message == "models.default is not set"
    assert "PROMPTLINE__MODELS__DEFAULT" in (caught.value.hint or "")


def test_require_returns_a_set_value() -> None:
    assert Settings().require("agent.default_mode") == "act"


def test_database_url_prefers_the_explicit_url() -> None:
    settings = Settings.model_validate(
        {"state": {"backend": "postgres", "postgres_url": "postgresql://a/b", "database_url": "x"}}
    )

    assert settings.database_url() == "x"


def test_database_url_uses_postgres_for_the_postgres_backend() -> None:
    settings = Settings.model_validate(
        {"state": {"backend": "postgres", "postgres_url": "postgresql://db/pl"}}
    )

    assert settings.database_url() == "postgresql://db/pl"


def test_database_url_uses_postgres_beside_redis_when_given() -> None:
    with_pg = Settings.model_validate(
        {"state": {"backend": "redis", "postgres_url": "postgresql://db/pl"}}
    )
    without_pg = Settings.model_validate({"state": {"backend": "redis", "sqlite_path": "/x.db"}})

    assert with_pg.database_url() == "postgresql://db/pl"
    assert without_pg.database_url() == "sqlite+aiosqlite:////x.db"


def test_database_url_falls_back_to_sqlite_for_file_and_sqlite_backends() -> None:
    for backend in ("file", "sqlite"):
        settings = Settings.model_validate(
            {"state": {"backend": backend, "sqlite_path": "/data/pl.db"}}
        )
        assert settings.database_url() == "sqlite+aiosqlite:////data/pl.db"


def test_database_url_for_postgres_with_an_unset_variable_names_it(
    write_config: Callable[..., Path],
) -> None:
    path = write_config("state:\n  backend: postgres\n  postgres_url: ${DATABASE_URL}\n")
    settings = load_settings(path, environ={})

    with pytest.raises(ConfigError, match="needs environment variable DATABASE_URL"):
        settings.database_url()


def test_paths_expand_tilde() -> None:
    settings = Settings.model_validate({"state": {"sqlite_path": "~/pl/state.db"}})

    assert settings.state.sqlite_path == Path.home() / "pl" / "state.db"


def test_relative_paths_in_a_file_are_relative_to_that_file(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_config("state:\n  sqlite_path: data/state.db\n  file_dir: ./files\n")

    settings = load_settings(path, environ={})

    assert settings.state.sqlite_path == tmp_path / "data" / "state.db"
    assert settings.state.file_dir == tmp_path / "files"


def test_in_memory_sqlite_is_kept(write_config: Callable[..., Path]) -> None:
    settings = load_settings(write_config("state:\n  sqlite_path: ':memory:'\n"), environ={})

    assert settings.database_url() == "sqlite+aiosqlite:///:memory:"


def test_settings_are_immutable() -> None:
    settings = Settings()

    with pytest.raises(pydantic.ValidationError):
        settings.gateway.port = 1  # type: ignore[misc]


def test_repr_hides_secrets() -> None:
    settings = Settings.model_validate(
        {"models": {"providers": {"x": {"api_key": "sk-hidden"}}}, "channels": {}}
    )

    assert "sk-hidden" not in repr(settings)
    assert settings.models.providers["x"].api_key == "sk-hidden"


def test_settings_built_directly_have_no_provenance() -> None:
    settings = Settings()

    assert settings.unresolved == {}
    assert settings.sources == ()
    assert settings.profile is None
