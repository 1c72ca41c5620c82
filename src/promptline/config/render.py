"""The effective settings as YAML, for ``promptline config show``; secrets masked by default."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from promptline.config.fieldpath import resolve_field
from promptline.config.keypath import KeyPath, format_path
from promptline.config.settings import Settings

MASK = "***"

# Credentials by name, for keys the schema does not mark (and as a second line of defence).
_SECRET_NAME = re.compile(r"(^|_)(api_key|token|secret|password|passwd|aes_key|encrypt_key)$")
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:password|passwd|token|secret|api_key)=)[^&#]*", re.I)


def render_settings(settings: Settings, *, show_secrets: bool = False) -> str:
    """``settings`` as YAML; with ``show_secrets`` it loads back to the same settings.

    Unless ``show_secrets``, credentials (``api_key``, ``bot_token``, ``secret``, ``*_password``,
    ...) become ``***`` and passwords inside URLs become ``user:***@``. A value taken from the
    secret store is always shown as written (``${secret:NAME}``), never as it is. A comment
    header lists the files read, the profile, and keys left empty by unset environment
    variables.
    """
    data = _as_written(settings.model_dump(mode="json"), (), settings.secret_refs)
    if not show_secrets:
        data = _masked(data, (), settings.secret_refs)
    header = [f"# source: {source}" for source in settings.sources] or [
        "# source: built-in defaults (no config file)"
    ]
    if settings.profile:
        header.append(f"# profile: {settings.profile}")
    header += [
        f"# unresolved: {key} (environment variable {var} is not set)"
        for key, var in settings.unresolved.items()
    ]
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return "\n".join(header) + "\n" + body


def mask_url(url: str) -> str:
    """``postgresql://app:pw@db/x`` -> ``postgresql://app:***@db/x`` (also ``?password=``)."""
    url = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", url)


def _as_written(value: Any, path: KeyPath, refs: Mapping[str, str]) -> Any:
    """``value`` with each value of the secret store replaced by its ``${secret:NAME}``."""
    if not refs:
        return value
    if isinstance(value, dict):
        return {key: _as_written(item, (*path, key), refs) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_written(item, (*path, index), refs) for index, item in enumerate(value)]
    return refs.get(format_path(path), value)


def _masked(value: Any, path: KeyPath, refs: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: _masked(item, (*path, key), refs) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, (*path, index), refs) for index, item in enumerate(value)]
    if not isinstance(value, str) or not value or format_path(path) in refs:
        return value
    target = resolve_field(Settings, path)
    if target is not None and target.secret:
        return MASK
    # By name only for free text: a tool called `get_token` keeps its "allow".
    free_text = target is None or target.annotation is str
    if free_text and path and _SECRET_NAME.search(str(path[-1])):
        return MASK
    return mask_url(value)
