"""Layer 2: sessions (the seed's Session record) as a projection of the event log.

The records are imported eagerly; the manager (and with it SQLAlchemy) only when first used,
so code that needs only `Principal` or `Session` stays quick to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from promptline.sessions.limits import SessionLimits
from promptline.sessions.models import (
    ContextState,
    PermissionSet,
    Principal,
    SearchHit,
    Session,
    SessionStatus,
    ToolRef,
)
from promptline.sessions.projection import SessionProjection

if TYPE_CHECKING:
    from promptline.sessions.export import FORMAT, VERSION, dump_document
    from promptline.sessions.manager import SessionManager

_LAZY = {
    "SessionManager": "promptline.sessions.manager",
    "FORMAT": "promptline.sessions.export",
    "VERSION": "promptline.sessions.export",
    "dump_document": "promptline.sessions.export",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'promptline.sessions' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "FORMAT",
    "VERSION",
    "ContextState",
    "PermissionSet",
    "Principal",
    "SearchHit",
    "Session",
    "SessionLimits",
    "SessionManager",
    "SessionProjection",
    "SessionStatus",
    "ToolRef",
    "dump_document",
]
