"""JSON Web Tokens signed with HMAC-SHA256 (RFC 7519, ``alg: HS256`` only), and the ring of
signing keys they are signed and checked with.

Only what PromptLine's access tokens need: one algorithm, a ``kid`` in every header, and the
checks of ``exp``, ``nbf``, ``iss`` and ``aud`` against a `Clock`. Anything else in a header
(``alg: none``, another algorithm, a ``jku``...) is refused, never followed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from promptline.core.clock import Clock, SystemClock
from promptline.core.errors import AuthenticationError
from promptline.storage.files import write_atomically

__all__ = ["ALGORITHM", "SigningKey", "SigningKeys", "decode", "encode"]

ALGORITHM = "HS256"
"""The one algorithm signed with and accepted."""

_KEY_BYTES = 32
_MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A secret that signs tokens, known by its ``kid``. A retired key signs nothing more
    and verifies until ``retire_at`` (when the last token it signed has expired)."""

    kid: str
    secret: bytes
    created_at: datetime
    retire_at: datetime | None = None


def encode(claims: dict[str, Any], key: SigningKey) -> str:
    """``claims`` as a compact JWS signed with ``key`` (its ``kid`` in the header)."""
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}
    signing_input = _b64(_json(header)) + "." + _b64(_json(claims))
    signature = hmac.new(key.secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def decode(
    token: str,
    keys: SigningKeys,
    *,
    now: datetime,
    issuer: str,
    audience: str,
) -> dict[str, Any]:
    """The claims of ``token`` once every check passed; else `AuthenticationError` saying
    which one failed (the algorithm, the key id, the signature, the time window, the issuer
    or the audience)."""
    if len(token) > _MAX_TOKEN_CHARS:
        raise _refused("the token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise _refused("the token is not a JWT (header.claims.signature)")
    header = _part(parts[0], "header")
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise _refused(f"the token's algorithm {alg!r} is not accepted (only {ALGORITHM})")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise _refused("the token names no signing key (kid)")
    key = keys.verifying(kid, now)
    if key is None:
        raise _refused(f"the token's signing key {kid!r} is unknown or retired")
    signing_input = (parts[0] + "." + parts[1]).encode("ascii", errors="replace")
    expected = hmac.new(key.secret, signing_input, hashlib.sha256).digest()
    try:
        signature = _unb64(parts[2])
    except ValueError:
        raise _refused("the token's signature is not base64url") from None
    if not hmac.compare_digest(expected, signature):
        raise _refused("the token's signature does not check out")
    claims = _part(parts[1], "claims")
    stamp = now.timestamp()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise _refused("the token has no expiry (exp)")
    if stamp >= exp:
        raise _refused("the token has expired", hint="get a new one: POST /v1/auth/refresh")
    if nbf is not None and (not isinstance(nbf, int | float) or stamp < nbf):
        raise _refused("the token is not valid yet (nbf)")
    if claims.get("iss") != issuer:
        raise _refused(f"the token's issuer is not {issuer!r}")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise _refused(f"the token's audience is not {audience!r}")
    return claims


class SigningKeys:
    """The signing keys of a home, kept in one JSON file (mode 0600): the newest signs, the
    retired ones verify until their ``retire_at``. The file is made, with one key, on first
    use."""

    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        self.path = path
        self._clock: Clock = clock or SystemClock()
        self._keys: list[SigningKey] | None = None
        self._stamp: int | None = None
        self._checked: datetime | None = None

    @property
    def keys(self) -> list[SigningKey]:
        """Every kept key, oldest first (loaded, or made, on first use). The file is looked
        at again at most once a second: a rotation by another process (`promptline auth
        rotate-key`) is picked up without a restart."""
        now = self._clock.now()
        if (
            self._keys is not None
            and self._checked is not None
            and timedelta(0) <= now - self._checked < timedelta(seconds=1)
        ):
            return self._keys
        self._checked = now
        stamp = _stamp(self.path)
        if self._keys is None or stamp != self._stamp:
            self._keys = self._load()
            self._stamp = stamp
            if not self._keys:
                self._keys = [_new_key(self._clock.now())]
                self._save()
        return self._keys

    def ensure(self) -> SigningKey:
        """Load the keys, or make the file with its first key, now; the current key."""
        return self.current

    @property
    def current(self) -> SigningKey:
        """The key new tokens are signed with."""
        return self.keys[-1]

    def verifying(self, kid: str, now: datetime) -> SigningKey | None:
        """The key ``kid`` while it may verify tokens, else None."""
        for key in self.keys:
            if key.kid == kid:
                return key if key.retire_at is None or now < key.retire_at else None
        return None

    def rotate(self, *, keep_verifying_secs: float) -> SigningKey:
        """A new signing key; the current one verifies ``keep_verifying_secs`` more (the
        lifetime of the tokens it signed), keys already past their time are dropped."""
        now = self._clock.now()
        kept = [k for k in self.keys if k.retire_at is None or now < k.retire_at]
        retire_at = now + timedelta(seconds=keep_verifying_secs)
        kept = [SigningKey(k.kid, k.secret, k.created_at, k.retire_at or retire_at) for k in kept]
        fresh = _new_key(now)
        self._keys = [*kept, fresh]
        self._save()
        return fresh

    def _load(self) -> list[SigningKey]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [
            SigningKey(
                kid=str(item["kid"]),
                secret=_unb64(str(item["secret"])),
                created_at=datetime.fromisoformat(str(item["created_at"])),
                retire_at=datetime.fromisoformat(str(item["retire_at"]))
                if item.get("retire_at")
                else None,
            )
            for item in raw.get("keys", [])
        ]

    def _save(self) -> None:
        data = {
            "keys": [
                {
                    "kid": k.kid,
                    "secret": _b64(k.secret),
                    "created_at": k.created_at.isoformat(),
                    "retire_at": k.retire_at.isoformat() if k.retire_at else None,
                }
                for k in self._keys or []
            ]
        }
        write_atomically(self.path, json.dumps(data, indent=2).encode())
        self._stamp = _stamp(self.path)


def _stamp(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _new_key(now: datetime) -> SigningKey:
    return SigningKey(
        kid="k" + now.strftime("%Y%m%d%H%M%S") + secrets.token_hex(3),
        secret=secrets.token_bytes(_KEY_BYTES),
        created_at=now,
    )


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from None


def _part(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(_unb64(text))
    except (ValueError, UnicodeDecodeError):
        raise _refused(f"the token's {name} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise _refused(f"the token's {name} is not a JSON object")
    return value


def _refused(message: str, *, hint: str | None = None) -> AuthenticationError:
    return AuthenticationError(
        message, hint=hint or "get a token: POST /v1/auth/token with an API key"
    )
