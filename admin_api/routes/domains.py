"""``/v1/domains``: a tenant's sending domains, their DKIM keys, DNS records and verification.

Adding a domain makes its DKIM key and answers the DNS records to publish;
rotating makes a new key under a new selector and names the previous one
(keep it published until mail signed with it has been delivered);
``verify`` looks the records up in DNS and reports each check
(``engine.provisioning.verification``). Reads need scope ``read``, changes
``manage``; another tenant's domain is answered as one that does not exist.
Everything goes through the provisioning service, as the CLI does.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Body, Depends, Response
from pydantic import BaseModel, Field, field_validator

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import ApiError, responses
from admin_api.services import ApiServices
from engine.dkim.keys import RSA_DEFAULT_BITS, RSA_MAX_BITS, RSA_MIN_BITS, DnsRecord, dns_name
from engine.model import SendingDomain
from engine.provisioning import DkimKeySpec, DomainRecords
from engine.provisioning.verification import CheckStatus, VerificationReport

router = APIRouter(tags=["domains"])
read = tenant_caller(Scope.READ)
manage = tenant_caller(Scope.MANAGE)


class DkimKey(BaseModel):
    algorithm: Literal["rsa", "ed25519"] = Field(
        default="rsa", description="The DKIM key type (RFC 8463 for ed25519)."
    )
    bits: int = Field(
        default=RSA_DEFAULT_BITS,
        ge=RSA_MIN_BITS,
        le=RSA_MAX_BITS,
        description="The RSA key size; ignored for ed25519.",
    )
    selector: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="The DKIM selector; default `pm` + the year and month, e.g. `pm202701`.",
    )

    @field_validator("selector")
    @classmethod
    def _selector(cls, selector: str | None) -> str | None:
        return None if selector is None else dns_name(selector)

    def spec(self) -> DkimKeySpec:
        return DkimKeySpec(self.algorithm, self.bits, self.selector)


class DomainCreate(DkimKey):
    name: str = Field(
        min_length=1, max_length=253, description="The domain of the From header, e.g. acme.test."
    )

    _name = field_validator("name")(dns_name)


class DnsRecordOut(BaseModel):
    name: str = Field(description="The record's owner name, fully qualified.")
    type: str = Field(description="TXT, MX or CNAME.")
    value: str = Field(description="TXT text unquoted; otherwise the RDATA as in a zone file.")
    purpose: str = Field(description="What the record is for.")

    @classmethod
    def of(cls, record: DnsRecord) -> DnsRecordOut:
        return cls(name=record.name, type=record.type, value=record.value, purpose=record.purpose)


class DomainOut(BaseModel):
    name: str = Field(description="The sending domain, lower-case.")
    selector: str = Field(description="The selector its mail is signed with.")
    algorithm: str = Field(description="The DKIM key type: rsa or ed25519.")
    created_at: float = Field(description="When it was added (POSIX seconds).")

    @classmethod
    def of(cls, domain: SendingDomain) -> DomainOut:
        return cls(
            name=domain.name,
            selector=domain.selector,
            algorithm=domain.algorithm,
            created_at=domain.created_at,
        )


class DomainWithRecords(DomainOut):
    dns_records: list[DnsRecordOut] = Field(description="The DNS records to publish.")

    @classmethod
    def with_records(cls, records: DomainRecords) -> DomainWithRecords:
        return cls(
            **DomainOut.of(records.domain).model_dump(),
            dns_records=[DnsRecordOut.of(r) for r in records.dns_records],
        )


class RotatedDomain(DomainWithRecords):
    previous_selector: str = Field(
        description="The selector signed with before: keep its record published until the "
        "mail signed with it has been delivered."
    )


class DomainList(BaseModel):
    domains: list[DomainOut] = Field(description="The tenant's sending domains, by name.")


class CheckOut(BaseModel):
    check: str = Field(
        description="spf, dkim, dmarc, return_path_mx, return_path_spf or tracking_cname."
    )
    name: str = Field(description="The DNS name looked up.")
    type: str = Field(description="The record type looked up.")
    status: CheckStatus = Field(description="pass, fail (wrong or unreadable) or missing.")
    expected: str = Field(description="What should be published.")
    found: list[str] = Field(description="What DNS answered.")
    detail: str = Field(description="Why it failed, or what passed; may be empty.")


class VerificationOut(BaseModel):
    domain: str = Field(description="The sending domain.")
    verified: bool = Field(description="Whether every check passed.")
    checks: list[CheckOut] = Field(description="One per record checked.")

    @classmethod
    def of(cls, report: VerificationReport) -> VerificationOut:
        checks = [
            CheckOut(
                check=c.check,
                name=c.name,
                type=c.type,
                status=c.status,
                expected=c.expected,
                found=c.found,
                detail=c.detail,
            )
            for c in report.checks
        ]
        return cls(domain=report.domain, verified=report.verified, checks=checks)


@router.post(
    "/domains",
    status_code=201,
    summary="Add a sending domain with a new DKIM key",
    responses=responses(401, 403, 409, 422, 429),
)
async def add_domain(
    body: DomainCreate,
    caller: Caller = Depends(manage),
    services: ApiServices = Depends(api_services),
) -> DomainWithRecords:
    added = await services.provisioning.add_domain(caller.tenant.name, body.name, body.spec())
    return DomainWithRecords.with_records(added)


@router.get(
    "/domains", summary="List the tenant's sending domains", responses=responses(401, 403, 429)
)
async def list_domains(
    caller: Caller = Depends(read), services: ApiServices = Depends(api_services)
) -> DomainList:
    domains = await services.provisioning.list_domains(caller.tenant.name)
    return DomainList(domains=[DomainOut.of(d) for d in domains])


@router.get(
    "/domains/{name}",
    summary="A sending domain and the DNS records to publish",
    responses=responses(401, 403, 404, 429),
)
async def get_domain(
    name: str, caller: Caller = Depends(read), services: ApiServices = Depends(api_services)
) -> DomainWithRecords:
    found = await services.provisioning.domain_records(name, tenant=caller.tenant.name)
    return DomainWithRecords.with_records(found)


@router.post(
    "/domains/{name}/rotate",
    summary="Give a sending domain a new DKIM key under a new selector",
    responses=responses(401, 403, 404, 422, 429),
)
async def rotate_domain(
    name: str,
    body: DkimKey | None = Body(default=None),
    caller: Caller = Depends(manage),
    services: ApiServices = Depends(api_services),
) -> RotatedDomain:
    key = (body or DkimKey()).spec()
    rotated = await services.provisioning.rotate_domain(name, key, tenant=caller.tenant.name)
    return RotatedDomain(
        **DomainWithRecords.with_records(rotated).model_dump(),
        previous_selector=rotated.previous_selector or "",
    )


@router.post(
    "/domains/{name}/verify",
    summary="Check through DNS that the domain's records are published",
    responses=responses(401, 403, 404, 429, 503),
)
async def verify_domain(
    name: str, caller: Caller = Depends(read), services: ApiServices = Depends(api_services)
) -> VerificationOut:
    p, tenant = services.provisioning, caller.tenant.name
    if services.dns is None:
        await p.domain(name, tenant=tenant)  # another tenant's is unknown before unavailable
        raise ApiError(503, "unavailable", "no DNS resolver is configured for verification")
    report = await p.verify_domain(name, services.dns, tenant=tenant)
    return VerificationOut.of(report)


@router.delete(
    "/domains/{name}",
    status_code=204,
    summary="Remove a sending domain and its DKIM key",
    responses=responses(401, 403, 404, 429),
)
async def remove_domain(
    name: str, caller: Caller = Depends(manage), services: ApiServices = Depends(api_services)
) -> Response:
    await services.provisioning.remove_domain(name, tenant=caller.tenant.name)
    return Response(status_code=204)
