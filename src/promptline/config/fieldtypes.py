"""Value types shared by the settings sections (ports, counts, paths, secrets) and their base."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError


def _no_bool(value: Any) -> Any:
    # pydantic reads `true` as 1; a YAML `port: true` is a mistake, not port 1.
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _expand_user(path: Path) -> Path:
    return path.expanduser()


Port = Annotated[int, BeforeValidator(_no_bool), Field(ge=1, le=65535)]
"""A TCP port, 1..65535."""

Percent = Annotated[int, BeforeValidator(_no_bool), Field(ge=1, le=100)]
"""A whole percentage, 1..100."""

Count = Annotated[int, BeforeValidator(_no_bool), Field(ge=1)]
"""A positive whole number (sizes, limits, durations in seconds)."""

Seconds = Annotated[float, BeforeValidator(_no_bool), Field(gt=0)]
"""A duration in seconds, greater than zero (fractions allowed)."""

Dollars = Annotated[float, BeforeValidator(_no_bool), Field(ge=0)]
"""An amount of US dollars, zero or more."""

ExpandedPath = Annotated[Path, AfterValidator(_expand_user)]
"""A filesystem path; a leading ``~`` is expanded."""

Secret = Annotated[str | None, Field(repr=False, json_schema_extra={"secret": True})]
"""A credential: never shown by ``repr`` and masked by ``render_settings``; the only kind of
key that may take a value of the secret store (``${secret:NAME}``)."""


def is_secret_field(extra: Any) -> bool:
    """True when a field's ``json_schema_extra`` marks it as a `Secret`."""
    return isinstance(extra, dict) and extra.get("secret") is True


class Section(BaseModel):
    """Base of every settings model: unknown keys are errors, values are immutable.

    A key given as ``null`` (for instance a section heading with everything under it commented
    out) takes its default, so an empty ``channels:`` means "the default channels".
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and None in data.values():
            return {key: value for key, value in data.items() if value is not None}
        return data
