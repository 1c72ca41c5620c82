"""Access and refresh tokens: an API key, or a member's password, is exchanged for a
short-lived access token (a JWT, `promptline.security.jwt`) and a long-lived refresh token
that gets new ones. Tokens of a password sign-in follow the member: a member removed, or
given another role, has its access tokens refused and its next refresh gets the new role
(or is refused).

A refresh token reads ``pl_rt_<token id>_<secret>`` and is used once: a refresh spends it and
gives a new one of the same *family* (every token descending from one exchange). Presenting
a spent one again means two parties hold it, one of them a thief: the whole family is revoked,
and with it every access token of the family. Like API keys, the records live in the state
store's global scope (``auth/refresh/<token id>``, ``auth/families/<family id>``), hashes
only, so every state backend keeps them and every gateway sharing the store honours them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from promptline.core.clock import Clock, SystemClock
from promptline.core.errors import AuthenticationError, ConflictError
from promptline.core.ids import new_id
from promptline.security import jwt
from promptline.security.auth import Caller, KeyStore
from promptline.security.members import MemberStore
from promptline.state.protocols import StateStore

__all__ = ["FAMILY_PREFIX", "REFRESH_PREFIX", "TokenPair", "TokenService", "looks_like_jwt"]

REFRESH_PREFIX = "auth/refresh/"
FAMILY_PREFIX = "auth/families/"
_REFRESH = re.compile(r"^pl_(rt_[0-9A-Z]{26})_([A-Za-z0-9_-]{20,100})$")


def looks_like_jwt(token: str) -> bool:
    """True for a token shaped as a JWT (three dot-separated parts), not an API key."""
    return token.count(".") == 2 and not token.startswith("pl_")


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What an exchange or a refresh answers."""

    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    family_id: str
    caller: Caller
    """Whom the tokens are for (with the role they carry); not sent."""

    def to_dict(self) -> dict[str, Any]:
        """The wire form (OAuth 2.0's token response)."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
        }


class TokenService:
    """Issues, refreshes, revokes and checks tokens.

    Whether a family is revoked is remembered for ``cache_secs`` (as API keys are): a family
    revoked through this service stops at once, one revoked by another gateway within that
    time.
    """

    def __init__(
        self,
        state: StateStore,
        keys: KeyStore,
        signing: jwt.SigningKeys,
        *,
        issuer: str,
        audience: str,
        access_ttl_secs: int,
        refresh_ttl_secs: int,
        clock: Clock | None = None,
        cache_secs: float = 5.0,
        members: MemberStore | None = None,
    ) -> None:
        self._state = state
        self._keys = keys
        self._members = members
        self.signing = signing
        self._issuer = issuer
        self._audience = audience
        self._access_ttl = access_ttl_secs
        self._refresh_ttl = refresh_ttl_secs
        self._clock: Clock = clock or SystemClock()
        self._cache_secs = cache_secs
        self._revoked: dict[str, tuple[bool, float]] = {}

    async def exchange(self, api_key: str | None) -> TokenPair:
        """A new family for the caller of ``api_key``: its first access and refresh token."""
        found = await self._keys.authenticate(api_key)
        return await self._family(found)

    async def sign_in(self, tenant_id: str, user_id: str, password: str) -> TokenPair:
        """A new family for the member ``user_id`` of ``tenant_id`` whose password this is
        (`AuthenticationError` otherwise, the same whatever was wrong)."""
        if self._members is None:
            raise _refused("signing in with a password is not available here")
        member = await self._members.sign_in(tenant_id, user_id, password)
        return await self._family(Caller(member.user_id, member.tenant_id, member.role))

    async def _family(self, found: Caller) -> TokenPair:
        family_id = new_id("fam_")
        await self._state.set(
            "global",
            FAMILY_PREFIX + family_id,
            {
                "family_id": family_id,
                "key_id": found.key_id,
                "user_id": found.user_id,
                "tenant_id": found.tenant_id,
                "created_at": self._clock.now().isoformat(),
                "revoked_at": None,
            },
            expected_version=0,
        )
        return await self._pair(found, family_id)

    async def refresh(self, refresh_token: str | None) -> TokenPair:
        """Spend ``refresh_token`` for a new pair of its family. A spent one presented again
        revokes the family (`AuthenticationError` naming the reuse)."""
        token_id, value, version = await self._refresh_record(refresh_token)
        family_id = str(value["family_id"])
        if await self._family_revoked(family_id, fresh=True):
            raise _refused("the refresh token's family is revoked", family_id=family_id)
        if value.get("spent_at"):
            await self.revoke_family(family_id, reason="reuse")
            raise _refused(
                "refresh token reuse detected: this token was already spent, so every token "
                "of its family is now revoked",
                hint="sign in again: POST /v1/auth/token with an API key",
                reason="reuse",
            )
        if self._clock.now() >= datetime.fromisoformat(str(value["expires_at"])):
            raise _refused("the refresh token has expired")
        try:
            await self._state.set(
                "global",
                REFRESH_PREFIX + token_id,
                dict(value, spent_at=self._clock.now().isoformat()),
                expected_version=version,
            )
        except ConflictError:
            # Spent by a concurrent refresh: the same token twice, which is reuse.
            await self.revoke_family(family_id, reason="reuse")
            raise _refused(
                "refresh token reuse detected: the token was spent concurrently, so every "
                "token of its family is now revoked",
                reason="reuse",
            ) from None
        if value.get("key_id"):
            found = await self._keys.active(str(value["key_id"]))
            if found is None:
                await self.revoke_family(family_id, reason="key revoked")
                raise _refused("the API key these tokens came from is revoked")
        else:
            found = await self._member_of_family(family_id)
        return await self._pair(found, family_id)

    async def _member_of_family(self, family_id: str) -> Caller:
        """The member a password family belongs to, with its role now; the family is
        revoked when the member is gone."""
        entry = await self._state.get("global", FAMILY_PREFIX + family_id)
        family = entry.value if entry is not None and isinstance(entry.value, dict) else {}
        tenant_id, user_id = str(family.get("tenant_id")), str(family.get("user_id"))
        member = None
        if self._members is not None:
            member = await self._members.get(tenant_id, user_id)
        if member is None:
            await self.revoke_family(family_id, reason="member removed")
            raise _refused("the member these tokens were made for is no longer a member")
        return Caller(member.user_id, member.tenant_id, member.role)

    async def revoke(self, refresh_token: str | None) -> str:
        """Revoke the family of ``refresh_token`` (spent or not); its family id."""
        _, value, _ = await self._refresh_record(refresh_token)
        family_id = str(value["family_id"])
        await self.revoke_family(family_id, reason="revoked")
        return family_id

    async def revoke_family(self, family_id: str, *, reason: str) -> None:
        """Stop every token of ``family_id``, at once on this gateway."""
        for _ in range(5):
            entry = await self._state.get("global", FAMILY_PREFIX + family_id)
            if entry is None or not isinstance(entry.value, dict):
                break
            if entry.value.get("revoked_at"):
                break
            value = dict(entry.value, revoked_at=self._clock.now().isoformat(), reason=reason)
            try:
                await self._state.set(
                    "global", FAMILY_PREFIX + family_id, value, expected_version=entry.version
                )
                break
            except ConflictError:
                continue
        self._revoked[family_id] = (True, time.monotonic() + 3600.0)

    async def verify(self, token: str) -> Caller:
        """The caller of an access token; `AuthenticationError` saying why it is refused."""
        claims = jwt.decode(
            token,
            self.signing,
            now=self._clock.now(),
            issuer=self._issuer,
            audience=self._audience,
        )
        if claims.get("typ") != "access":
            raise _refused("the token is not an access token")
        family_id = claims.get("fam")
        key_id = claims.get("key")
        if not isinstance(family_id, str) or not (key_id is None or isinstance(key_id, str)):
            raise _refused("the token names no family")
        if await self._family_revoked(family_id):
            raise _refused("the token is revoked (its family was revoked)")
        if key_id is not None:
            found = await self._keys.active(key_id)
            if found is None:
                raise _refused("the API key this token came from is revoked")
            said = (claims.get("sub"), claims.get("tid"), claims.get("role"))
            if said != (found.user_id, found.tenant_id, found.role):
                raise _refused("the token's subject, tenant or role does not match its API key")
        else:
            found = await self._member_of_token(claims)
        return Caller(
            user_id=found.user_id,
            tenant_id=found.tenant_id,
            role=found.role,
            key_id=key_id,
            family_id=family_id,
        )

    async def _member_of_token(self, claims: dict[str, Any]) -> Caller:
        """The member an access token of a password sign-in is for, while it is a member
        with the role the token carries."""
        tenant_id, user_id = claims.get("tid"), claims.get("sub")
        member = None
        if self._members is not None and isinstance(tenant_id, str) and isinstance(user_id, str):
            member = await self._members.active(tenant_id, user_id)
        if member is None:
            raise _refused("the member this token was made for is no longer a member")
        if claims.get("role") != member.role:
            raise _refused(
                "the member's role has changed since this token was made",
                hint="refresh the tokens (POST /v1/auth/refresh): the new pair has the new role",
            )
        return Caller(member.user_id, member.tenant_id, member.role)

    async def _pair(self, found: Caller, family_id: str) -> TokenPair:
        now = self._clock.now()
        stamp = int(now.timestamp())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": found.user_id,
            "tid": found.tenant_id,
            "role": found.role,
            "key": found.key_id,
            "fam": family_id,
            "typ": "access",
            "iat": stamp,
            "nbf": stamp,
            "exp": stamp + self._access_ttl,
            "jti": new_id("at_"),
        }
        access = jwt.encode(claims, self.signing.current)
        token_id = new_id("rt_")
        secret = secrets.token_urlsafe(32)
        await self._state.set(
            "global",
            REFRESH_PREFIX + token_id,
            {
                "token_id": token_id,
                "family_id": family_id,
                "key_id": found.key_id,
                "hash": _hash(secret),
                "created_at": now.isoformat(),
                "expires_at": (now + timedelta(seconds=self._refresh_ttl)).isoformat(),
                "spent_at": None,
            },
            expected_version=0,
        )
        return TokenPair(
            access_token=access,
            refresh_token=f"pl_{token_id}_{secret}",
            expires_in=self._access_ttl,
            refresh_expires_in=self._refresh_ttl,
            family_id=family_id,
            caller=found,
        )

    async def _refresh_record(self, token: str | None) -> tuple[str, dict[str, Any], int]:
        match = _REFRESH.match(token or "")
        if match is None:
            raise _refused(
                "a refresh token is needed (pl_rt_...)"
                if not token
                else "the refresh token is not valid"
            )
        token_id, secret = match.groups()
        entry = await self._state.get("global", REFRESH_PREFIX + token_id)
        if (
            entry is None
            or not isinstance(entry.value, dict)
            or not hmac.compare_digest(str(entry.value.get("hash", "")), _hash(secret))
        ):
            raise _refused("the refresh token is not valid (unknown or mistyped)")
        return token_id, entry.value, entry.version

    async def _family_revoked(self, family_id: str, *, fresh: bool = False) -> bool:
        now = time.monotonic()
        cached = self._revoked.get(family_id)
        if not fresh and cached is not None and cached[1] > now:
            return cached[0]
        entry = await self._state.get("global", FAMILY_PREFIX + family_id)
        revoked = (
            entry is None
            or not isinstance(entry.value, dict)
            or bool(entry.value.get("revoked_at"))
        )
        if self._cache_secs > 0:
            if len(self._revoked) > 10_000:
                self._revoked = {k: v for k, v in self._revoked.items() if v[1] > now}
            self._revoked[family_id] = (revoked, now + (3600.0 if revoked else self._cache_secs))
        return revoked


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _refused(message: str, *, hint: str | None = None, **details: Any) -> AuthenticationError:
    return AuthenticationError(
        message,
        hint=hint or "get new tokens: POST /v1/auth/token with an API key or a password",
        **details,
    )
