"""API keys: who a request comes from. A key belongs to a user of a tenant and has a role;
only its hash is stored, the key itself is shown once, when it is made.

A key reads ``pl_<key id>_<secret>``; the key id finds the record, the secret is checked
against its SHA-256 in constant time. Records live in the state store's global scope under
``auth/keys/<key id>`` (so every state backend keeps them, and a key works on every gateway of
a fleet that shares the store).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from promptline.core.clock import Clock, SystemClock
from promptline.core.errors import AuthenticationError, InvalidInputError, NotFoundError
from promptline.core.ids import new_id
from promptline.security.scopes import ROLES, Role, Scope, scopes_of
from promptline.sessions.models import DEFAULT_TENANT, Principal
from promptline.state.protocols import StateStore

__all__ = ["KEY_PREFIX", "ApiKey", "Caller", "KeyStore", "Role", "key_id_of"]

KEY_PREFIX = "auth/keys/"
_TOKEN = re.compile(r"^pl_(key_[0-9A-Z]{26})_([A-Za-z0-9_-]{20,100})$")
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,255}$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (its hash, never the key itself)."""

    key_id: str
    user_id: str
    tenant_id: str
    role: Role
    name: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """True until revoked."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """The record for listings (no secret: it is not stored)."""
        return {
            "key_id": self.key_id,
            "user_id": self.user_id,
            "tenant_id": self.tenant_id,
            "role": self.role,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from, once its key checked out."""

    user_id: str
    tenant_id: str
    role: Role
    key_id: str | None = None
    family_id: str | None = None
    """The refresh-token family of an access token (None for an API key)."""

    @property
    def is_admin(self) -> bool:
        """True for a tenant's admin."""
        return self.role == "admin"

    @property
    def scopes(self) -> frozenset[Scope]:
        """What the caller's role may do (`promptline.security.scopes.ROLE_SCOPES`)."""
        return scopes_of(self.role)

    def allows(self, scope: Scope) -> bool:
        """True when the caller's role grants ``scope``."""
        return scope in self.scopes

    @property
    def tenant_wide(self) -> bool:
        """True when the caller reaches every user's data of its tenant (``tenant:all``)."""
        return self.allows("tenant:all")

    @property
    def principal(self) -> Principal:
        """What the session store knows the caller as: a user, or one who reaches the whole
        tenant (scope ``tenant:all``: admins and operators)."""
        return Principal(
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            tenant_admin=self.tenant_wide,
        )


