"""What a control-plane method receives besides its params: the services, the caller of the
connection, and the connection's subscriptions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from promptline.gateway.ws.subscriptions import Subscriptions
from promptline.security.auth import Caller

if TYPE_CHECKING:
    from promptline.app import App

__all__ = ["MethodContext"]


@dataclass(frozen=True, slots=True)
class MethodContext:
    """One connection, as its methods see it."""

    app: App
    caller: Caller
    subscriptions: Subscriptions
    source: str | None = None
    """The address the connection comes from."""
