"""Layer 3: who may run which tool: the permission policy, approvals, remembered grants and
the gate the tool executor asks; and the sandboxes commands run in (``security.sandbox``).

The names below are loaded on first use, so that importing the sandbox, or another light
module of the package, does not load the permission machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptline._lazy import lazy_names

if TYPE_CHECKING:
    from promptline.security.approvals import (
        ApprovalBroker,
        ApprovalOutcome,
        ApprovalRecord,
        ApprovalRequest,
        GrantScope,
    )
    from promptline.security.audit import Auditor
    from promptline.security.gate import PermissionManager
    from promptline.security.grants import Grant, GrantStore
    from promptline.security.permissions import build_permissions
    from promptline.security.policy import Level, PermissionDecision, PermissionPolicy

__all__ = [
    "ApprovalBroker",
    "ApprovalOutcome",
    "ApprovalRecord",
    "ApprovalRequest",
    "Auditor",
    "Grant",
    "GrantScope",
    "GrantStore",
    "Level",
    "PermissionDecision",
    "PermissionManager",
    "PermissionPolicy",
    "build_permissions",
]

_LAZY = {
    "ApprovalBroker": "promptline.security.approvals",
    "ApprovalOutcome": "promptline.security.approvals",
    "ApprovalRecord": "promptline.security.approvals",
    "ApprovalRequest": "promptline.security.approvals",
    "GrantScope": "promptline.security.approvals",
    "Auditor": "promptline.security.audit",
    "PermissionManager": "promptline.security.gate",
    "Grant": "promptline.security.grants",
    "GrantStore": "promptline.security.grants",
    "Level": "promptline.security.policy",
    "PermissionDecision": "promptline.security.policy",
    "PermissionPolicy": "promptline.security.policy",
    "build_permissions": "promptline.security.permissions",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