class KeyStore:
    """Makes, checks, lists and revokes API keys.

    A key that checked out is remembered for ``cache_secs`` (by the hash of the whole key),
    so a busy client costs one store read per period instead of one per request. A key
    revoked through this store stops working at once; one revoked by another process (the
    CLI, another gateway) stops within ``cache_secs``.
    """

    def __init__(
        self, state: StateStore, *, clock: Clock | None = None, cache_secs: float = 5.0
    ) -> None:
        self._state = state
        self._clock: Clock = clock or SystemClock()
        self._cache_secs = cache_secs
        self._cache: dict[str, tuple[Caller, float]] = {}

    async def create(
        self,
        user_id: str,
        *,
        tenant_id: str = DEFAULT_TENANT,
        role: Role = "user",
        name: str = "",
    ) -> tuple[ApiKey, str]:
        """A new key for ``user_id``: its record and the key itself (shown once)."""
        for field, value in (("user_id", user_id), ("tenant_id", tenant_id)):
            if not isinstance(value, str) or not _NAME.match(value):
                raise InvalidInputError(
                    f"{field} {value!r} is not valid",
                    hint="use letters, digits and _ . : @ - (at most 255)",
                    field=field,
                )
        if role not in ROLES:
            raise InvalidInputError(
                f"role must be one of {', '.join(ROLES)}, not {role!r}", field="role"
            )
        key_id = new_id("key_")
        secret = secrets.token_urlsafe(32)
        record = ApiKey(
            key_id=key_id,
            user_id=user_id,
            tenant_id=tenant_id,
            role=role,
            name=name[:200],
            created_at=self._clock.now(),
        )
        await self._state.set(
            "global", KEY_PREFIX + key_id, _stored(record, _hash(secret)), expected_version=0
        )
        return record, f"pl_{key_id}_{secret}"

    async def authenticate(self, token: str | None) -> Caller:
        """The caller a key belongs to; `AuthenticationError` (the same for every bad key,
        so nothing is learnt about which keys exist) when it does not check out."""
        match = _TOKEN.match(token or "")
        if match is None:
            raise _refused(token)
        digest = _hash(token or "")
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        key_id, secret = match.groups()
        entry = await self._state.get("global", KEY_PREFIX + key_id)
        if entry is None or not isinstance(entry.value, dict):
            raise _refused(token)
        value = entry.value
        if value.get("revoked_at") or not hmac.compare_digest(
            str(value.get("hash", "")), _hash(secret)
        ):
            raise _refused(token)
        found = Caller(
            user_id=str(value["user_id"]),
            tenant_id=str(value["tenant_id"]),
            role=_role(value.get("role")),
            key_id=key_id,
        )
        self._remember(digest, found, now)
        return found

    async def active(self, key_id: str) -> Caller | None:
        """The caller of the key ``key_id`` while it is not revoked, else None (remembered
        for ``cache_secs``, as `authenticate` does)."""
        slot = "id:" + key_id
        cached = self._cache.get(slot)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        entry = await self._state.get("global", KEY_PREFIX + key_id)
        if entry is None or not isinstance(entry.value, dict) or entry.value.get("revoked_at"):
            return None
        found = Caller(
            user_id=str(entry.value["user_id"]),
            tenant_id=str(entry.value["tenant_id"]),
            role=_role(entry.value.get("role")),
            key_id=key_id,
        )
        self._remember(slot, found, now)
        return found

    async def get(self, key_id: str) -> ApiKey | None:
        """The record of ``key_id``, or None."""
        entry = await self._state.get("global", KEY_PREFIX + key_id)
        if entry is None or not isinstance(entry.value, dict):
            return None
        return _record(entry.value)

    def _remember(self, slot: str, found: Caller, now: float) -> None:
        if self._cache_secs > 0:
            if len(self._cache) > 10_000:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            self._cache[slot] = (found, now + self._cache_secs)

    async def list(self, *, tenant_id: str | None = None) -> list[ApiKey]:
        """Every key (of ``tenant_id``), revoked ones included, oldest first."""
        entries = await self._state.list("global", prefix=KEY_PREFIX)
        keys = [_record(e.value) for e in entries if isinstance(e.value, dict)]
        if tenant_id is not None:
            keys = [k for k in keys if k.tenant_id == tenant_id]
        return sorted(keys, key=lambda k: k.created_at)

    async def revoke(self, key_id: str) -> ApiKey:
        """Stop a key from working; `NotFoundError` for an unknown key id."""
        entry = await self._state.get("global", KEY_PREFIX + key_id)
        if entry is None or not isinstance(entry.value, dict):
            raise NotFoundError(
                f"no API key {key_id!r}", hint="list keys with `promptline keys list`"
            )
        record = _record(entry.value)
        self._cache = {k: v for k, v in self._cache.items() if v[0].key_id != key_id}
        if record.revoked_at is not None:
            return record
        value = dict(entry.value, revoked_at=self._clock.now().isoformat())
        await self._state.set("global", KEY_PREFIX + key_id, value, expected_version=entry.version)
        return _record(value)

    async def revoke_user(self, tenant_id: str, user_id: str) -> tuple[str, ...]:
        """Revoke every active key of ``user_id`` in ``tenant_id``; their ids."""
        found = await self.list(tenant_id=tenant_id)
        mine = tuple(k.key_id for k in found if k.user_id == user_id and k.active)
        for key_id in mine:
            await self.revoke(key_id)
        return mine

    async def any(self) -> bool:
        """True when at least one key exists (revoked or not)."""
        return bool(await self._state.list("global", prefix=KEY_PREFIX, limit=1))


def key_id_of(token: str | None) -> str | None:
    """The key id a token names, when it has a key's shape (never the secret)."""
    match = _TOKEN.match(token or "")
    return match.group(1) if match else None


def _role(value: Any) -> Role:
    """A stored role; one this version does not know reads as the least: ``viewer``."""
    for role in ROLES:
        if value == role:
            return role
    return "viewer"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _stored(record: ApiKey, digest: str) -> dict[str, Any]:
    return {**record.to_dict(), "hash": digest}


def _record(value: dict[str, Any]) -> ApiKey:
    revoked = value.get("revoked_at")
    return ApiKey(
        key_id=str(value["key_id"]),
        user_id=str(value["user_id"]),
        tenant_id=str(value["tenant_id"]),
        role=_role(value.get("role")),
        name=str(value.get("name", "")),
        created_at=datetime.fromisoformat(str(value["created_at"])),
        revoked_at=datetime.fromisoformat(str(revoked)) if revoked else None,
    )


_GET_A_KEY = (
    "the gateway's first start keeps an admin key in admin.key in its home folder "
    "(~/.promptline, or $PROMPTLINE_HOME); `promptline keys create --role admin` "
    "on its machine makes another"
)


def _refused(token: str | None) -> AuthenticationError:
    if not token:
        return AuthenticationError(
            "this call needs an API key",
            hint=f"send `Authorization: Bearer <key>`: {_GET_A_KEY}",
        )
    return AuthenticationError(
        "the API key is not valid (unknown, revoked or mistyped)",
        hint=f"check the key: {_GET_A_KEY}",
    )
