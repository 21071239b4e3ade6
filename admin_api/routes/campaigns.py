"""``/v1/campaigns``: a tenant's campaigns, their recipients, progress and control.

Creating (scope ``send``) compiles the template and renders it with the
declared ``variables``: a syntax error or an undeclared variable is a 422
naming the field (``template.subject``), and so is a ``pool`` not configured
or a ``tracking_domain`` not the tenant's. Recipients go to a draft as a JSON
list (``application/json``: ``[{"email": ..., "variables": {...}}]``) or a
CSV (``text/csv`` body or a form's ``file`` part; header
``email,var1,var2...``): received into a temporary file as the body arrives,
read row by row (a JSON list item by item, every item's shape checked before
any row is stored) and stored in batches; the answer
counts the rows and lists the first invalid ones with their line. ``start``
schedules a draft (expansion sends it at ``send_at``, or now); ``pause``,
``resume`` and ``cancel`` control it. Reads need scope ``read``. Another
tenant's campaign is answered as one that does not exist (404).
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from typing import IO, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import ApiError, responses
from admin_api.services import ApiServices
from admin_api.uploads import receive_file
from engine.campaigns import CampaignProgress, CampaignSpec, RecipientReport
from engine.campaigns.recipients import RecipientListError, csv_rows, json_items, json_rows
from engine.campaigns.service import recipient_json
from engine.model import Campaign, CampaignTemplate
from engine.provisioning.suppression_csv import CsvHeaderError

router = APIRouter(tags=["campaigns"])

CAMPAIGN_ID = Path(ge=1, le=2**63 - 1, description="The campaign's id.")
"""A campaign id: within what either store can hold, or a 422 naming it."""
read = tenant_caller(Scope.READ)
send = tenant_caller(Scope.SEND)

UPLOAD_MAX_BYTES = 512 * 1024 * 1024
"""The largest recipient upload (a million rows with a few variables each)."""
CSV_TYPES = ("text/csv", "application/csv", "text/plain")
JSON_TYPES = ("application/json",)
READ_BYTES = 64 * 1024
"""Of an uploaded JSON list, what is decoded at a time."""


class TemplateIn(BaseModel):
    from_: str = Field(alias="from", min_length=3, max_length=254, description="The From address.")
    subject: str = Field(max_length=2000, description="The subject, a Jinja2 template.")
    html: str | None = Field(default=None, description="The HTML body, a Jinja2 template.")
    text: str | None = Field(default=None, description="The text body, a Jinja2 template.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra header fields.")


class CampaignIn(BaseModel):
    name: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="Unique per tenant."
    )
    template: TemplateIn
    variables: list[str] = Field(
        default_factory=list, description="The variables each recipient gives."
    )
    tracking_domain: str | None = Field(
        default=None, description="One of the tenant's tracking domains, for its links."
    )
    pool: str | None = Field(default=None, description="The egress pool (a configured pool).")
    priority: str | None = Field(default=None, description="The priority class.")
    send_at: float | None = Field(default=None, description="When to start (POSIX seconds).")


class CampaignOut(BaseModel):
    id: int
    name: str
    state: str
    tracking_domain: str | None = Field(description="The tracking domain of its links.")
    pool: str | None = Field(description="The egress pool it goes out from.")
    priority: str | None = Field(description="Its priority class.")
    send_at: float | None
    created_at: float
    updated_at: float
    progress: dict[str, int] | None = Field(default=None, description="Counts (show only).")

    @classmethod
    def of(cls, campaign: Campaign, progress: CampaignProgress | None = None) -> CampaignOut:
        return cls(
            id=campaign.id,
            name=campaign.name,
            state=campaign.state.value,
            tracking_domain=campaign.tracking_domain,
            pool=campaign.pool,
            priority=campaign.priority,
            send_at=campaign.send_at,
            created_at=campaign.created_at,
            updated_at=campaign.updated_at,
            progress=None if progress is None else progress.numbers(),
        )


class RecipientReportOut(BaseModel):
    added: int = Field(description="Rows stored to send.")
    invalid: int = Field(description="Rows refused (stored as invalid).")
    invalid_rows: list[dict[str, Any]] = Field(description="The first refused rows and why.")

    @classmethod
    def of(cls, report: RecipientReport) -> RecipientReportOut:
        rows = [recipient_json(r) for r in report.invalid_rows]
        return cls(added=report.added, invalid=report.invalid, invalid_rows=rows)


class CancelOut(CampaignOut):
    removed: int = Field(description="Queued messages removed.")


@router.post("/campaigns", status_code=201, responses=responses(401, 403, 409, 422, 429))
async def create_campaign(
    body: CampaignIn,
    caller: Caller = Depends(send),
    services: ApiServices = Depends(api_services),
) -> CampaignOut:
    t = body.template
    template = CampaignTemplate(t.from_, t.subject, t.html, t.text, tuple(t.headers.items()))
    spec = CampaignSpec(
        body.name, template, tuple(body.variables), body.tracking_domain,
        body.pool, body.priority, body.send_at,
    )  # fmt: skip
    return CampaignOut.of(await services.campaigns.create(caller.tenant, spec))


@router.get("/campaigns", responses=responses(401, 403, 429))
async def list_campaigns(
    caller: Caller = Depends(read), services: ApiServices = Depends(api_services)
) -> list[CampaignOut]:
    return [CampaignOut.of(c) for c in await services.campaigns.list(caller.tenant)]


@router.get("/campaigns/{campaign_id}", responses=responses(401, 403, 404, 429))
async def show_campaign(
    campaign_id: int = CAMPAIGN_ID,
    caller: Caller = Depends(read),
    services: ApiServices = Depends(api_services),
) -> CampaignOut:
    progress = await services.campaigns.progress(caller.tenant, campaign_id)
    return CampaignOut.of(progress.campaign, progress)


@router.post(
    "/campaigns/{campaign_id}/recipients",
    responses=responses(401, 403, 404, 409, 413, 415, 422, 429),
    max_body_size=UPLOAD_MAX_BYTES,
)
async def add_recipients(
    request: Request,
    campaign_id: int = CAMPAIGN_ID,
    caller: Caller = Depends(send),
    services: ApiServices = Depends(api_services),
) -> RecipientReportOut:
    campaigns = services.campaigns
    needed = await campaigns.needed_variables(caller.tenant, campaign_id)
    if request.headers.get("content-type", "").startswith("application/json"):
        with await receive_file(request, JSON_TYPES, UPLOAD_MAX_BYTES) as received:
            try:
                for _ in json_items(_text_chunks(received)):
                    pass  # every item's shape checked before any row is stored
                received.seek(0)
                rows = json_rows(json_items(_text_chunks(received)), needed)
                report = await campaigns.add_recipients(caller.tenant, campaign_id, rows)
            except RecipientListError as exc:
                raise ApiError(422, "invalid", str(exc), field=exc.field) from exc
        return RecipientReportOut.of(report)
    with await receive_file(request, CSV_TYPES, UPLOAD_MAX_BYTES) as received:
        text = io.TextIOWrapper(received, encoding="utf-8-sig", errors="replace", newline="")
        try:
            rows = csv_rows(text, needed)
            report = await campaigns.add_recipients(caller.tenant, campaign_id, rows)
        except CsvHeaderError as exc:
            raise ApiError(422, "invalid", str(exc), field="file") from exc
        finally:
            text.detach()
    return RecipientReportOut.of(report)


def _text_chunks(received: IO[bytes]) -> Iterator[str]:
    """The text of an uploaded file (UTF-8), chunk by chunk."""
    return codecs.iterdecode(iter(lambda: received.read(READ_BYTES), b""), "utf-8-sig", "replace")


CONTROLS = {
    "start": "Schedule a draft: it starts at its send_at (or now)",
    "pause": "Stop expanding and hold the campaign's queued mail",
    "resume": "Go on with a paused campaign",
}


def _control_route(action: str, summary: str) -> None:
    """``POST /campaigns/{id}/ACTION``: the campaign moved, as it is then."""

    async def control(
        campaign_id: int = CAMPAIGN_ID,
        caller: Caller = Depends(send),
        services: ApiServices = Depends(api_services),
    ) -> CampaignOut:
        move = getattr(services.campaigns, action)
        return CampaignOut.of(await move(caller.tenant, campaign_id))

    router.add_api_route(
        f"/campaigns/{{campaign_id}}/{action}",
        control,
        methods=["POST"],
        name=f"{action}_campaign",
        summary=summary,
        responses=responses(401, 403, 404, 409, 429),
    )


for _action, _summary in CONTROLS.items():
    _control_route(_action, _summary)


@router.post("/campaigns/{campaign_id}/cancel", responses=responses(401, 403, 404, 409, 429))
async def cancel_campaign(
    campaign_id: int = CAMPAIGN_ID,
    caller: Caller = Depends(send),
    services: ApiServices = Depends(api_services),
) -> CancelOut:
    campaign, removed = await services.campaigns.cancel(caller.tenant, campaign_id)
    return CancelOut(**CampaignOut.of(campaign).model_dump(), removed=removed)
