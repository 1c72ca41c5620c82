"""HS256 JSON Web Tokens and their signing keys: what is accepted, and every refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from promptline.core.clock import ManualClock
from promptline.core.errors import AuthenticationError
from promptline.security import jwt

ISS, AUD = "promptline", "promptline"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(clock: ManualClock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    base = {"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "nbf": now, "exp": now + 900}
    return base | changes


def decode(token: str, ring: jwt.SigningKeys, clock: ManualClock) -> dict[str, Any]:
    return jwt.decode(token, ring, now=clock.now(), issuer=ISS, audience=AUD)


def refused(token: str, ring: jwt.SigningKeys, clock: ManualClock) -> str:
    with pytest.raises(AuthenticationError) as caught:
        decode(token, ring, clock)
    return caught.value.message


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ring(tmp_path: Path, clock: ManualClock) -> jwt.SigningKeys:
    return jwt.SigningKeys(tmp_path / "home" / "signing_keys.json", clock=clock)


def test_a_signed_token_decodes_to_its_claims(ring: jwt.SigningKeys, clock: ManualClock) -> None:
    token = jwt.encode(claims(clock), ring.current)

    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT", "kid": ring.current.kid}
    assert decode(token, ring, clock)["sub"] == "alice"


def test_the_keys_file_is_made_on_first_use_private_and_kept(
    ring: jwt.SigningKeys, clock: ManualClock
) -> None:
    kid = ring.current.kid

    assert stat.S_IMODE(ring.path.stat().st_mode) == 0o600
    assert jwt.SigningKeys(ring.path, clock=clock).current.kid == kid


def test_expiry_follows_the_clock(ring: jwt.SigningKeys, clock: ManualClock) -> None:
    token = jwt.encode(claims(clock), ring.current)
    clock.advance(899)
    assert decode(token, ring, clock)["sub"] == "alice"

    clock.advance(1)
    assert refused(token, ring, clock) == "the token has expired"


def test_a_token_not_valid_yet_is_refused(ring: jwt.SigningKeys, clock: ManualClock) -> None:
    later = int(clock.now().timestamp()) + 60
    token = jwt.encode(claims(clock, nbf=later), ring.current)

    assert refused(token, ring, clock) == "the token is not valid yet (nbf)"
    clock.advance(60)
    assert decode(token, ring, clock)["nbf"] == later


def test_a_token_without_exp_is_refused(ring: jwt.SigningKeys, clock: ManualClock) -> None:
    body = claims(clock)
    del body["exp"]

    assert refused(jwt.encode(body, ring.current), ring, clock) == "the token has no expiry (exp)"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"iss": "someone-else"}, "the token's issuer is not 'promptline'"),
        ({"aud": "another-service"}, "the token's audience is not 'promptline'"),
    ],
)
def test_wrong_issuer_or_audience_is_refused(
    ring: jwt.SigningKeys, clock: ManualClock, change: dict[str, str], message: str
) -> None:
    assert refused(jwt.encode(claims(clock, **change), ring.current), ring, clock) == message


def test_alg_none_is_refused(ring: jwt.SigningKeys, clock: ManualClock) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": ring.current.kid}).encode())
    body = b64(json.dumps(claims(clock)).encode())

    message = refused(f"{header}.{body}.", ring, clock)

    assert message == "the token's algorithm 'none' is not accepted (only HS256)"


@pytest.mark.parametrize("alg", ["HS512", "RS256", "none", "NONE", None])
def test_any_algorithm_but_hs256_is_refused(
    ring: jwt.SigningKeys, clock: ManualClock, alg: str | None
) -> None:
    key = ring.current
    header = b64(json.dumps({"alg": alg, "kid": key.kid}).encode())
    body = b64(json.dumps(claims(clock)).encode())
    signature = b64(hmac.new(key.secret, f"{header}.{body}".encode(), hashlib.sha256).digest())

    assert "is not accepted (only HS256)" in refused(f"{header}.{body}.{signature}", ring, clock)


def test_a_forged_signature_is_refused(
    ring: jwt.SigningKeys, clock: ManualClock, tmp_path: Path
) -> None:
    other = jwt.SigningKeys(tmp_path / "other.json", clock=clock)
    forged_key = jwt.SigningKey(ring.current.kid, other.current.secret, clock.now())

    forged = jwt.encode(claims(clock), forged_key)

    assert refused(forged, ring, clock) == "the token's signature does not check out"


def test_changed_claims_break_the_signature(ring: jwt.SigningKeys, clock: ManualClock) -> None:
    header, _, signature = jwt.encode(claims(clock), ring.current).split(".")
    body = b64(json.dumps(claims(clock, sub="admin")).encode())

    assert refused(f"{header}.{body}.{signature}", ring, clock) == (
        "the token's signature does not check out"
    )


def test_an_unknown_kid_is_refused(ring: jwt.SigningKeys, clock: ManualClock) -> None:
    stranger = jwt.SigningKey("k-nobody", ring.current.secret, clock.now())

    message = refused(jwt.encode(claims(clock), stranger), ring, clock)

    assert message == "the token's signing key 'k-nobody' is unknown or retired"


@pytest.mark.parametrize(
    "garbage", ["", "a.b", "a.b.c.d", "!!!.???.###", "eyJhbGciOiJIUzI1NiJ9.e30.%%%", "x" * 9000]
)
def test_garbage_is_refused_not_crashed_on(
    ring: jwt.SigningKeys, clock: ManualClock, garbage: str
) -> None:
    refused(garbage, ring, clock)


def test_rotation_keeps_the_previous_key_verifying_until_its_tokens_expire(
    ring: jwt.SigningKeys, clock: ManualClock
) -> None:
    old = ring.current
    old_token = jwt.encode(claims(clock), old)

    fresh = ring.rotate(keep_verifying_secs=900)

    assert fresh.kid != old.kid
    assert ring.current == fresh
    assert decode(old_token, ring, clock)["sub"] == "alice"
    assert decode(jwt.encode(claims(clock), ring.current), ring, clock)["sub"] == "alice"
    reread = jwt.SigningKeys(ring.path, clock=clock)
    assert [k.kid for k in reread.keys] == [old.kid, fresh.kid]

    clock.advance(900)
    assert reread.verifying(old.kid, clock.now()) is None
    assert reread.verifying(fresh.kid, clock.now()) is not None
