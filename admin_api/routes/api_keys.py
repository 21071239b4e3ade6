"""``/v1/api-keys``: a tenant's own API keys (scope ``manage``).

A key's token is in the answer to its creation only; listings show the
prefix, name, scopes and times. Revoking keeps the key listed with its
``revoked_at``; another tenant's key is answered as one that does not exist.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import responses
from admin_api.services import ApiServices
from engine.model import ApiKey

router = APIRouter(tags=["api-keys"])
manage = tenant_caller(Scope.MANAGE)


class ApiKeyCreate(BaseModel):
    scopes: list[Scope] = Field(
        min_length=1, description="What the key may do: `send`, `read`, `manage`."
    )
    name: str = Field(default="", max_length=200, description="A label for people.")


class ApiKeyOut(BaseModel):
    prefix: str = Field(description="Identifies the key: the token is `pm_<prefix>_<secret>`.")
    name: str = Field(description="The key's label.")
    scopes: list[Scope] = Field(description="What the key may do.")
    created_at: float = Field(description="When it was made (POSIX seconds).")
    revoked_at: float | None = Field(description="When it was revoked; null while valid.")

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            prefix=key.prefix,
            name=key.name,
            scopes=sorted(key.scopes),
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class NewApiKeyOut(ApiKeyOut):
    token: str = Field(description="The key itself: shown this once, never stored.")


class ApiKeyList(BaseModel):
    api_keys: list[ApiKeyOut] = Field(description="The tenant's keys, oldest first.")


@router.post(
    "/api-keys",
    status_code=201,
    summary="Make an API key",
    responses=responses(401, 403, 422, 429),
)
async def create_api_key(
    body: ApiKeyCreate,
    caller: Caller = Depends(manage),
    services: ApiServices = Depends(api_services),
) -> NewApiKeyOut:
    made = await services.provisioning.create_api_key(caller.tenant.name, body.scopes, body.name)
    return NewApiKeyOut(**ApiKeyOut.of(made.key).model_dump(), token=made.token)


@router.get(
    "/api-keys",
    summary="List the tenant's API keys",
    responses=responses(401, 403, 429),
)
async def list_api_keys(
    caller: Caller = Depends(manage), services: ApiServices = Depends(api_services)
) -> ApiKeyList:
    keys = await services.provisioning.list_api_keys(caller.tenant.name)
    return ApiKeyList(api_keys=[ApiKeyOut.of(key) for key in keys])


@router.delete(
    "/api-keys/{prefix}",
    status_code=204,
    summary="Revoke an API key",
    responses=responses(401, 403, 404, 429),
)
async def revoke_api_key(
    prefix: str, caller: Caller = Depends(manage), services: ApiServices = Depends(api_services)
) -> Response:
    await services.provisioning.revoke_api_key(prefix, tenant=caller.tenant.name)
    return Response(status_code=204)
