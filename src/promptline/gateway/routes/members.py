"""The members of the caller's tenant: users with a role and, to sign in with
``POST /v1/auth/token``, a password. Every change is audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from promptline.core.errors import NotFoundError
from promptline.gateway.deps import CallerDep, audit_change, gateway, needs
from promptline.gateway.schemas import error_responses
from promptline.security.members import change_details
from promptline.security.scopes import Role

router = APIRouter(
    prefix="/v1/members",
    tags=["auth"],
    dependencies=[needs("members:admin")],
    responses=error_responses(401, 403, 404, 409, 422),
)

UserId = Annotated[str, Path(max_length=255, description="The member's user id.")]


class MemberCreate(BaseModel):
    """A new member of the caller's tenant."""

    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(max_length=255, description="The member's user id.")
    role: Role = Field("user", description="The member's role.")
    password: str | None = Field(
        None,
        max_length=1024,
        description="To sign in with (at least 12 characters); none: API keys only.",
    )


class MemberChange(BaseModel):
    """What to change of a member (what is left out stays)."""

    model_config = ConfigDict(extra="forbid")
    role: Role | None = Field(None, description="A new role.")
    password: str | None = Field(None, max_length=1024, description="A new password.")
    clear_password: bool = Field(False, description="Remove the password (API keys only).")


@router.get("", summary="List the tenant's members")
async def list_members(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Every member of the caller's tenant (never a password: only whether there is one)."""
    members = await gateway(request).members.list(caller.tenant_id)
    return {"items": [m.to_dict() for m in members], "next_cursor": None}


@router.post("", status_code=201, summary="Add a member")
async def add_member(body: MemberCreate, request: Request, caller: CallerDep) -> dict[str, Any]:
    """A member of the caller's tenant; 409 when the user is one already."""
    state = gateway(request)
    member = await state.members.add(
        caller.tenant_id, body.user_id, role=body.role, password=body.password
    )
    details = {"role": member.role, "password": member.has_password}
    await audit_change(request, caller, "member.added", member.user_id, details)
    return member.to_dict()


@router.get("/{user_id}", summary="Read a member")
async def get_member(user_id: UserId, request: Request, caller: CallerDep) -> dict[str, Any]:
    """One member of the caller's tenant; 404 for a user who is not one."""
    member = await gateway(request).members.get(caller.tenant_id, user_id)
    if member is None:
        raise NotFoundError(
            f"{user_id!r} is not a member of {caller.tenant_id!r}",
            hint="list the members: GET /v1/members",
        )
    return member.to_dict()


@router.patch("/{user_id}", summary="Change a member's role or password")
async def change_member(
    user_id: UserId, body: MemberChange, request: Request, caller: CallerDep
) -> dict[str, Any]:
    """A new role applies to the member's tokens at once (they are refused until
    refreshed); a new password to the next sign-in."""
    state = gateway(request)
    before, after = await state.members.change(
        caller.tenant_id,
        user_id,
        role=body.role,
        password=body.password,
        clear_password=body.clear_password,
    )
    await audit_change(
        request, caller, "member.changed", user_id, change_details(before, after, body.password)
    )
    return after.to_dict()


@router.delete("/{user_id}", summary="Remove a member")
async def remove_member(user_id: UserId, request: Request, caller: CallerDep) -> dict[str, Any]:
    """The member's password sign-ins and their tokens stop; so do the API keys of the
    user in this tenant (revoked, and listed in the answer)."""
    state = gateway(request)
    member = await state.members.remove(caller.tenant_id, user_id)
    revoked = await state.keys.revoke_user(caller.tenant_id, user_id)
    details = {"role": member.role, "keys_revoked": list(revoked)}
    await audit_change(request, caller, "member.removed", user_id, details)
    return {**member.to_dict(), "keys_revoked": list(revoked)}
