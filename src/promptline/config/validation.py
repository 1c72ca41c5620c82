"""Pydantic's validation errors as `ConfigIssue`s naming the source, the key and what is allowed;
and the keys that load but whose feature does not exist yet.

A setting is a promise. A key of a feature that is not built (the chat platform channels) is
kept in the model, so a config written for it still reads, but a value that would switch the
feature on is refused as "not supported yet"; a value that only waits
for it (a bot token of a channel that is off) is a warning (`unused_key_warnings`).
"""

from __future__ import annotations

import difflib
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from promptline.config.channels import NOT_SUPPORTED_CHANNELS
from promptline.config.fieldpath import FieldTarget, describe, resolve_field
from promptline.config.interpolation import Unresolved
from promptline.config.issues import ConfigIssue
from promptline.config.keypath import KeyPath
from promptline.config.layers import MergedLayers
from promptline.config.settings import Settings

# Errors from our own validators carry a sentence of their own; all others are type/range errors.
_OWN_MESSAGE = {"value_error", "assertion_error"}


def validation_issues(
    exc: ValidationError, root: type[BaseModel], merged: MergedLayers
) -> list[ConfigIssue]:
    """One issue per pydantic error, attributed to the file line or variable that set the key."""
    issues = []
    for error in exc.errors(include_url=False):
        path: KeyPath = tuple(error["loc"])
        issues.append(
            ConfigIssue(_message(error, path, root), key=path or None, origin=merged.origin(path))
        )
    return issues


def _message(error: Any, path: KeyPath, root: type[BaseModel]) -> str:
    kind: str = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(path, root)
    if isinstance(value, Unresolved):
        return (
            f"needs environment variable {value.var}, which is not set, and this key cannot be "
            f"empty; export {value.var}=... or write ${{{value.var}:-default}}"
        )
    target = resolve_field(root, path)
    if kind in _OWN_MESSAGE:
        said = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if target is not None and target.secret and isinstance(value, str) and value:
            # A validator may quote the value it refused; a credential's is never repeated.
            said = said.replace(repr(value), "the value given").replace(value, "***")
        return said
    if target is None:
        return str(error["msg"])
    message = f"expected {describe(target)}, got {_shown(value, target)}"
    guess = _closest_choice(value, target)
    if guess is not None:
        message += f" (did you mean {guess!r}?)"
    elif target.annotation is str and isinstance(value, int | float | bool):
        message += "; put quotes around it to make it text"
    return message


def _unknown_key(path: KeyPath, root: type[BaseModel]) -> str:
    key = str(path[-1])
    parent = resolve_field(root, path[:-1])
    allowed: list[str] = []
    model = parent.annotation if parent is not None else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        allowed = list(model.model_fields)
    if key == "profiles" and len(path) == 1:
        return (
            "unknown key 'profiles': profile blocks belong in the main config file, not in a "
            "profile block or overlay file"
        )
    close = difflib.get_close_matches(key, allowed, n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    allowed_text = f"; allowed here: {', '.join(allowed)}" if allowed else ""
    return f"unknown key {key!r}{guess}{allowed_text}"


def _closest_choice(value: Any, target: FieldTarget) -> str | None:
    if typing.get_origin(target.annotation) is not Literal or not isinstance(value, str):
        return None
    choices = [str(choice) for choice in typing.get_args(target.annotation)]
    close = difflib.get_close_matches(value.lower(), choices, n=1)
    return close[0] if close else None


def _shown(value: Any, target: FieldTarget) -> str:
    """The offending value as the user would recognise it; secrets only by kind."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if target.secret:
        return f"a value of type {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


NOT_SUPPORTED_DOCS = "see 'Not supported yet' in docs/configuration.md"


def not_supported_issues(settings: Settings, merged: MergedLayers) -> list[ConfigIssue]:
    """The keys that ask for a feature PromptLine does not have yet, each attributed to the
    line or variable that set it."""
    issues: list[ConfigIssue] = []

    def refuse(path: KeyPath, why: str) -> None:
        message = f"not supported yet: {why} ({NOT_SUPPORTED_DOCS})"
        issues.append(ConfigIssue(message, key=path, origin=merged.origin(path)))

    channels = settings.channels
    for name, title in NOT_SUPPORTED_CHANNELS.items():
        if getattr(channels, name).enabled:
            refuse(
                ("channels", name, "enabled"),
                f"PromptLine has no {title} channel yet; set it to false (or remove it) and "
                "reach agents over HTTP, the WebSocket or the terminal meanwhile",
            )
    gateway = settings.gateway
    if channels.http.port is not None and channels.http.port != gateway.port:
        refuse(
            ("channels", "http", "port"),
            f"the HTTP channel is served on gateway.port ({gateway.port}), and a port of its "
            f"own is not; remove channels.http.port, or set gateway.port: {channels.http.port}",
        )
    ws_ports = {gateway.port, gateway.websocket_port or gateway.port}
    if channels.websocket.port is not None and channels.websocket.port not in ws_ports:
        where = f"gateway.port ({gateway.port})"
        if gateway.websocket_port is not None:
            where += f" and gateway.websocket_port ({gateway.websocket_port})"
        refuse(
            ("channels", "websocket", "port"),
            f"/v1/ws is served on {where}, and a port of its own is not; remove "
            "channels.websocket.port, or set gateway.websocket_port: "
            f"{channels.websocket.port}",
        )
    return issues


def unused_key_warnings(settings: Settings) -> list[str]:
    """Keys that are set but read by nothing until their feature exists (a chat platform's
    credentials); `promptline config validate` and `promptline doctor` show them."""
    warnings: list[str] = []
    channels = settings.channels
    for name, title in NOT_SUPPORTED_CHANNELS.items():
        channel = getattr(channels, name)
        for key in type(channel).model_fields:
            if key != "enabled" and getattr(channel, key) is not None:
                warnings.append(
                    f"channels.{name}.{key} is set, but PromptLine has no {title} channel yet, "
                    f"so nothing reads it ({NOT_SUPPORTED_DOCS})"
                )
    return warnings
