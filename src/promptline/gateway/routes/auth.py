"""Tokens (an API key exchanged for an access and a refresh token), the roles table, and the
API keys of a tenant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from promptline.core.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
)
from promptline.gateway.deps import (
    CallerDep,
    audit_change,
    gateway,
    needs,
    own_credential,
    source_of,
    token_of,
)
from promptline.gateway.schemas import error_responses
from promptline.security.auth import key_id_of
from promptline.security.scopes import ROLE_SCOPES, SCOPES, Role

router = APIRouter(prefix="/v1", tags=["auth"], responses=error_responses(401, 403, 422))


class RefreshBody(BaseModel):
    """A refresh token to spend or revoke."""

    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(max_length=512, description="The refresh token (pl_rt_...).")


class KeyCreate(BaseModel):
    """A new API key of the caller's tenant."""

    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(max_length=255, description="Whom the key is for.")
    role: Role = Field("user", description="The key's role.")
    name: str = Field("", max_length=200, description="A note to tell keys apart.")


class SignIn(BaseModel):
    """A member's credentials."""

    model_config = ConfigDict(extra="forbid")
    tenant_id: str = Field(max_length=255, description="The member's tenant.")
    user_id: str = Field(max_length=255, description="The member's user id.")
    password: str = Field(max_length=1024, description="The member's password.")


@router.post(
    "/auth/token",
    dependencies=[Depends(own_credential)],
    summary="Exchange an API key, or a member's password, for an access and a refresh token",
    responses=error_responses(429),
)
async def issue_token(request: Request, body: SignIn | None = None) -> dict[str, Any]:
    """Send the API key as ``Authorization: Bearer pl_key_...``, or a member's
    ``tenant_id``, ``user_id`` and ``password`` as the JSON body (not both); the answer
    holds an access token (a JWT, ``expires_in`` seconds) and a refresh token
    (``refresh_expires_in``). A member's sign-ins are refused for a while (429) after
    repeated failures."""
    state = gateway(request)
    source = source_of(request)
    key = token_of(request)
    if body is not None and key is not None:
        raise InvalidInputError(
            "send an API key or a password, not both",
            hint="drop the Authorization header to sign in with a password",
        )
    try:
        if body is None:
            pair = await state.tokens.exchange(key)
        else:
            pair = await state.tokens.sign_in(body.tenant_id, body.user_id, body.password)
    except (AuthenticationError, RateLimitedError) as exc:
        await state.app.audit.failed_login(
            source,
            key_id=key_id_of(key),
            reason=exc.message,
            user=None if body is None else f"{body.tenant_id}/{body.user_id}",
        )
        raise
    who = pair.caller
    await state.app.audit.record(
        "auth.login",
        actor=who.user_id,
        key_id=who.key_id,
        tenant_id=who.tenant_id,
        target=pair.family_id,
        source=source,
        details={"method": "password" if body is not None else "api_key", "role": who.role},
    )
    return pair.to_dict()


@router.post(
    "/auth/refresh",
    dependencies=[Depends(own_credential)],
    summary="Spend a refresh token for a new pair",
)
async def refresh_token(body: RefreshBody, request: Request) -> dict[str, Any]:
    """A refresh token works once; presenting a spent one again revokes its whole family
    (401, ``details.reason: "reuse"``)."""
    pair = await gateway(request).tokens.refresh(body.refresh_token)
    return pair.to_dict()


@router.post(
    "/auth/revoke",
    dependencies=[Depends(own_credential)],
    summary="Revoke a refresh token's family",
)
async def revoke_token(body: RefreshBody, request: Request) -> dict[str, Any]:
    """Every token of the family (refresh and access tokens) stops working."""
    family_id = await gateway(request).tokens.revoke(body.refresh_token)
    return {"revoked": True, "family_id": family_id}


@router.get("/auth/roles", dependencies=[needs("catalog:read")], summary="Roles and scopes")
async def list_roles(caller: CallerDep) -> dict[str, Any]:
    """Every role and its scopes, every scope and what it allows, and the caller's role."""
    return {
        "roles": {role: sorted(scopes) for role, scopes in ROLE_SCOPES.items()},
        "scopes": dict(SCOPES),
        "you": {"user_id": caller.user_id, "tenant_id": caller.tenant_id, "role": caller.role},
    }


@router.post(
    "/keys", status_code=201, dependencies=[needs("keys:admin")], summary="Create an API key"
)
async def create_key(body: KeyCreate, request: Request, caller: CallerDep) -> dict[str, Any]:
    """A key of the caller's tenant; the key itself is in the answer, once."""
    state = gateway(request)
    record, key = await state.keys.create(
        body.user_id, tenant_id=caller.tenant_id, role=body.role, name=body.name
    )
    await audit_change(
        request,
        caller,
        "key.created",
        record.key_id,
        {"user_id": record.user_id, "role": record.role, "name": record.name},
    )
    return {**record.to_dict(), "key": key}


@router.get("/keys", dependencies=[needs("keys:admin")], summary="List the tenant's API keys")
async def list_keys(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every key of the caller's tenant (never the keys themselves)."""
    keys = await gateway(request).keys.list(tenant_id=caller.tenant_id)
    return {"items": [k.to_dict() for k in keys], "next_cursor": None}


@router.delete("/keys/{key_id}", dependencies=[needs("keys:admin")], summary="Revoke an API key")
async def revoke_key(
    key_id: Annotated[str, Path(max_length=64)], request: Request, caller: CallerDep
) -> dict[str, Any]:
    """The key stops working, and every token made from it."""
    state = gateway(request)
    record = await state.keys.get(key_id)
    if record is None or record.tenant_id != caller.tenant_id:
        await audit_change(
            request, caller, "key.revoked", key_id, {"reason": "no such key"}, outcome="failure"
        )
        raise NotFoundError(f"no API key {key_id!r}", hint="list keys: GET /v1/keys")
    revoked = await state.keys.revoke(key_id)
    await audit_change(
        request,
        caller,
        "key.revoked",
        revoked.key_id,
        {"user_id": revoked.user_id, "role": revoked.role},
    )
    return revoked.to_dict()
