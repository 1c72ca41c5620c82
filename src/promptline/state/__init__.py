"""Layer 2: key/value state in three scopes (global, session, local) on several backends."""

from promptline.state.protocols import SCOPES, Scope, StateEntry, StateStore

__all__ = ["SCOPES", "Scope", "StateEntry", "StateStore"]
