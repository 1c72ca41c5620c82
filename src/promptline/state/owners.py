"""Where a caller's state is kept.

A tenant's shared values live in the ``global`` scope under ``tenants/<tenant>/<key>``, a
user's own in the ``local`` scope under the namespace ``<tenant>:<user>``, a session's in the
``session`` scope under the session id. The ids are escaped with
`promptline.core.keys.join_key`, so no two callers ever share an address (the tenant ``t1:x``
with the user ``y`` lives at ``t1%3Ax:y``, the tenant ``t1`` with the user ``x:y`` at
``t1:x%3Ay``); ids without ``%`` or the separator are kept as they are, so addresses written
before escaping was introduced are still found.
"""

from __future__ import annotations

import hashlib

from promptline.core.keys import join_key, key_part
from promptline.state.rules import MAX_NAMESPACE_LENGTH

__all__ = ["TENANT_PREFIX", "local_namespace", "tenant_key"]

TENANT_PREFIX = "tenants/"
"""The ``global`` keys of tenants: ``tenants/<tenant>/<key>``."""


def local_namespace(tenant_id: str, user_id: str) -> str:
    """The ``local`` namespace of a tenant's user: ``<tenant>:<user>``, each id escaped.

    Ids too long for a namespace together give ``~`` and the SHA-256 of that text instead:
    it holds no ``:``, so it never equals the namespace of another pair of ids.
    """
    namespace = join_key(tenant_id, user_id)
    if len(namespace) <= MAX_NAMESPACE_LENGTH:
        return namespace
    return "~" + hashlib.sha256(namespace.encode("utf-8", "surrogatepass")).hexdigest()


def tenant_key(tenant_id: str, key: str) -> str:
    """The ``global`` key of a tenant's ``key``: ``tenants/<tenant>/<key>``, the tenant
    escaped (``key`` may hold ``/``: everything after the tenant is the key)."""
    return f"{TENANT_PREFIX}{key_part(tenant_id, '/')}/{key}"
