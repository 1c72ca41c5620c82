"""The members of a tenant: users with a role and, to sign in without an API key, a password.

A member is kept in the state store's global scope under ``auth/members/<tenant>/<user>``
(so every state backend keeps them and every gateway of a fleet sharing the store knows
them). A password is kept as an scrypt hash (a random salt of 16 bytes, n=2**14, r=8, p=1),
never as itself. `MemberStore.sign_in` checks a password in constant time and takes as long
for a user that does not exist as for a wrong password, so the answer tells nothing of who
is a member; after `LOCK_AFTER_FAILURES` failed sign-ins of one member within
`LOCK_WINDOW_SECS`, that member's sign-ins are refused for `LOCK_WINDOW_SECS` (counted in
this process), whatever the password.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from promptline.core.clock import Clock, SystemClock
from promptline.core.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
)
from promptline.security.scopes import ROLES, Role
from promptline.state.protocols import StateStore

__all__ = [
    "LOCK_AFTER_FAILURES",
    "LOCK_WINDOW_SECS",
    "MEMBER_PREFIX",
    "MIN_PASSWORD_CHARS",
    "Member",
    "MemberStore",
    "change_details",
    "hash_password",
    "password_matches",
]

MEMBER_PREFIX = "auth/members/"
MIN_PASSWORD_CHARS = 12
"""The shortest password a member may be given."""
MAX_PASSWORD_CHARS = 1024
LOCK_AFTER_FAILURES = 5
"""Failed sign-ins of one member within `LOCK_WINDOW_SECS` that lock it for as long."""
LOCK_WINDOW_SECS = 300.0

_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,255}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_SCRYPT_MEMORY = 64 * 1024 * 1024
_DUMMY_SALT = b"promptline-none!"


def hash_password(password: str) -> str:
    """``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (base64) of ``password`` with a new salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, **_SCRYPT)
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def password_matches(password: str, stored: str | None) -> bool:
    """True when ``password`` is the one ``stored`` (a `hash_password`) was made from. With
    nothing stored the same work is done, and the answer is False."""
    parts = (stored or "").split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        _scrypt(password, _DUMMY_SALT, **_SCRYPT)
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        _scrypt(password, _DUMMY_SALT, **_SCRYPT)
        return False
    try:
        derived = _scrypt(password, salt, n=n, r=r, p=p)
    except ValueError:  # parameters no scrypt takes: not a hash this store made
        return False
    return hmac.compare_digest(derived, expected)


