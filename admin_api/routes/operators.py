"""The operator's routes: tenants and their settings, suspensions, the queue, lanes, sources.

Every route here needs the operator token (``operator_caller``): without a
credential, or with one that proves nothing, 401; with a valid tenant API key,
403 (the key is known, but operator routes are not a tenant's). They are the
CLI's actions over HTTP, through the same services: ``Provisioning`` for
tenants (``penguin tenant``), ``Operations`` for suspensions (``penguin
suspend`` / ``resume`` / ``suspensions``), the queue (``penguin queue``: its
summary, a queue's messages, one message or submission shown or deleted) and
the lanes and sources (``penguin lanes`` / ``ips``). A tenant's settings set
here (pool, priority, daily and rate quotas) override its ``[tenants.NAME]``
table; running engines apply them within ``[scheduler] refresh_seconds``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from admin_api.auth import api_services, operator_caller
from admin_api.errors import responses
from admin_api.services import ApiServices
from engine.model import QueueCount, QueuedMessage, Suspension
from engine.provisioning import MessageDetails, TenantDetails

router = APIRouter(tags=["operators"], dependencies=[Depends(operator_caller)])
AUTH = (401, 403)

ScopeWord = Literal["lane", "source", "tenant", "campaign"]
TENANT_NAME = Field(min_length=1, max_length=200, description="The tenant's name, unique.")
POOL = Field(default=None, description="Egress pool, one of the config's [pools].")
PRIORITY = Field(
    default=None,
    description="Priority of its mail without X-Priority-Class: bulk, normal, transactional "
    "or a digit 0..9.",
)
DAILY_QUOTA = Field(
    default=None,
    ge=0,
    le=1_000_000_000,
    description="Messages (one per recipient) per UTC day; 0 for no quota.",
)
RATE_QUOTA = Field(
    default=None,
    max_length=100,
    description="Submission rate, a throttle spec N/period[,max_burst=B] (e.g. `100/min`); "
    "empty for none.",
)


# Tenants.


class TenantSettingsIn(BaseModel):
    """A tenant's settings to store; in a PATCH, a field given as null clears what was
    set, so the config's value applies again, and a field left out is unchanged."""

    model_config = ConfigDict(extra="forbid")

    pool: str | None = POOL
    priority: str | None = PRIORITY
    daily_quota: int | None = DAILY_QUOTA
    rate_quota: str | None = RATE_QUOTA

    def changes(self) -> dict[str, str | int | None]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class TenantCreate(TenantSettingsIn):
    name: str = TENANT_NAME

    def changes(self) -> dict[str, str | int | None]:
        return {k: v for k, v in super().changes().items() if k != "name" and v is not None}


class TenantOut(BaseModel):
    id: int = Field(description="The tenant's id.")
    name: str = Field(description="The tenant's name.")
    created_at: float = Field(description="When it was created (POSIX seconds).")
    pool: str = Field(description="Egress pool in force.")
    priority: str = Field(description="Default priority in force.")
    daily_quota: int = Field(description="Messages per UTC day in force; 0: no quota.")
    rate_quota: str = Field(description="Rate quota in force; empty: none.")
    overridden: list[str] = Field(
        description="The settings set over the API or `penguin tenant set` (the others "
        "are the config's)."
    )
    accepted_today: int = Field(description="Messages (recipients) accepted since 00:00 UTC.")

    @classmethod
    def of(cls, details: TenantDetails) -> TenantOut:
        return cls.model_validate(details.to_json())


class TenantList(BaseModel):
    tenants: list[TenantOut] = Field(description="Every tenant, by id.")


class TenantRemoved(BaseModel):
    tenant: str = Field(description="The tenant removed.")
    removed_messages: list[str] = Field(
        description="Its queued and shunted messages removed with it (with force)."
    )


@router.post(
    "/tenants", status_code=201, summary="Create a tenant", responses=responses(*AUTH, 409, 422)
)
async def create_tenant(
    body: TenantCreate, services: ApiServices = Depends(api_services)
) -> TenantOut:
    tenant = await services.provisioning.create_tenant(body.name, body.changes())
    return TenantOut.of(await services.provisioning.tenant_details(tenant.name))


