"""Overrides from the environment: ``PROMPTLINE__GATEWAY__PORT=9000`` sets ``gateway.port``.

Double underscores separate levels and keys are lower-cased. Values are read as YAML scalars
(``true``, ``8080``, ``[a, b]``) except where the key holds text, which is taken verbatim so an
API key such as ``0123`` or ``no`` stays a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from promptline.config.fieldpath import is_text, resolve_field
from promptline.config.issues import ConfigIssue, Origin
from promptline.config.keypath import KeyPath, format_path
from promptline.config.layers import Layer
from promptline.config.settings import Settings

ENV_PREFIX = "PROMPTLINE__"


def env_override_name(path: KeyPath) -> str:
    """The environment variable that overrides ``path``: ``("gateway", "port")`` ->
    ``PROMPTLINE__GATEWAY__PORT``."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in path)


def env_layer(environ: Mapping[str, str]) -> tuple[Layer, list[ConfigIssue]]:
    """Collect every ``PROMPTLINE__*`` variable into one layer (sorted by name, so stable)."""
    layer = Layer()
    issues: list[ConfigIssue] = []
    set_by: dict[KeyPath, str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        origin = Origin(env_var=name)
        parts = name[len(ENV_PREFIX) :].split("__")
        if not all(parts):
            issues.append(
                ConfigIssue(
                    "has an empty key; write PROMPTLINE__SECTION__KEY with exactly two "
                    "underscores between levels",
                    origin=origin,
                )
            )
            continue
        path: KeyPath = tuple(part.lower() for part in parts)
        clash = next((p for p in set_by if path[: len(p)] == p or p[: len(path)] == path), None)
        if clash is not None:
            issues.append(
                ConfigIssue(
                    f"conflicts with {set_by[clash]}, which sets {format_path(clash)}; "
                    "keep only one of them",
                    key=path,
                    origin=origin,
                )
            )
            continue
        set_by[path] = name
        _set(layer.data, path, _parse_value(path, environ[name]))
        for size in range(1, len(path) + 1):
            layer.origins.setdefault(path[:size], origin)
    return layer, issues


def _parse_value(path: KeyPath, raw: str) -> Any:
    target = resolve_field(Settings, path)
    if target is not None and is_text(target):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        # Not YAML: keep the text and let validation say what was expected instead.
        return raw


def _set(data: dict[str, Any], path: KeyPath, value: Any) -> None:
    here = data
    for part in path[:-1]:
        here = here.setdefault(str(part), {})
    here[str(path[-1])] = value