def _scrypt(password: str, salt: bytes, *, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_SCRYPT_MEMORY,
        dklen=32,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Member:
    """A user of a tenant, with a role (never the password: only whether there is one)."""

    tenant_id: str
    user_id: str
    role: Role
    has_password: bool
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The member for listings and answers."""
        return {
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "role": self.role,
            "has_password": self.has_password,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def change_details(before: Member, after: Member, new_password: str | None) -> dict[str, Any]:
    """What the audit record of a member's change says of it (never a password)."""
    if new_password is not None:
        password = "set"
    elif before.has_password and not after.has_password:
        password = "removed"
    else:
        password = "unchanged"
    return {"role": {"from": before.role, "to": after.role}, "password": password}


@dataclass(slots=True)
class _Failures:
    window_start: float
    count: int


class MemberStore:
    """Adds, changes, lists and removes members, and signs them in.

    A member that checked out (`active`) is remembered for ``cache_secs``: a member removed
    or given another role through this store changes at once, through another process
    within that time.
    """

    def __init__(
        self,
        state: StateStore,
        *,
        clock: Clock | None = None,
        cache_secs: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._clock: Clock = clock or SystemClock()
        self._cache_secs = cache_secs
        self._cache: dict[tuple[str, str], tuple[Member | None, float]] = {}
        self._monotonic = monotonic
        self._failures: dict[tuple[str, str], _Failures] = {}

    async def add(
        self, tenant_id: str, user_id: str, *, role: Role = "user", password: str | None = None
    ) -> Member:
        """A new member; `ConflictError` when ``user_id`` is one of ``tenant_id`` already."""
        _check_names(tenant_id, user_id)
        _check_role(role)
        digest = None if password is None else await _hashed(password)
        now = self._clock.now().isoformat()
        value = {
            "tenant_id": tenant_id,
            "user_id": user_id,
            "role": role,
            "password": digest,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._state.set("global", _key(tenant_id, user_id), value, expected_version=0)
        except ConflictError:
            raise ConflictError(
                f"{user_id!r} is a member of {tenant_id!r} already",
                hint="change the member instead (PATCH /v1/members/{user_id}, "
                "`promptline members set`)",
            ) from None
        self._cache.pop((tenant_id, user_id), None)
        return _member(value)

    async def change(
        self,
        tenant_id: str,
        user_id: str,
        *,
        role: Role | None = None,
        password: str | None = None,
        clear_password: bool = False,
    ) -> tuple[Member, Member]:
        """Give a member another role and/or password; the member before and after.
        `NotFoundError` for one that does not exist."""
        _check_names(tenant_id, user_id)
        if role is not None:
            _check_role(role)
        digest = None if password is None else await _hashed(password)
        for _ in range(5):
            entry = await self._state.get("global", _key(tenant_id, user_id))
            if entry is None or not isinstance(entry.value, dict):
                raise _unknown(tenant_id, user_id)
            value = dict(entry.value, updated_at=self._clock.now().isoformat())
            if role is not None:
                value["role"] = role
            if digest is not None:
                value["password"] = digest
            elif clear_password:
                value["password"] = None
            try:
                await self._state.set(
                    "global", _key(tenant_id, user_id), value, expected_version=entry.version
                )
            except ConflictError:
                continue
            self._cache.pop((tenant_id, user_id), None)
            return _member(entry.value), _member(value)
        raise ConflictError(f"the member {user_id!r} is being changed elsewhere; try again")

    async def remove(self, tenant_id: str, user_id: str) -> Member:
        """Remove a member (what was removed); `NotFoundError` for one that does not exist."""
        _check_names(tenant_id, user_id)
        entry = await self._state.get("global", _key(tenant_id, user_id))
        if entry is None or not isinstance(entry.value, dict):
            raise _unknown(tenant_id, user_id)
        await self._state.delete("global", _key(tenant_id, user_id))
        self._cache[(tenant_id, user_id)] = (None, self._monotonic() + self._cache_secs)
        return _member(entry.value)

    async def get(self, tenant_id: str, user_id: str) -> Member | None:
        """The member, or None."""
        if not _NAME.match(tenant_id or "") or not _NAME.match(user_id or ""):
            return None
        entry = await self._state.get("global", _key(tenant_id, user_id))
        if entry is None or not isinstance(entry.value, dict):
            return None
        return _member(entry.value)

    async def active(self, tenant_id: str, user_id: str) -> Member | None:
        """`get`, remembered for ``cache_secs`` (checked on every request of a token)."""
        now = self._monotonic()
        cached = self._cache.get((tenant_id, user_id))
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await self.get(tenant_id, user_id)
        if self._cache_secs > 0:
            if len(self._cache) > 10_000:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            self._cache[(tenant_id, user_id)] = (found, now + self._cache_secs)
        return found

    async def list(self, tenant_id: str) -> list[Member]:
        """The members of ``tenant_id``, by user id."""
        _check_name("tenant_id", tenant_id)
        entries = await self._state.list("global", prefix=f"{MEMBER_PREFIX}{tenant_id}/")
        members = [_member(e.value) for e in entries if isinstance(e.value, dict)]
        return sorted(members, key=lambda m: m.user_id)

    async def sign_in(self, tenant_id: str, user_id: str, password: str) -> Member:
        """The member whose password this is; `AuthenticationError` (the same for an
        unknown member, one without a password and a wrong password), or `RateLimitedError`
        while the member is locked after repeated failures."""
        subject = (str(tenant_id), str(user_id))
        now = self._monotonic()
        failures = self._failures.get(subject)
        if failures is not None and now - failures.window_start >= LOCK_WINDOW_SECS:
            failures = None
            self._failures.pop(subject, None)
        if failures is not None and failures.count >= LOCK_AFTER_FAILURES:
            wait = LOCK_WINDOW_SECS - (now - failures.window_start)
            raise RateLimitedError(
                "too many failed sign-ins of this member: try again later, or ask an admin "
                "to set a new password",
                retry_after=max(1.0, wait),
            )
        member: Member | None = None
        stored: str | None = None
        if _NAME.match(tenant_id or "") and _NAME.match(user_id or ""):
            entry = await self._state.get("global", _key(tenant_id, user_id))
            if entry is not None and isinstance(entry.value, dict):
                member = _member(entry.value)
                stored = entry.value.get("password")
        text = password if isinstance(password, str) else ""
        matched = await asyncio.to_thread(password_matches, text[:MAX_PASSWORD_CHARS], stored)
        if member is None or not matched:
            if len(self._failures) > 10_000:
                self._failures = {
                    k: v
                    for k, v in self._failures.items()
                    if now - v.window_start < LOCK_WINDOW_SECS
                }
            seen = self._failures.setdefault(subject, _Failures(now, 0))
            seen.count += 1
            raise AuthenticationError(
                "the tenant, user or password is not right",
                hint="check them, or sign in with an API key (Authorization: Bearer pl_key_...)",
            )
        self._failures.pop(subject, None)
        return member


async def _hashed(password: str) -> str:
    if not isinstance(password, str):
        raise InvalidInputError("the password must be a string", field="password")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInputError(
            f"the password is shorter than {MIN_PASSWORD_CHARS} characters",
            hint="choose a longer one (a few words make a good one)",
            field="password",
        )
    if len(password) > MAX_PASSWORD_CHARS or "\x00" in password:
        raise InvalidInputError(
            f"the password must be at most {MAX_PASSWORD_CHARS} characters, with no NUL",
            field="password",
        )
    return await asyncio.to_thread(hash_password, password)


def _key(tenant_id: str, user_id: str) -> str:
    return f"{MEMBER_PREFIX}{tenant_id}/{user_id}"


def _check_names(tenant_id: str, user_id: str) -> None:
    _check_name("tenant_id", tenant_id)
    _check_name("user_id", user_id)


def _check_name(field: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInputError(
            f"{field} {value!r} is not valid",
            hint="use letters, digits and _ . : @ - (at most 255)",
            field=field,
        )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def _unknown(tenant_id: str, user_id: str) -> NotFoundError:
    return NotFoundError(
        f"{user_id!r} is not a member of {tenant_id!r}",
        hint="list the members: GET /v1/members, `promptline members list`",
    )


def _member(value: dict[str, Any]) -> Member:
    role = value.get("role")
    return Member(
        tenant_id=str(value["tenant_id"]),
        user_id=str(value["user_id"]),
        role=role if role in ROLES else "viewer",
        has_password=bool(value.get("password")),
        created_at=datetime.fromisoformat(str(value["created_at"])),
        updated_at=datetime.fromisoformat(str(value.get("updated_at") or value["created_at"])),
    )