@router.get("/tenants", summary="List the tenants", responses=responses(*AUTH))
async def list_tenants(services: ApiServices = Depends(api_services)) -> TenantList:
    p = services.provisioning
    return TenantList(
        tenants=[TenantOut.of(await p.tenant_details(t.name)) for t in await p.list_tenants()]
    )


@router.get(
    "/tenants/{name}",
    summary="A tenant with its settings in force and today's count",
    responses=responses(*AUTH, 404),
)
async def get_tenant(name: str, services: ApiServices = Depends(api_services)) -> TenantOut:
    return TenantOut.of(await services.provisioning.tenant_details(name))


@router.patch(
    "/tenants/{name}",
    summary="Set a tenant's pool, priority or quotas",
    responses=responses(*AUTH, 404, 422),
)
async def update_tenant(
    name: str, body: TenantSettingsIn, services: ApiServices = Depends(api_services)
) -> TenantOut:
    return TenantOut.of(await services.provisioning.set_tenant_settings(name, body.changes()))


@router.delete(
    "/tenants/{name}",
    summary="Remove a tenant",
    description="Removes the tenant with its domains, SMTP users, suppressions, keys and "
    "delivered mail; refused (409) while it has mail to deliver, unless `force` removes "
    "its queued and shunted messages first (an AdminBounce record each).",
    responses=responses(*AUTH, 404, 409),
)
async def remove_tenant(
    name: str,
    force: bool = Query(default=False, description="Remove its queued and shunted mail first."),
    services: ApiServices = Depends(api_services),
) -> TenantRemoved:
    removal = await services.provisioning.remove_tenant(name, force=force)
    return TenantRemoved(tenant=removal.tenant.name, removed_messages=removal.removed_messages)


# Suspensions.


class SuspensionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: ScopeWord = Field(description="What to suspend.")
    target: str = Field(
        min_length=1,
        max_length=500,
        description="lane: `SOURCE|SITE` (a site or a domain); source: a source name; "
        "tenant: a tenant name; campaign: `TENANT:CAMPAIGN`.",
    )
    provider: str = Field(
        default="", max_length=100, description="With a source: only its mail to this provider."
    )
    reason: str = Field(min_length=1, max_length=1000, description="Why (kept in the record).")
    duration: str = Field(
        min_length=1, max_length=50, description="How long: `90s`, `30min`, `2h`, `1d`."
    )


class SuspensionOut(BaseModel):
    id: int = Field(description="The suspension's id.")
    scope: str = Field(description="lane, source, source_provider, tenant or campaign (as stored).")
    target: str = Field(description="What is suspended, as stored.")
    reason: str = Field(description="Why.")
    created_at: float = Field(description="When it began (POSIX seconds).")
    until: float = Field(description="When it ends (POSIX seconds).")
    origin: str = Field(description="`admin` for an operator's, else the backoff rule's.")

    @classmethod
    def of(cls, s: Suspension) -> SuspensionOut:
        return cls.model_validate(dataclasses.asdict(s) | {"scope": s.scope.value})


class SuspensionList(BaseModel):
    suspensions: list[SuspensionOut] = Field(description="The suspensions in force.")


class Resumed(BaseModel):
    scope: str = Field(description="The scope lifted.")
    target: str = Field(description="The target lifted.")
    removed: int = Field(description="Suspensions lifted.")


@router.post(
    "/suspensions",
    status_code=201,
    summary="Suspend a lane, source, tenant or campaign",
    responses=responses(*AUTH, 404, 422),
)
async def suspend(
    body: SuspensionCreate, services: ApiServices = Depends(api_services)
) -> SuspensionOut:
    added = await services.operations.suspend(
        body.scope, body.target, reason=body.reason, duration=body.duration, provider=body.provider
    )
    return SuspensionOut.of(added)


