"""``/v1/smtp-users``: a tenant's SMTP submission credentials.

The username and password are generated; the password is in the answer to
the creation only (stored as a scrypt hash). Listing needs scope ``read``,
changes ``manage``; another tenant's user is answered as one that does not
exist. A removed user is refused by running engines within a minute.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import responses
from admin_api.services import ApiServices

router = APIRouter(tags=["smtp-users"])
read = tenant_caller(Scope.READ)
manage = tenant_caller(Scope.MANAGE)


class SmtpUserOut(BaseModel):
    username: str = Field(description="The AUTH username.")
    created_at: float = Field(description="When it was made (POSIX seconds).")


class NewSmtpUserOut(BaseModel):
    username: str = Field(description="The AUTH username.")
    password: str = Field(description="The password: shown this once, never stored.")


class SmtpUserList(BaseModel):
    smtp_users: list[SmtpUserOut] = Field(description="The tenant's SMTP users, by username.")


@router.post(
    "/smtp-users",
    status_code=201,
    summary="Make SMTP credentials",
    responses=responses(401, 403, 429),
)
async def create_smtp_user(
    caller: Caller = Depends(manage), services: ApiServices = Depends(api_services)
) -> NewSmtpUserOut:
    made = await services.provisioning.create_smtp_user(caller.tenant.name)
    return NewSmtpUserOut(username=made.username, password=made.password)


@router.get(
    "/smtp-users", summary="List the tenant's SMTP users", responses=responses(401, 403, 429)
)
async def list_smtp_users(
    caller: Caller = Depends(read), services: ApiServices = Depends(api_services)
) -> SmtpUserList:
    users = await services.provisioning.list_smtp_users(caller.tenant.name)
    return SmtpUserList(
        smtp_users=[SmtpUserOut(username=u.username, created_at=u.created_at) for u in users]
    )


@router.delete(
    "/smtp-users/{username}",
    status_code=204,
    summary="Remove an SMTP user",
    responses=responses(401, 403, 404, 429),
)
async def remove_smtp_user(
    username: str, caller: Caller = Depends(manage), services: ApiServices = Depends(api_services)
) -> Response:
    await services.provisioning.remove_smtp_user(username, tenant=caller.tenant.name)
    return Response(status_code=204)
