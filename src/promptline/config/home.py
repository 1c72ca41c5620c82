"""Where PromptLine keeps its files: the home folder and the config file inside it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

HOME_ENV = "PROMPTLINE_HOME"
CONFIG_ENV = "PROMPTLINE_CONFIG"
PROFILE_ENV = "PROMPTLINE_PROFILE"
CONFIG_FILE_NAME = "config.yaml"


def promptline_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$PROMPTLINE_HOME`` when set, else ``~/.promptline`` (made absolute, ``~`` expanded)."""
    env = os.environ if environ is None else environ
    raw = env.get(HOME_ENV)
    return Path(raw).expanduser().absolute() if raw else Path.home() / ".promptline"


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
