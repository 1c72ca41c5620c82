"""Build `Settings` from defaults, ``config.yaml``, its profile, and the environment.

Precedence, later wins: built-in defaults < config.yaml < its ``profiles.<name>`` block <
``config.<name>.yaml`` beside it < ``PROMPTLINE__SECTION__KEY`` variables. Every problem found
on the way is collected, and they are raised together as one `ConfigError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from promptline.config.env_overrides import env_layer
from promptline.config.fieldpath import is_path, resolve_field
from promptline.config.home import (
    PROFILE_ENV,
    config_file_path,
    config_path,
    profile_overlay_path,
    promptline_home,
)
from promptline.config.interpolation import (
    SYNTAX_HINT,
    InterpolationSyntaxError,
    SecretText,
    Unresolved,
    interpolate,
)
from promptline.config.issues import ConfigIssue, Origin, config_error
from promptline.config.keypath import KeyPath, format_path
from promptline.config.layers import Layer, MergedLayers, merge_layers
from promptline.config.settings import Settings
from promptline.config.validation import not_supported_issues, validation_issues
from promptline.config.yaml_source import YamlDocument, read_yaml_file
from promptline.core.errors import ConfigError

__all__ = ["config_path", "load_settings", "promptline_home", "validate_config"]

_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    profile: str | None = None,
) -> Settings:
    """Load the settings; raises `ConfigError` listing every problem found.

    ``path`` overrides ``$PROMPTLINE_CONFIG`` and ``<home>/config.yaml``; a missing default file
    means built-in defaults. ``profile`` overrides ``$PROMPTLINE_PROFILE``. ``environ`` replaces
    ``os.environ`` for everything read from the environment (home, profile, ``${VAR}``
    references, the secret store's master key and ``PROMPTLINE__*`` overrides).
    """
    env = os.environ if environ is None else environ
    result = _load(_plan(path, env, profile), env)
    if result.settings is None:
        raise config_error(result.issues)
    return result.settings


def validate_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    profile: str | None = None,
) -> list[str]:
    """Every problem in the configuration, one line each (empty when it is valid).

    With a profile (argument or ``$PROMPTLINE_PROFILE``) that combination is checked; without
    one the base configuration and then each defined profile are checked, so a mistake in a
    profile that is not active today is found too. Unset ``${VAR}`` references are not
    problems here (see `Settings.unresolved`); a ``${secret:NAME}`` the store cannot give is.
    """
    env = os.environ if environ is None else environ
    plan = _plan(path, env, profile)
    plans = [plan]
    if plan.profile is None:
        plans += [
            _Plan(plan.config_path, plan.explicit, name, from_env=False)
            for name in _defined_profiles(plan.config_path)
        ]
    lines: list[str] = []
    for each in plans:
        for issue in _load(each, env).issues:
            if str(issue) not in lines:
                lines.append(str(issue))
    return lines


@dataclass(frozen=True)
class _Plan:
    config_path: Path
    explicit: bool
    profile: str | None
    from_env: bool


@dataclass
class _Result:
    settings: Settings | None = None
    issues: list[ConfigIssue] = field(default_factory=list)


def _plan(
    path: str | os.PathLike[str] | None, env: Mapping[str, str], profile: str | None
) -> _Plan:
    config_path, explicit = config_file_path(path, env)
    from_env = profile is None
    chosen = profile if profile is not None else env.get(PROFILE_ENV)
    return _Plan(config_path, explicit, chosen or None, from_env and bool(chosen))


def _load(plan: _Plan, env: Mapping[str, str]) -> _Result:
    result = _Result()
    issues = result.issues
    profile_origin = Origin(env_var=PROFILE_ENV) if plan.from_env else Origin()
    if plan.profile is not None and not _PROFILE_NAME.fullmatch(plan.profile):
        issues.append(
            ConfigIssue(
                f"profile name {plan.profile!r} is not valid: use letters, digits, '-' and '_'",
                origin=profile_origin,
            )
        )
        return result
    if plan.explicit and not plan.config_path.exists():
        issues.append(
            ConfigIssue(
                "config file not found; create it, or point PROMPTLINE_CONFIG (or the path "
                "argument) at an existing file",
                origin=Origin(file=plan.config_path),
            )
        )
        return result

    layers = [_defaults_layer(promptline_home(env))]
    sources: list[Path] = []
    readable = _add_file_layers(plan, env, layers, sources, issues, profile_origin)
    environment, env_issues = env_layer(env)
    layers.append(environment)
    issues += env_issues
    if not readable:
        # Checking the rest against a half-read configuration would only add noise.
        return result

    merged = merge_layers(layers)
    secret_refs = _settle_secrets(merged.data, ())
    unresolved = _settle_unresolved(merged.data, ())
    try:
        settings = Settings.model_validate(merged.data)
    except ValidationError as exc:
        issues += validation_issues(exc, Settings, merged)
        return result
    issues += _consistency_issues(settings, unresolved, merged)
    if not issues:
        result.settings = settings.with_provenance(
            unresolved=unresolved,
            sources=tuple(sources),
            profile=plan.profile,
            secret_refs=secret_refs,
        )
    return result


def _add_file_layers(
    plan: _Plan,
    env: Mapping[str, str],
    layers: list[Layer],
    sources: list[Path],
    issues: list[ConfigIssue],
    profile_origin: Origin,
) -> bool:
    """Append the config file, its profile block and overlay; False if one could not be read."""
    readable = True
    blocks: dict[str, Any] = {}
    base: YamlDocument | None = None
    if plan.config_path.exists():
        base = read_yaml_file(plan.config_path)
        sources.append(plan.config_path)
        issues += base.issues
        readable = not base.issues
        blocks = _profile_blocks(base, issues)
        layers.append(_file_layer(base, base.data, (), env, issues))
    if plan.profile is None:
        return readable

    defined = False
    block = blocks.get(plan.profile)
    if base is not None and block is not None:
        defined = True
        layers.append(_file_layer(base, block, ("profiles", plan.profile), env, issues))
    overlay_path = profile_overlay_path(plan.config_path, plan.profile)
    if overlay_path.exists():
        defined = True
        overlay = read_yaml_file(overlay_path)
        sources.append(overlay_path)
        issues += overlay.issues
        readable = readable and not overlay.issues
        layers.append(_file_layer(overlay, overlay.data, (), env, issues))
    if not defined:
        issues.append(_unknown_profile(plan, blocks, profile_origin))
    return readable and defined


def _defaults_layer(home: Path) -> Layer:
    # Every section, in the model's order (so merged data and `unresolved` follow it), plus
    # the only defaults that depend on the home folder; all others live in the model.
    data: dict[str, Any] = {name: {} for name in Settings.model_fields}
    data["state"] = {"sqlite_path": str(home / "state.db"), "file_dir": str(home / "state")}
    data["agent"] = {"workspaces_dir": str(home / "workspaces")}
    data["security"] = {"tokens": {"signing_keys_file": str(home / "signing_keys.json")}}
    return Layer(data=data)


def _profile_blocks(doc: YamlDocument, issues: list[ConfigIssue]) -> dict[str, Any]:
    """Take the ``profiles:`` block out of the base file: name -> mapping of overrides."""
    raw = doc.data.pop("profiles", None)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        issues.append(
            ConfigIssue(
                "expected a mapping of profile names to settings, e.g. profiles: {dev: {...}}",
                key=("profiles",),
                origin=doc.origin(("profiles",)),
            )
        )
        return {}
    blocks: dict[str, Any] = {}
    for name, block in raw.items():
        if block is None:
            blocks[name] = {}
        elif isinstance(block, dict):
            blocks[name] = block
        else:
            issues.append(
                ConfigIssue(
                    "a profile must be a mapping of settings (same sections as the file)",
                    key=("profiles", name),
                    origin=doc.origin(("profiles", name)),
                )
            )
    return blocks


def _file_layer(
    doc: YamlDocument,
    data: dict[str, Any],
    prefix: KeyPath,
    env: Mapping[str, str],
    issues: list[ConfigIssue],
) -> Layer:
    """A layer from ``data`` (all of ``doc``, or its block at ``prefix``), with ``${}`` resolved
    and relative paths anchored at the file's folder."""
    origins: dict[KeyPath, Origin] = {(): Origin(file=doc.path, prefix=prefix)}
    for path, line in doc.lines.items():
        if path[: len(prefix)] == prefix and len(path) > len(prefix):
            origins[path[len(prefix) :]] = Origin(file=doc.path, line=line, prefix=prefix)
    layer = Layer(origins=origins)
    folder = doc.path.absolute().parent
    secrets = _SecretLookup(env)

    def resolve(value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {key: resolve(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item, (*path, index)) for index, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        target = resolve_field(Settings, path)
        origin = layer.origins.get(path, origins[()])
        try:
            text = interpolate(value, env, secrets)
        except ConfigError as exc:  # a secret that cannot be had
            issues.append(ConfigIssue(f"{exc.message}; {exc.hint}", key=path, origin=origin))
            return None
        except InterpolationSyntaxError as exc:
            shown = "" if target is not None and target.secret else f" in {value!r}"
            issues.append(ConfigIssue(f"{exc}{shown}; {SYNTAX_HINT}", key=path, origin=origin))
            return value
        if isinstance(text, SecretText) and target is not None and not target.secret:
            issues.append(ConfigIssue(_SECRET_ELSEWHERE, key=path, origin=origin))
            return None
        if isinstance(text, str) and target is not None and is_path(target):
            return _anchored(text, folder)
        return text

    layer.data = resolve(data, ())
    return layer


_SECRET_ELSEWHERE = (
    "${secret:NAME} may only be used in a credential key (one shown as *** by `promptline "
    "config show`: api_key, bot_token, token, secret, ...), where its value is never shown; "
    "put the value here in clear, or take it from the environment with ${VAR}"
)


class _SecretLookup:
    """Values of ``${secret:NAME}`` from the store of the home that ``env`` names; the store
    (and `cryptography`) is opened only when a reference is met."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __call__(self, name: str) -> str:
        from promptline.config.secrets import SecretStore

        store = SecretStore.for_environment(self._env)
        value = store.get(name)
        if value is None:
            raise ConfigError(
                f"secret {name} is not in the secrets store {store.path}",
                hint=f"set it with `promptline secrets set {name}`",
            )
        return value


def _children(data: Any) -> list[tuple[Any, Any]]:
    """The (key or index, value) pairs of a mapping or list, taken before any is changed."""
    if isinstance(data, dict):
        return list(data.items())
    if isinstance(data, list):
        return list(enumerate(data))
    return []


def _settle_secrets(data: Any, path: KeyPath) -> dict[str, str]:
    """Turn the values that took a secret into plain text; return key path -> the value as
    written (``${secret:NAME}``), which is what is shown in their place."""
    found: dict[str, str] = {}
    for key, value in _children(data):
        here = (*path, key)
        if isinstance(value, SecretText):
            data[key] = str(value)
            found[format_path(here)] = value.template
        else:
            found.update(_settle_secrets(value, here))
    return found


def _anchored(text: str, folder: Path) -> str:
    """A path from a file: ``~`` expanded, relative paths taken from the file's folder."""
    if text in ("", ":memory:"):
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else folder / path)


def _settle_unresolved(data: Any, path: KeyPath) -> dict[str, str]:
    """Empty the keys whose ``${VAR}`` is unset and may be empty; return key path -> VAR.

    Keys that may not be empty keep their `Unresolved` marker, which validation reports with
    the variable's name.
    """
    found: dict[str, str] = {}
    for key, value in _children(data):
        here = (*path, key)
        if isinstance(value, Unresolved):
            target = resolve_field(Settings, here)
            if target is not None and target.nullable:
                data[key] = None
                found[format_path(here)] = value.var
        else:
            found.update(_settle_unresolved(value, here))
    return found


def _consistency_issues(
    settings: Settings, unresolved: Mapping[str, str], merged: MergedLayers
) -> list[ConfigIssue]:
    """Keys that are valid alone but missing given another key (a backend), and keys that ask
    for a feature that is not supported yet.

    A key left empty by an unset ``${VAR}`` is not reported: it is in ``unresolved`` and
    `Settings.require` names the variable when the key is used.
    """
    issues: list[ConfigIssue] = []

    def need(path: KeyPath, value: Any, because: KeyPath, why: str) -> None:
        if value is None and format_path(path) not in unresolved:
            issues.append(
                ConfigIssue(f"must be set {why}", key=path, origin=merged.origin(because))
            )

    state = settings.state
    if state.backend == "postgres" and state.database_url is None:
        need(
            ("state", "postgres_url"),
            state.postgres_url,
            ("state", "backend"),
            "when state.backend is 'postgres' (or set state.database_url)",
        )
    if state.backend == "redis":
        need(
            ("state", "redis_url"),
            state.redis_url,
            ("state", "backend"),
            "when state.backend is 'redis'",
        )
    issues += not_supported_issues(settings, merged)
    return issues


def _unknown_profile(plan: _Plan, blocks: Mapping[str, Any], origin: Origin) -> ConfigIssue:
    overlay = profile_overlay_path(plan.config_path, plan.profile or "")
    defined = sorted({*blocks, *_overlay_profiles(plan.config_path)})
    known = f"; defined profiles: {', '.join(defined)}" if defined else "; no profiles are defined"
    block = (
        f"{plan.config_path.name} has no profiles.{plan.profile} block"
        if plan.config_path.exists()
        else f"there is no config file at {plan.config_path}"
    )
    return ConfigIssue(
        f"profile {plan.profile!r} is not defined: {block} and there is no {overlay.name} "
        f"beside it{known}",
        origin=origin if origin.env_var else Origin(file=plan.config_path),
    )


def _overlay_profiles(config_path: Path) -> list[str]:
    """Profiles that have an overlay file (``config.<name>.yaml``) beside ``config_path``."""
    suffix = config_path.suffix or ".yaml"
    names = []
    for candidate in sorted(config_path.parent.glob(f"{config_path.stem}.*{suffix}")):
        name = candidate.name[len(config_path.stem) + 1 : -len(suffix)]
        if _PROFILE_NAME.fullmatch(name):
            names.append(name)
    return names


def _defined_profiles(config_path: Path) -> list[str]:
    """Every profile defined for ``config_path``: in-file blocks, then overlay files."""
    names: list[str] = []
    if config_path.exists():
        doc = read_yaml_file(config_path)
        blocks = doc.data.get("profiles")
        if isinstance(blocks, dict):
            names += [str(name) for name in blocks if _PROFILE_NAME.fullmatch(str(name))]
    names += [name for name in _overlay_profiles(config_path) if name not in names]
    return names
