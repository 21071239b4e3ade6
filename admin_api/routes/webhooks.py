"""``/v1/webhooks``: a tenant's webhooks (scope ``manage`` to change, ``read`` to read).

The signing secret is in the answer to the creation only. ``POST
/v1/webhooks/{id}/test`` posts a signed test record now and answers with the
endpoint's status; ``GET /v1/webhooks/{id}/deliveries`` is the delivery log,
the newest first. Another tenant's webhook is answered as one that does not
exist. The logic is ``engine.provisioning.webhooks``.
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import responses
from admin_api.routes.records import MAX_SEQ
from admin_api.services import ApiServices
from engine.model import Webhook, WebhookDelivery, WebhookDeliveryState, WebhookFormat
from engine.provisioning.webhooks import WebhookChange
from engine.webhooks.payloads import MAX_BATCH_SIZE

router = APIRouter(tags=["webhooks"])
read = tenant_caller(Scope.READ)
manage = tenant_caller(Scope.MANAGE)


class WebhookCreate(BaseModel):
    url: str = Field(description="Where records are posted: https://... (http if allowed).")
    record_types: list[str] = Field(
        default=[], description="Record types posted, e.g. `Delivery`, `Bounce`; empty: all."
    )
    format: WebhookFormat = Field(
        default=WebhookFormat.SINGLE,
        description="`single`: one record object per POST; `batch`: arrays of records.",
    )
    batch_size: int = Field(
        default=100, ge=1, le=MAX_BATCH_SIZE, description="Most records in one batch POST."
    )
    enabled: bool = Field(default=True, description="Whether records are posted.")


class WebhookUpdate(BaseModel):
    url: str | None = Field(default=None, description="A new URL.")
    record_types: list[str] | None = Field(default=None, description="New record types.")
    format: WebhookFormat | None = Field(default=None, description="A new format.")
    batch_size: int | None = Field(
        default=None, ge=1, le=MAX_BATCH_SIZE, description="A new batch size."
    )
    enabled: bool | None = Field(default=None, description="Enable or disable.")


class WebhookOut(BaseModel):
    id: str = Field(description="The webhook's id.")
    url: str = Field(description="Where records are posted.")
    record_types: list[str] = Field(description="Record types posted; empty: all.")
    format: WebhookFormat = Field(description="`single` or `batch`.")
    batch_size: int = Field(description="Most records in one batch POST.")
    enabled: bool = Field(description="Whether records are posted.")
    created_at: float = Field(description="When it was made (POSIX seconds).")
    updated_at: float = Field(description="When it last changed (POSIX seconds).")

    @classmethod
    def of(cls, w: Webhook) -> WebhookOut:
        return cls.model_validate(dataclasses.asdict(w))


class NewWebhookOut(WebhookOut):
    secret: str = Field(description="The signing secret: shown this once.")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut] = Field(description="The tenant's webhooks, oldest first.")


class DeliveryOut(BaseModel):
    id: int = Field(description="The delivery's id (Penguin-Delivery-Id).")
    state: WebhookDeliveryState = Field(description="`pending`, `delivered` or `failed`.")
    record_count: int = Field(description="Records in its body.")
    attempts: int = Field(description="POSTs made.")
    next_at: float = Field(description="When the next POST is due (pending).")
    last_status: int | None = Field(description="The HTTP status of the last POST.")
    last_error: str | None = Field(description="Why the last POST failed.")
    created_at: float = Field(description="When it was queued.")
    updated_at: float = Field(description="When it last changed.")

    @classmethod
    def of(cls, d: WebhookDelivery) -> DeliveryOut:
        return cls.model_validate(dataclasses.asdict(d))


class DeliveryLog(BaseModel):
    deliveries: list[DeliveryOut] = Field(description="The newest first.")


class ProbeOut(BaseModel):
    status: int | None = Field(description="The endpoint's HTTP status; null if none came.")
    ok: bool = Field(description="Whether the status was 2xx.")
    error: str | None = Field(description="Why no 2xx came.")


@router.post(
    "/webhooks", status_code=201, summary="Make a webhook", responses=responses(401, 403, 422, 429)
)
async def create_webhook(
    body: WebhookCreate,
    caller: Caller = Depends(manage),
    services: ApiServices = Depends(api_services),
) -> NewWebhookOut:
    made = await services.provisioning.webhooks.create(
        caller.tenant.id, body.url, body.record_types, body.format, body.batch_size, body.enabled
    )
    return NewWebhookOut(**WebhookOut.of(made.webhook).model_dump(), secret=made.secret)


@router.get("/webhooks", summary="List the tenant's webhooks", responses=responses(401, 403, 429))
async def list_webhooks(
    caller: Caller = Depends(read), services: ApiServices = Depends(api_services)
) -> WebhookList:
    found = await services.provisioning.webhooks.for_tenant(caller.tenant.id)
    return WebhookList(webhooks=[WebhookOut.of(w) for w in found])


@router.get("/webhooks/{webhook_id}", summary="A webhook", responses=responses(401, 403, 404, 429))
async def get_webhook(
    webhook_id: str, caller: Caller = Depends(read), services: ApiServices = Depends(api_services)
) -> WebhookOut:
    return WebhookOut.of(await services.provisioning.webhooks.get(caller.tenant.id, webhook_id))


@router.patch(
    "/webhooks/{webhook_id}",
    summary="Change a webhook",
    responses=responses(401, 403, 404, 422, 429),
)
async def update_webhook(
    webhook_id: str,
    body: WebhookUpdate,
    caller: Caller = Depends(manage),
    services: ApiServices = Depends(api_services),
) -> WebhookOut:
    change = WebhookChange(
        url=body.url,
        record_types=body.record_types,
        format=body.format,
        batch_size=body.batch_size,
        enabled=body.enabled,
    )
    changed = await services.provisioning.webhooks.update(caller.tenant.id, webhook_id, change)
    return WebhookOut.of(changed)


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    summary="Remove a webhook and its delivery log",
    responses=responses(401, 403, 404, 429),
)
async def remove_webhook(
    webhook_id: str, caller: Caller = Depends(manage), services: ApiServices = Depends(api_services)
) -> Response:
    await services.provisioning.webhooks.remove(caller.tenant.id, webhook_id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{webhook_id}/test",
    summary="Post a signed test record to the webhook now",
    responses=responses(401, 403, 404, 429),
)
async def probe_webhook(
    webhook_id: str, caller: Caller = Depends(manage), services: ApiServices = Depends(api_services)
) -> ProbeOut:
    result = await services.provisioning.webhooks.probe(caller.tenant.id, webhook_id)
    return ProbeOut(status=result.status, ok=result.ok, error=result.error)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    summary="The webhook's delivery log, newest first",
    responses=responses(401, 403, 404, 422, 429),
)
async def webhook_deliveries(
    webhook_id: str,
    before: int | None = Query(
        default=None, ge=1, le=MAX_SEQ, description="Deliveries with a smaller id."
    ),
    limit: int = Query(default=100, ge=1, le=1000, description="Most deliveries returned."),
    caller: Caller = Depends(read),
    services: ApiServices = Depends(api_services),
) -> DeliveryLog:
    found = await services.provisioning.webhooks.deliveries(
        caller.tenant.id, webhook_id, before, limit
    )
    return DeliveryLog(deliveries=[DeliveryOut.of(d) for d in found])