@router.get("/suspensions", summary="The suspensions in force", responses=responses(*AUTH))
async def list_suspensions(services: ApiServices = Depends(api_services)) -> SuspensionList:
    active = await services.operations.suspensions()
    return SuspensionList(suspensions=[SuspensionOut.of(s) for s in active])


@router.delete(
    "/suspensions",
    summary="Resume: lift the suspensions of a lane, source, tenant or campaign",
    responses=responses(*AUTH, 404, 422),
)
async def resume(
    scope: ScopeWord = Query(description="What to resume."),
    target: str = Query(min_length=1, max_length=500, description="As for a suspension."),
    provider: str = Query(default="", max_length=100, description="With a source."),
    services: ApiServices = Depends(api_services),
) -> Resumed:
    removed = await services.operations.resume(scope, target, provider=provider)
    return Resumed(scope=scope, target=target, removed=removed)


# The queue.


class QueueRow(BaseModel):
    queue: str = Field(description="The scheduled queue, `campaign:tenant@domain`.")
    state: str = Field(description="The messages' state.")
    count: int = Field(description="How many are in that state.")
    next_due: float | None = Field(description="The earliest due time among them.")
    last_error: str | None = Field(description="The latest error among them.")

    @classmethod
    def of(cls, row: QueueCount) -> QueueRow:
        return cls.model_validate(dataclasses.asdict(row) | {"state": row.state.value})


class QueueList(BaseModel):
    queues: list[QueueRow] = Field(description="Messages by queue and state.")


class MessageOut(BaseModel):
    id: str = Field(description="The message's id (one per recipient).")
    submission_id: str = Field(description="The submission it came in.")
    tenant_id: int = Field(description="The tenant's id.")
    queue: str = Field(description="Its scheduled queue.")
    campaign: str = Field(description="Its campaign; empty for none.")
    sender: str = Field(description="The envelope sender.")
    recipient: str = Field(description="The recipient.")
    state: str = Field(description="queued, leased, shunted, ...")
    due_at: float = Field(description="When it is next due (shunted: when parked).")
    created_at: float = Field(description="When it was accepted.")
    attempts: int = Field(description="Delivery attempts so far.")
    priority: int = Field(description="0..9; higher goes first in its queue.")
    last_error: str | None = Field(description="The last attempt's error.")

    @classmethod
    def of(cls, m: QueuedMessage) -> MessageOut:
        return cls.model_validate(dataclasses.asdict(m) | {"state": m.state.value})


class MessageList(BaseModel):
    messages: list[MessageOut] = Field(description="The messages.")


class MessageWithRecords(MessageOut):
    records: list[dict[str, Any]] = Field(
        description="Its records, oldest first, in KumoMTA's record shape."
    )

    @classmethod
    def of_details(cls, details: MessageDetails) -> MessageWithRecords:
        return cls.model_validate(
            MessageOut.of(details.message).model_dump() | {"records": details.records}
        )


class MessageDetailsList(BaseModel):
    messages: list[MessageWithRecords] = Field(
        description="The message of that id, or every message of that submission."
    )


class Removed(BaseModel):
    removed: list[str] = Field(description="The messages removed, an AdminBounce record each.")


class RequeueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        default=None,
        min_length=1,
        description="A shunted message, or a submission's shunted messages; null: every "
        "shunted message.",
    )


class Requeued(BaseModel):
    requeued: list[str] = Field(description="The messages queued again, due now.")


LIMIT = Query(default=100, ge=1, le=1000, description="At most this many.")


@router.get("/queues", summary="Messages by scheduled queue and state", responses=responses(*AUTH))
async def list_queues(services: ApiServices = Depends(api_services)) -> QueueList:
    return QueueList(queues=[QueueRow.of(r) for r in await services.operations.queue_summary()])


@router.get(
    "/queues/{queue}/messages",
    summary="A queue's waiting messages, the soonest due first",
    responses=responses(*AUTH),
)
async def list_queue_messages(
    queue: str, limit: int = LIMIT, services: ApiServices = Depends(api_services)
) -> MessageList:
    found = await services.operations.queue_messages(queue, limit)
    return MessageList(messages=[MessageOut.of(m) for m in found])


