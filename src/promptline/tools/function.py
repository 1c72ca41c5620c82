"""``@tool``: a Python function (sync or async) becomes a `Tool` whose JSON schema comes from
its type hints and whose descriptions come from its docstring."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from promptline.core.errors import InvalidInputError, describe_validation
from promptline.tools.base import Progress, ToolContext

__all__ = ["FunctionTool", "tool"]

F = TypeVar("F", bound=Callable[..., Any])
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns|Raises|Yields)\s*:\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class FunctionTool:
    """A `Tool` made from a function; build it with `tool`.

    Parameters annotated `ToolContext` or `Progress` are filled in by the executor and are
    not part of the schema. A sync function runs in a worker thread (so it cannot block the
    event loop) unless ``inline`` is set, which suits quick pure functions. ``applies`` says
    whether the tool is worth offering to a run in a given workspace (`applies_to`).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        read_only: bool = False,
        destructive: bool = False,
        timeout: float | None = None,
        inline: bool = False,
        idempotent: bool | None = None,
        applies: Callable[[Path], bool] | None = None,
    ) -> None:
        self.fn = fn
        self._applies = applies
        self._name = name or fn.__name__
        if not _NAME.match(self._name):
            raise InvalidInputError(
                f"tool name {self._name!r} is not valid",
                hint="use letters, digits, '_', '.', '-' (at most 128), starting with a letter",
            )
        summary, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
        self._description = description if description is not None else summary
        self._read_only = read_only
        self._destructive = destructive
        self._idempotent = read_only if idempotent is None else idempotent
        if timeout is not None and timeout <= 0:
            raise InvalidInputError(f"tool {self._name!r}: timeout must be > 0, got {timeout}")
        self._timeout = timeout
        self._is_async = inspect.iscoroutinefunction(fn)
        self._inline = inline
        self._context_param: str | None = None
        self._progress_param: str | None = None
        self.arguments_model = self._build_model(fn, arg_docs)
        self._parameters = _clean_schema(self.arguments_model.model_json_schema())
        functools.update_wrapper(self, fn)

    # -- Tool ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name the model calls it by."""
        return self._name

    @property
    def description(self) -> str:
        """What it does, for the model."""
        return self._description

    @property
    def parameters(self) -> dict[str, Any]:
        """JSON schema of the arguments object."""
        return self._parameters

    @property
    def read_only(self) -> bool:
        """True when it changes nothing."""
        return self._read_only

    @property
    def destructive(self) -> bool:
        """True when it may lose data."""
        return self._destructive

    @property
    def idempotent(self) -> bool:
        """True when calling it twice with the same arguments does what calling it once does
        (read-only tools are, unless told otherwise): after a restart, a call that was cut
        short is run again only then."""
        return self._idempotent

    @property
    def timeout(self) -> float | None:
        """Its own time limit in seconds (None: the configured ceiling)."""
        return self._timeout

    def applies_to(self, workspace: Path) -> bool:
        """True when the tool is worth offering to a run working in ``workspace``."""
        return True if self._applies is None else self._applies(workspace)

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check and convert ``arguments`` against the schema."""
        if not isinstance(arguments, dict):
            raise InvalidInputError(
                f"arguments of {self._name} must be a JSON object, not {type(arguments).__name__}"
            )
        try:
            model = self.arguments_model.model_validate(arguments)
        except ValidationError as exc:
            raise InvalidInputError(
                f"invalid arguments for {self._name}: "
                f"{describe_validation(exc, whole='(arguments)')}",
                hint=f"arguments must match the schema of {self._name}",
                errors=exc.errors(include_url=False, include_context=False),
            ) from None
        return dict(model.__dict__)

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        """Call the function with ``arguments`` and the injected context/progress."""
        kwargs = arguments
        if self._context_param is not None or self._progress_param is not None:
            kwargs = dict(arguments)
            if self._context_param is not None:
                kwargs[self._context_param] = context
            if self._progress_param is not None:
                kwargs[self._progress_param] = context.progress
        if self._is_async:
            return await self.fn(**kwargs)
        if self._inline:
            return self.fn(**kwargs)
        ctx = contextvars.copy_context()
        return await asyncio.to_thread(ctx.run, functools.partial(self.fn, **kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (the decorator keeps it usable)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self._name!r})"

    # -- schema -------------------------------------------------------------------------------

    def _build_model(self, fn: Callable[..., Any], arg_docs: dict[str, str]) -> type[BaseModel]:
        try:
            # include_extras keeps Annotated[...] metadata: Field(ge=1), descriptions, etc.
            hints = get_type_hints(fn, include_extras=True)
        except Exception as exc:  # a hint naming something not importable
            raise InvalidInputError(
                f"tool {self._name!r}: cannot resolve its type hints: {exc}",
                hint="import the types its parameters use at module level",
            ) from exc
        fields: dict[str, Any] = {}
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise InvalidInputError(
                    f"tool {self._name!r}: *args and **kwargs cannot be described to a model",
                    hint="name every parameter",
                )
            annotation = hints.get(param.name, Any)
            if annotation is ToolContext:
                self._context_param = param.name
                continue
            if annotation is Progress:
                self._progress_param = param.name
                continue
            default = ... if param.default is param.empty else param.default
            doc = arg_docs.get(param.name)
            # description=None would override one given in Annotated[..., Field(description=)].
            info = Field(default, description=doc) if doc else Field(default)
            fields[param.name] = (annotation, info)
        return create_model(
            f"{self._name}_arguments",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )


@overload
def tool(fn: F, /) -> FunctionTool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    destructive: bool = False,
    timeout: float | None = None,
    inline: bool = False,
    idempotent: bool | None = None,
    applies: Callable[[Path], bool] | None = None,
) -> Callable[[F], FunctionTool]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    destructive: bool = False,
    timeout: float | None = None,
    inline: bool = False,
    idempotent: bool | None = None,
    applies: Callable[[Path], bool] | None = None,
) -> FunctionTool | Callable[[F], FunctionTool]:
    """Make a `Tool` of a function: ``@tool`` or ``@tool(read_only=True, timeout=10)``.

    The schema comes from the type hints (anything pydantic understands), the description
    from the docstring's first paragraph and each argument's description from its ``Args:``
    section. ``idempotent`` (default: ``read_only``) says a repeated call does no more than
    one: a call cut short by a crash is then run again after the restart. ``applies(workspace)``
    (default: always) says whether a run working in that folder is offered the tool.
    """

    def wrap(f: F) -> FunctionTool:
        return FunctionTool(
            f,
            name=name,
            description=description,
            read_only=read_only,
            destructive=destructive,
            timeout=timeout,
            inline=inline,
            idempotent=idempotent,
            applies=applies,
        )

    return wrap(fn) if fn is not None else wrap


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (text before the first section) and Google-style argument descriptions."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in doc.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1)
            current = None
            continue
        if section is None:
            summary.append(line)
        elif section in ("Args", "Arguments", "Parameters", "Params"):
            match = _ARG_LINE.match(line)
            if match and (current is None or len(line) - len(line.lstrip()) <= 4):
                current = match.group(1).lstrip("*")
                args[current] = match.group(2).strip()
            elif current is not None and line.strip():
                args[current] = f"{args[current]} {line.strip()}".strip()
    paragraphs = "\n".join(summary).strip().split("\n\n")
    text = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
    return text, args


_NULL = {"type": "null"}


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The arguments schema without what is noise for a model: pydantic's generated titles,
    and the ``anyOf [..., null]`` with ``default: null`` of an optional parameter (one that
    is not required says as much; an explicit null is still accepted)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            options = node.get("anyOf")
            if (
                node.get("default", ...) is None
                and isinstance(options, list)
                and len(options) == 2
                and _NULL in options
                and isinstance(other := options[1 - options.index(_NULL)], dict)
            ):
                rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
                node = {**other, **rest}
            return {
                k: strip(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))
            }
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    cleaned: dict[str, Any] = strip(schema)
    cleaned.setdefault("properties", {})
    cleaned["additionalProperties"] = False
    return cleaned
