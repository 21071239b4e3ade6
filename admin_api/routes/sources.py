"""``/v1/sources``: the source IPs a tenant's mail goes out from, with their warmup.

The tenant's view of ``penguin ips`` (the operator's ``/v1/ips`` shows every
source): the sources of the tenant's pool and of its campaigns' pools, each
per provider with its warmup day, today's sent and cap, through the same
service (``Operations.tenant_ips``). Needs scope ``read``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import responses
from admin_api.routes.operators import SourceList, SourceOut
from admin_api.services import ApiServices

router = APIRouter(tags=["sources"])
read = tenant_caller(Scope.READ)


@router.get(
    "/sources",
    summary="The tenant's sources: warmup day, today's sent and cap per provider",
    responses=responses(401, 403, 429),
)
async def tenant_sources(
    caller: Caller = Depends(read),
    services: ApiServices = Depends(api_services),
) -> SourceList:
    rows = await services.operations.tenant_ips(caller.tenant.name)
    return SourceList(sources=[SourceOut.model_validate(row) for row in rows])