@router.get(
    "/shunted", summary="Shunted messages, the longest parked first", responses=responses(*AUTH)
)
async def list_shunted(
    limit: int = LIMIT, services: ApiServices = Depends(api_services)
) -> MessageList:
    found = await services.operations.shunted(limit)
    return MessageList(messages=[MessageOut.of(m) for m in found])


@router.post(
    "/shunted/requeue",
    summary="Queue shunted messages again",
    responses=responses(*AUTH, 404, 422),
)
async def requeue_shunted(
    body: RequeueRequest, services: ApiServices = Depends(api_services)
) -> Requeued:
    return Requeued(requeued=await services.operations.requeue(body.id))


QUEUED_ID = Path(
    min_length=1,
    max_length=200,
    description="A message id, or a submission's (the queue id of its 250 reply).",
)


@router.get(
    "/queue/messages/{id}",
    summary="A message, or a submission's messages, with their records",
    responses=responses(*AUTH, 404),
)
async def show_queued(
    id: str = QUEUED_ID, services: ApiServices = Depends(api_services)
) -> MessageDetailsList:
    found = await services.operations.messages(id)
    return MessageDetailsList(messages=[MessageWithRecords.of_details(d) for d in found])


@router.delete(
    "/queue/messages/{id}",
    summary="Remove a queued or shunted message, or a submission's",
    description="Removes the message (or the submission's queued and shunted messages) "
    "from the queue, an AdminBounce record each, as `penguin queue delete`; 422 when none "
    "of them is queued or shunted (being delivered, say); 404 once removed.",
    responses=responses(*AUTH, 404, 422),
)
async def delete_queued(
    id: str = QUEUED_ID, services: ApiServices = Depends(api_services)
) -> Removed:
    return Removed(removed=await services.operations.delete(id))


# Lanes and sources.


class LaneOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    source: str = Field(description="The source (egress IP) of the lane.")
    site: str = Field(description="The site (MX rollup) of the lane.")
    connections: int = Field(description="Open connections, summed over the processes.")
    in_flight: int = Field(description="Messages being delivered.")
    backoff_level: int = Field(description="The highest backoff level a process saw.")
    queued: int = Field(description="Messages queued for the lane's queues.")
    next_due: float | None = Field(description="The earliest due time among them.")
    queues: list[str] = Field(description="The scheduled queues feeding it.")


class LaneList(BaseModel):
    lanes: list[LaneOut] = Field(description="Lanes active in the last 10 minutes.")


class SourceOut(BaseModel):
    source: str = Field(description="The source's name.")
    provider: str = Field(description="The provider (`other`: sites of none).")
    plan: str = Field(description="Its warmup plan; empty for none.")
    day: int | None = Field(description="The warmup day; null without a plan.")
    sent_today: int = Field(description="Sent since 00:00 UTC.")
    cap: int | None = Field(description="Today's cap; null without a plan.")
    state: str = Field(description="The warmup state, or the suspension.")
    reason: str = Field(description="Why the ramp is where it is.")


class SourceList(BaseModel):
    sources: list[SourceOut] = Field(description="Each source and provider.")


@router.get(
    "/lanes",
    summary="Each lane: connections, rate, backoff, queued",
    responses=responses(*AUTH),
)
async def list_lanes(services: ApiServices = Depends(api_services)) -> LaneList:
    rows: list[dict[str, Any]] = await services.operations.lanes()
    return LaneList(lanes=[LaneOut.model_validate(row) for row in rows])


@router.get(
    "/ips",
    summary="Each source: warmup day, today's sent and cap per provider",
    responses=responses(*AUTH),
)
async def list_ips(services: ApiServices = Depends(api_services)) -> SourceList:
    rows = await services.operations.ips()
    return SourceList(sources=[SourceOut.model_validate(row) for row in rows])
