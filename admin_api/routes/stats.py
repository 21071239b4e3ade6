"""``/v1/stats``: a tenant's delivery, bounce, complaint and engagement numbers.

Read from the stats rollup (``engine.stats``), never from the record log:
grouped by one or more of ``campaign``, ``domain`` (sending), ``provider``,
``hour``, ``day`` (``group_by``, repeated or comma-separated), filtered by
campaign, domain, provider and time (``since`` inclusive, ``until``
exclusive, RFC 3339 or POSIX seconds; at hour granularity). Scope ``read``;
``penguin stats`` prints the same rows (``engine.rollup.service.read_stats``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import ApiError, responses
from admin_api.services import ApiServices
from engine.rollup.service import read_stats
from engine.stats.report import Dimension, StatsQuery, stats_json

router = APIRouter(tags=["stats"])
read = tenant_caller(Scope.READ)


class HitsOut(BaseModel):
    total: int = Field(description="Every hit.")
    unique: int = Field(description="Messages hit at least once (first hits).")
    human_total: int = Field(description="Hits judged a person's.")
    human_unique: int = Field(description="First hits judged a person's.")
    machine_total: int = Field(description="Hits judged a machine's (scanners, prefetch).")
    machine_unique: int = Field(description="First hits judged a machine's.")


class RatesOut(BaseModel):
    delivery_rate: float | None = Field(description="delivered / sent; null when none sent.")
    bounce_rate: float | None = Field(description="bounced / sent.")
    complaint_rate: float | None = Field(description="complained / delivered.")
    open_rate: float | None = Field(description="unique human opens / delivered.")
    click_rate: float | None = Field(description="unique human clicks / delivered.")


class StatsRowOut(BaseModel):
    campaign: str | None = Field(None, description="The campaign (grouped by campaign).")
    domain: str | None = Field(None, description="The sending domain (grouped by domain).")
    provider: str | None = Field(
        None, description="The recipients' MX provider, `other` for none (grouped by provider)."
    )
    hour: str | None = Field(None, description="The hour's start, UTC (grouped by hour).")
    day: str | None = Field(None, description="The day's start, UTC (grouped by day).")
    sent: int = Field(description="Messages accepted (Reception).")
    delivered: int = Field(description="Deliveries (Delivery).")
    deferred: int = Field(description="Attempts deferred (TransientFailure).")
    bounced: int = Field(description="Bounces, at delivery and reported later (Bounce, OOB).")
    bounced_by_category: dict[str, int] = Field(description="`bounced` by bounce category.")
    expired: int = Field(description="Messages that expired undelivered (Expiration).")
    complained: int = Field(description="Complaints (Feedback).")
    unsubscribed: int = Field(description="Unsubscribes (Unsubscribe).")
    opens: HitsOut
    clicks: HitsOut
    rates: RatesOut


class StatsOut(BaseModel):
    group_by: list[Dimension] = Field(description="The dimensions rows are grouped by.")
    rows: list[StatsRowOut] = Field(
        description="One row per group, ordered by group; one row when grouped by nothing."
    )


def _dimensions(group_by: list[str]) -> tuple[Dimension, ...]:
    names = [name.strip() for value in group_by for name in value.split(",") if name.strip()]
    try:
        return tuple(Dimension(name) for name in names)
    except ValueError as exc:
        expected = ", ".join(d.value for d in Dimension)
        raise ApiError(422, "invalid", f"group_by: expected {expected}", "group_by") from exc


def _seconds(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@router.get(
    "/stats",
    summary="The tenant's numbers by campaign, sending domain, provider, hour or day",
    response_model=StatsOut,
    response_model_exclude_unset=True,
    responses=responses(401, 403, 422, 429),
)
async def get_stats(
    group_by: list[str] = Query(
        [], description="campaign, domain, provider, hour or day; repeated or comma-separated."
    ),
    campaign: str | None = Query(None, max_length=255, description="Only this campaign."),
    domain: str | None = Query(None, max_length=253, description="Only this sending domain."),
    provider: str | None = Query(None, max_length=64, description="Only this provider."),
    since: datetime | None = Query(None, description="From this time (RFC 3339 or POSIX)."),
    until: datetime | None = Query(None, description="Before this time (RFC 3339 or POSIX)."),
    caller: Caller = Depends(read),
    services: ApiServices = Depends(api_services),
) -> StatsOut:
    try:
        query = StatsQuery(
            group_by=_dimensions(group_by),
            campaign=campaign,
            domain=None if domain is None else domain.lower(),
            provider=provider,
            since=_seconds(since),
            until=_seconds(until),
        )
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc), "group_by") from exc
    rows = await read_stats(services.store, caller.tenant.id, query)
    return StatsOut.model_validate(stats_json(query, rows))
