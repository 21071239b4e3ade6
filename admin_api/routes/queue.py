"""``/v1/queue``: a tenant's own messages by scheduled queue and state.

The tenant's view of ``penguin queue summary --tenant NAME`` (the operator's
``/v1/queues`` shows every tenant's), through the same service
(``Operations.queue_summary``). Needs scope ``read``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import responses
from admin_api.routes.operators import QueueList, QueueRow
from admin_api.services import ApiServices

router = APIRouter(tags=["queue"])
read = tenant_caller(Scope.READ)


@router.get(
    "/queue",
    summary="The tenant's messages by scheduled queue and state",
    responses=responses(401, 403, 429),
)
async def tenant_queue(
    caller: Caller = Depends(read),
    services: ApiServices = Depends(api_services),
) -> QueueList:
    rows = await services.operations.queue_summary(caller.tenant.name)
    return QueueList(queues=[QueueRow.of(row) for row in rows])
