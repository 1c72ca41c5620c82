"""The encrypted secret store (``<home>/secrets.json``) and ``${secret:NAME}`` in the config:
values encrypted at rest, the master key guarded, rotation, and the value never shown."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from promptline.config import load_settings, render_settings, validate_config
from promptline.config import secrets as secrets_module
from promptline.config.interpolation import InterpolationSyntaxError, interpolate
from promptline.config.secrets import SECRETS_KEY_ENV, SecretStore
from promptline.core.errors import ConfigError, InvalidInputError, NotFoundError
from promptline.storage.files import write_atomically

VALUE = "sk-distinctive-7f3a9c"
PROVIDER = """
models:
  providers:
    lab:
      base_url: "http://127.0.0.1:9/v1"
      api_key: "${secret:LAB_KEY}"
      models: ["m"]
"""


def env_of(home: Path, **more: str) -> dict[str, str]:
    return {"PROMPTLINE_HOME": str(home), **more}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the store ----------------------------------------------------------------------------------


def test_a_value_is_stored_encrypted_in_a_private_file_under_a_key_made_on_first_use(
    home: Path,
) -> None:
    store = SecretStore(home, {})

    store.set("LAB_KEY", VALUE)

    assert store.get("LAB_KEY") == VALUE
    assert VALUE not in store.path.read_text()
    assert mode_of(store.path) == 0o600
    assert mode_of(store.key_path) == 0o600
    assert [s.name for s in store.listing()] == ["LAB_KEY"]
    assert store.listing()[0].set_at.endswith("Z")
    stored = json.loads(store.path.read_text())["secrets"]["LAB_KEY"]["value"]
    assert Fernet(store.key_path.read_bytes().strip()).decrypt(stored.encode()) == VALUE.encode()


def test_the_master_key_from_the_environment_makes_no_key_file(home: Path) -> None:
    key = Fernet.generate_key().decode()
    store = SecretStore(home, {SECRETS_KEY_ENV: key})

    store.set("A", "one")

    assert not store.key_path.exists()
    assert SecretStore(home, {SECRETS_KEY_ENV: key}).get("A") == "one"


def test_a_key_file_others_may_read_is_refused_with_the_chmod_to_run(home: Path) -> None:
    store = SecretStore(home, {})
    store.set("A", "one")
    store.key_path.chmod(0o644)

    with pytest.raises(ConfigError) as caught:
        store.get("A")

    assert "may be read by others (mode 0644)" in caught.value.message
    assert caught.value.hint == f"chmod 600 {store.key_path}"


def test_a_wrong_master_key_is_a_clear_error(home: Path) -> None:
    SecretStore(home, {}).set("A", "one")
    other = SecretStore(home, {SECRETS_KEY_ENV: Fernet.generate_key().decode()})

    with pytest.raises(ConfigError) as caught:
        other.get("A")
    with pytest.raises(ConfigError):
        other.set("B", "two")  # one store never mixes keys

    assert "cannot be decrypted with the master key from the environment variable" in (
        caught.value.message
    )
    assert [s.name for s in SecretStore(home, {}).listing()] == ["A"]


def test_secrets_without_their_key_file_are_an_error_not_a_new_key(home: Path) -> None:
    store = SecretStore(home, {})
    store.set("A", "one")
    store.key_path.unlink()

    with pytest.raises(ConfigError, match="there is no master key"):
        store.set("B", "two")

    assert not store.key_path.exists()


def test_a_damaged_store_is_a_clear_error(home: Path) -> None:
    home.mkdir()
    (home / "secrets.json").write_text("{not json")

    with pytest.raises(ConfigError, match="is damaged"):
        SecretStore(home, {}).listing()


@pytest.mark.parametrize("name", ["lower", "1ABC", "A-B", "", "A B"])
def test_a_name_out_of_the_rule_is_refused(home: Path, name: str) -> None:
    with pytest.raises(InvalidInputError, match="not a valid secret name"):
        SecretStore(home, {}).set(name, "x")


def test_delete_removes_one_secret_and_an_unknown_name_is_not_found(home: Path) -> None:
    store = SecretStore(home, {})
    store.set("A", "one")
    store.set("B", "two")

    store.delete("A")

    assert [s.name for s in store.listing()] == ["B"]
    with pytest.raises(NotFoundError, match="no secret A"):
        store.delete("A")


def test_rotate_reencrypts_every_value_and_keeps_the_old_key_nowhere(home: Path) -> None:
    store = SecretStore(home, {})
    store.set("A", "one")
    store.set("B", "two")
    old_key = store.key_path.read_bytes()

    done = store.rotate()

    assert done.count == 2
    assert done.new_key is None
    assert store.key_path.read_bytes() != old_key
    assert [store.get("A"), store.get("B")] == ["one", "two"]
    assert sorted(p.name for p in home.iterdir()) == [
        ".secrets.json.lock",
        "secrets.json",
        "secrets.key",
    ]
    for entry in json.loads(store.path.read_text())["secrets"].values():
        with pytest.raises(InvalidToken):
            Fernet(old_key.strip()).decrypt(entry["value"].encode())


def test_rotate_with_the_key_in_the_environment_hands_back_the_new_key(home: Path) -> None:
    old = Fernet.generate_key().decode()
    SecretStore(home, {SECRETS_KEY_ENV: old}).set("A", "one")

    done = SecretStore(home, {SECRETS_KEY_ENV: old}).rotate()

    assert done.new_key is not None
    assert done.new_key != old
    assert SecretStore(home, {SECRETS_KEY_ENV: done.new_key}).get("A") == "one"
    with pytest.raises(ConfigError):
        SecretStore(home, {SECRETS_KEY_ENV: old}).get("A")


def test_a_rotation_cut_short_before_the_key_file_was_replaced_still_opens(
    home: Path,
) -> None:
    store = SecretStore(home, {})
    store.set("A", "one")
    # The state between writing the re-encrypted store and renaming the new key over the old.
    new_key = Fernet.generate_key()
    pending = home / "secrets.key.new"
    pending.write_bytes(new_key + b"\n")
    pending.chmod(0o600)
    entries = json.loads(store.path.read_text())
    entries["secrets"]["A"]["value"] = Fernet(new_key).encrypt(b"one").decode()
    store.path.write_text(json.dumps(entries))

    assert store.get("A") == "one"
    store.rotate()
    assert not pending.exists()
    assert store.get("A") == "one"


def test_a_rotation_cut_short_twice_never_loses_the_key_the_store_is_under(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SecretStore(home, {})
    store.set("A", "one")
    pending = home / "secrets.key.new"
    writes: list[Path] = []

    def cut_rename() -> None:
        raise OSError("cut before the rename")

    def cut_store_write_after_new_key(path: Path, data: bytes) -> None:
        if path == store.path and writes[-1:] == [pending]:
            raise OSError("cut before the store write")
        writes.append(path)
        write_atomically(path, data)

    # A rotation cut between its store write and its key's rename...
    monkeypatch.setattr(SecretStore, "_promote_pending", lambda self: cut_rename())
    with pytest.raises(OSError, match="rename"):
        store.rotate()
    monkeypatch.undo()
    assert pending.exists()
    # ... then another cut between writing its new key and writing the store.
    monkeypatch.setattr(secrets_module, "write_atomically", cut_store_write_after_new_key)
    with pytest.raises(OSError, match="store write"):
        store.rotate()
    monkeypatch.undo()

    assert store.get("A") == "one"
    store.rotate()
    assert store.get("A") == "one"
    assert not pending.exists()


# -- ${secret:NAME} in the config ---------------------------------------------------------------


def test_interpolate_takes_a_secret_and_marks_the_value() -> None:
    value = interpolate("Bearer ${secret:TOKEN}", {}, {"TOKEN": "abc"}.__getitem__)

    assert value == "Bearer abc"
    assert getattr(value, "template", None) == "Bearer ${secret:TOKEN}"
    assert repr(value) == repr("Bearer ${secret:TOKEN}")


def test_a_secret_in_an_unused_default_is_not_looked_up() -> None:
    def refuse(name: str) -> str:
        raise AssertionError(f"looked up {name}")

    assert interpolate("${KEY:-${secret:KEY}}", {"KEY": "env"}, refuse) == "env"


@pytest.mark.parametrize("text", ["${secret:}", "${secret:lower}", "${secret:A", "${secret:A-B}"])
def test_a_malformed_secret_reference_is_a_syntax_error(text: str) -> None:
    with pytest.raises(InterpolationSyntaxError):
        interpolate(text, {}, lambda name: "x")


def test_a_provider_key_comes_from_the_store_and_is_shown_as_written(
    home: Path, write_config: Callable[..., Path]
) -> None:
    SecretStore(home, {}).set("LAB_KEY", VALUE)
    path = write_config(PROVIDER)

    settings = load_settings(path, environ=env_of(home))

    assert settings.models.providers["lab"].api_key == VALUE
    assert settings.secret_refs == {"models.providers.lab.api_key": "${secret:LAB_KEY}"}
    for show_secrets in (False, True):
        shown = render_settings(settings, show_secrets=show_secrets)
        assert VALUE not in shown
        assert "api_key: ${secret:LAB_KEY}" in shown
    assert VALUE not in repr(settings)
    # What --show-secrets prints loads back to the same settings.
    again = write_config(render_settings(settings, show_secrets=True), "again.yaml")
    assert load_settings(again, environ=env_of(home)).model_dump() == settings.model_dump()


def test_an_unknown_secret_names_the_key_and_the_command_that_sets_it(
    home: Path, write_config: Callable[..., Path]
) -> None:
    path = write_config(PROVIDER)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=env_of(home))
    problems = validate_config(path, environ=env_of(home))

    expected = (
        f"{path}:5: models.providers.lab.api_key: secret LAB_KEY is not in the secrets store "
        f"{home / 'secrets.json'}; set it with `promptline secrets set LAB_KEY`"
    )
    assert caught.value.message == expected
    assert problems == [expected]


def test_a_secret_is_refused_in_a_key_that_is_not_a_credential(
    home: Path, write_config: Callable[..., Path]
) -> None:
    SecretStore(home, {}).set("HOST", "10.1.2.3")
    path = write_config('gateway:\n  host: "${secret:HOST}"\n')

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=env_of(home))

    assert "gateway.host: ${secret:NAME} may only be used in a credential key" in (
        caught.value.message
    )
    assert "10.1.2.3" not in caught.value.message


def test_a_value_a_validator_refuses_is_not_repeated_for_a_credential(
    home: Path, write_config: Callable[..., Path]
) -> None:
    SecretStore(home, {}).set("HOOK", "not-a-url-but-secret")
    path = write_config('security:\n  alerts:\n    webhook_url: "${secret:HOOK}"\n')

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=env_of(home))

    assert "security.alerts.webhook_url: must be an http:// or https:// URL" in (
        caught.value.message
    )
    assert "not-a-url-but-secret" not in caught.value.message


def test_a_wrong_master_key_fails_the_load_with_a_message_not_a_traceback(
    home: Path, write_config: Callable[..., Path]
) -> None:
    SecretStore(home, {}).set("LAB_KEY", VALUE)
    path = write_config(PROVIDER)
    wrong = env_of(home, **{SECRETS_KEY_ENV: Fernet.generate_key().decode()})

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=wrong)

    assert "models.providers.lab.api_key: secret LAB_KEY in" in caught.value.message
    assert "cannot be decrypted with the master key" in caught.value.message


def test_a_config_without_secrets_does_not_load_cryptography(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    path = write_config("gateway:\n  port: 9000\n")
    code = (
        "import sys; from promptline.config import load_settings; "
        f"load_settings({str(path)!r}); print('cryptography' in sys.modules)"
    )
    env = {**os.environ, "PROMPTLINE_HOME": str(tmp_path / "h")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )

    assert out.stdout.strip() == "False"
