"""The session export document: ``{"format": "promptline.session", "version": 1, ...}``.

Deterministic: the same session always exports to the same document (no export time, no
database bookkeeping), so export -> import -> export gives it back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from promptline.core.errors import FormatVersionError, InvalidInputError
from promptline.core.messages import Message
from promptline.sessions.models import PermissionSet, Session, SessionStatus, ToolRef
from promptline.sessions.validation import invalid

FORMAT = "promptline.session"
VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExportedSession(_Strict):
    """The record of a session as exported: everything but its history and its tenant."""

    id: str
    user_id: str
    channel: str
    status: SessionStatus
    created_at: AwareDatetime
    expires_at: AwareDatetime | None
    context: dict[str, Any] = Field(default_factory=dict)
    tools: list[ToolRef] = Field(default_factory=list)
    permissions: PermissionSet = Field(default_factory=PermissionSet)
    metadata: dict[str, Any] = Field(default_factory=dict)


class SessionDocument(_Strict):
    """A whole exported session, as `import_` reads it."""

    format: Literal["promptline.session"]
    version: Literal[1]
    session: ExportedSession
    history: list[Message]


def export_document(session: Session) -> dict[str, Any]:
    """The export document of ``session`` (which must hold its full history), JSON-ready."""
    record = ExportedSession(
        id=session.id,
        user_id=session.user_id,
        channel=session.channel,
        status=session.status,
        created_at=session.created_at,
        expires_at=session.expires_at,
        context=session.context,
        tools=session.tools,
        permissions=session.permissions,
        metadata=session.metadata,
    )
    return {
        "format": FORMAT,
        "version": VERSION,
        "session": record.model_dump(mode="json"),
        "history": [message.model_dump(mode="json") for message in session.history],
    }


def parse_document(document: Any) -> SessionDocument:
    """Validate an export document: `FormatVersionError` for another format or version,
    `InvalidInputError` naming the first field of the wrong shape."""
    if isinstance(document, (str, bytes)):
        raise InvalidInputError(
            "a session document must be a JSON object (a dict), not text",
            hint="parse the file first, e.g. json.loads(text)",
            field="(document)",
        )
    if not isinstance(document, Mapping):
        raise InvalidInputError(
            f"a session document must be a JSON object (a dict), not {type(document).__name__}",
            hint="pass what SessionManager.export returned",
            field="(document)",
        )
    kind, version = document.get("format"), document.get("version")
    if kind != FORMAT:
        raise FormatVersionError(
            f"not a session document: format is {kind!r}, expected {FORMAT!r}",
            hint="import a file written by SessionManager.export (promptline sessions export)",
            format=kind,
        )
    if version != VERSION:
        raise FormatVersionError(
            f"session document version {version!r} cannot be read; this release reads "
            f"version {VERSION}",
            hint="export the session again with this release, or upgrade PromptLine to the "
            "release that wrote it",
            version=version,
            supported=[VERSION],
        )
    try:
        return SessionDocument.model_validate(dict(document))
    except ValidationError as exc:
        raise invalid(exc, "") from None


def dump_document(document: Mapping[str, Any]) -> bytes:
    """The document as JSON text with sorted keys: the same session gives the same bytes."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
