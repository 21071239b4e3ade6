"""``/v1/tracking-domains``: the host names a tenant's links and open pixels are served on.

Each is a CNAME to the tracking edge (``[tracking] cname_target``); one may
be the tenant's default, used by its mail unless a campaign names another.
Reads need scope ``read``, changes ``manage``; another tenant's tracking
domain is answered as one that does not exist (registering a name another
tenant holds is a conflict: names are unique across tenants).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field, field_validator

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import responses
from admin_api.routes.domains import DnsRecordOut
from admin_api.services import ApiServices
from config import is_host_name
from engine.model import TrackingDomain
from engine.provisioning import TrackingDomainRecords

router = APIRouter(tags=["tracking-domains"])
read = tenant_caller(Scope.READ)
manage = tenant_caller(Scope.MANAGE)


class TrackingDomainCreate(BaseModel):
    name: str = Field(
        min_length=1, max_length=253, description="The host name, e.g. click.acme.test."
    )
    default: bool = Field(default=False, description="Make it the tenant's default.")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        cleaned = name.strip().lower().rstrip(".")
        if not is_host_name(cleaned) or "." not in cleaned:
            raise ValueError("not a host name with a domain (e.g. click.acme.example)")
        return cleaned


class TrackingDomainOut(BaseModel):
    name: str = Field(description="The host name, lower-case.")
    default: bool = Field(description="Whether the tenant's mail uses it by default.")
    created_at: float = Field(description="When it was registered (POSIX seconds).")

    @classmethod
    def of(cls, domain: TrackingDomain) -> TrackingDomainOut:
        return cls(name=domain.name, default=domain.is_default, created_at=domain.created_at)


class TrackingDomainWithRecords(TrackingDomainOut):
    dns_records: list[DnsRecordOut] = Field(description="The CNAME to publish.")

    @classmethod
    def with_records(cls, records: TrackingDomainRecords) -> TrackingDomainWithRecords:
        return cls(
            **TrackingDomainOut.of(records.domain).model_dump(),
            dns_records=[DnsRecordOut.of(r) for r in records.dns_records],
        )


class TrackingDomainList(BaseModel):
    tracking_domains: list[TrackingDomainOut] = Field(
        description="The tenant's tracking domains, by name."
    )


@router.post(
    "/tracking-domains",
    status_code=201,
    summary="Register a tracking domain",
    responses=responses(401, 403, 409, 422, 429),
)
async def add_tracking_domain(
    body: TrackingDomainCreate,
    caller: Caller = Depends(manage),
    services: ApiServices = Depends(api_services),
) -> TrackingDomainWithRecords:
    added = await services.provisioning.add_tracking_domain(
        caller.tenant.name, body.name, default=body.default
    )
    return TrackingDomainWithRecords.with_records(added)


@router.get(
    "/tracking-domains",
    summary="List the tenant's tracking domains",
    responses=responses(401, 403, 429),
)
async def list_tracking_domains(
    caller: Caller = Depends(read), services: ApiServices = Depends(api_services)
) -> TrackingDomainList:
    domains = await services.provisioning.list_tracking_domains(caller.tenant.name)
    return TrackingDomainList(tracking_domains=[TrackingDomainOut.of(d) for d in domains])


@router.get(
    "/tracking-domains/{name}",
    summary="A tracking domain and the CNAME to publish",
    responses=responses(401, 403, 404, 429),
)
async def get_tracking_domain(
    name: str, caller: Caller = Depends(read), services: ApiServices = Depends(api_services)
) -> TrackingDomainWithRecords:
    found = await services.provisioning.tracking_domain(name, tenant=caller.tenant.name)
    return TrackingDomainWithRecords.with_records(found)


@router.post(
    "/tracking-domains/{name}/default",
    summary="Make a tracking domain the tenant's default",
    responses=responses(401, 403, 404, 429),
)
async def set_default_tracking_domain(
    name: str, caller: Caller = Depends(manage), services: ApiServices = Depends(api_services)
) -> TrackingDomainOut:
    p = services.provisioning
    found = await p.tracking_domain(name, tenant=caller.tenant.name)
    made = await p.set_default_tracking_domain(caller.tenant.name, found.domain.name)
    return TrackingDomainOut.of(made)


@router.delete(
    "/tracking-domains/{name}",
    status_code=204,
    summary="Remove a tracking domain",
    responses=responses(401, 403, 404, 429),
)
async def remove_tracking_domain(
    name: str, caller: Caller = Depends(manage), services: ApiServices = Depends(api_services)
) -> Response:
    await services.provisioning.remove_tracking_domain(name, tenant=caller.tenant.name)
    return Response(status_code=204)
