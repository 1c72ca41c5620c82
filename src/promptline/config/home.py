"""Where PromptLine keeps its files: the home folder and the config file inside it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

HOME_ENV = "PROMPTLINE_HOME"
CONFIG_ENV = "PROMPTLINE_CONFIG"
PROFILE_ENV = "PROMPTLINE_PROFILE"
CONFIG_FILE_NAME = "config.yaml"
ADMIN_KEY_FILE_NAME = "admin.key"


def promptline_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$PROMPTLINE_HOME`` when set, else ``~/.promptline`` (made absolute, ``~`` expanded)."""
    env = os.environ if environ is None else environ
    raw = env.get(HOME_ENV)
    return Path(raw).expanduser().absolute() if raw else Path.home() / ".promptline"


def admin_key_path(environ: Mapping[str, str] | None = None) -> Path:
    """``<home>/admin.key``: the admin API key a gateway's first start made (mode 0600)."""
    return promptline_home(environ) / ADMIN_KEY_FILE_NAME


def make_key_hint(environ: Mapping[str, str] | None = None) -> str:
    """How to get an API key, for a message about a missing or refused one: where a first
    start keeps its admin key (and whether this machine has one), and the command that makes
    another."""
    kept = admin_key_path(environ)
    make = "`promptline keys create --role admin` makes another"
    if kept.is_file():
        return (
            f"the first start's admin key is kept in {kept}: "
            f"export PROMPTLINE_API_KEY=$(cat {kept}); {make}"
        )
    return (
        f"a gateway's first start keeps its admin key in admin.key in its home ({kept} here, "
        f"not there now); on the gateway's machine {make}"
    )


def config_file_path(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Path, bool]:
    """The config file to read and whether it was asked for explicitly.

    An explicit ``path`` wins, then ``$PROMPTLINE_CONFIG``, then ``<home>/config.yaml``. A missing
    explicit file is an error for the loader; a missing default file just means defaults.
    """
    env = os.environ if environ is None else environ
    if path is not None:
        return Path(path).expanduser().absolute(), True
    raw = env.get(CONFIG_ENV)
    if raw:
        return Path(raw).expanduser().absolute(), True
    return promptline_home(env) / CONFIG_FILE_NAME, False


def config_path(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """The config file that `load_settings` reads (see `config_file_path`); it may not exist."""
    return config_file_path(path, environ)[0]


def profile_overlay_path(config_path: Path, profile: str) -> Path:
    """The overlay beside ``config_path``: ``config.yaml`` + ``dev`` -> ``config.dev.yaml``."""
    suffix = config_path.suffix or ".yaml"
    return config_path.with_name(f"{config_path.stem}.{profile}{suffix}")
