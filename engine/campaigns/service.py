"""The campaigns service: what the API and the CLI do with a tenant's campaigns.

Creating compiles the template (Jinja2, sandboxed) and renders it with the
declared variables: a syntax error or a variable not declared is
``Invalid`` naming the field (``template.subject``), before any mail exists;
so is a ``pool`` not in ``[pools]`` or a ``tracking_domain`` not the tenant's
(stored lowercased; ``engine.scheduler.routing`` says how they apply).
Recipients go to a draft only, streamed to the store in batches of ``BATCH``
rows (invalid rows are stored too, as ``invalid``, and reported with their
line). ``start`` makes a draft ``scheduled`` (expansion starts it
at its ``send_at``); ``pause`` holds expansion and suspends the campaign's
queued mail (a campaign suspension); ``resume`` lifts both; ``cancel``
stops expansion and removes its queued messages with AdminBounce records
naming the cancellation (``remove_queued``; see ``expansion`` for a batch
accepted meanwhile).

Failures are provisioning's errors (the API and the CLI report them as
theirs): ``Unknown`` for a campaign absent or another tenant's (one message
for both), ``AlreadyExists`` for a name taken or a state that does not allow
the action, ``Invalid`` naming the field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from config import Settings
from engine.clock import Clock
from engine.delivery.queue_admin import REMOVABLE
from engine.model import (
    Campaign,
    CampaignRecipient,
    CampaignState,
    CampaignTemplate,
    RecipientStatus,
    Tenant,
)
from engine.provisioning import Operations
from engine.provisioning.errors import AlreadyExists, Invalid, Unknown
from engine.provisioning.suppression_csv import BadRow
from engine.rollup.service import read_stats
from engine.scheduler.tenant_settings import pool_problem
from engine.stats.report import StatsQuery
from engine.store import Conflict, Store
from engine.submission.composition import Draft, Mailbox
from engine.submission.templating import CompiledDraft, TemplateProblem

BATCH = 1000
"""Recipient rows stored per transaction."""
REPORTED_ROWS = 100
"""Invalid rows an upload's report lists (all are counted)."""
NO_CAMPAIGN = "no such campaign"
"""The one answer for a campaign absent or another tenant's."""
PAUSE_DURATION = "3650d"
"""A pause's suspension lasts until resumed or cancelled."""


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """What a tenant asks to create."""

    name: str
    template: CampaignTemplate
    variables: tuple[str, ...] = ()
    """The variables each recipient gives; the template may use no other."""
    tracking_domain: str | None = None
    pool: str | None = None
    priority: str | None = None
    send_at: float | None = None


@dataclass(slots=True)
class RecipientReport:
    """What an upload stored: counts and the first invalid rows."""

    added: int = 0
    invalid: int = 0
    invalid_rows: list[BadRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CampaignProgress:
    """A campaign, its rows by status and its record-derived counts (the stats
    rollup of its campaign name, ``engine.rollup``)."""

    campaign: Campaign
    rows: dict[str, int]
    stats: dict[str, int]

    def numbers(self) -> dict[str, int]:
        """The progress as the API and the CLI show it: ``sent`` is the messages
        delivered or bounced, ``opened`` and ``clicked`` count messages once."""
        rows, stats = self.rows, self.stats
        return {
            "recipients": sum(rows.get(s.value, 0) for s in RecipientStatus),
            "pending": rows.get("pending", 0),
            "queued": rows.get("queued", 0),
            "sent": stats["delivered"] + stats["bounced"],
            "delivered": stats["delivered"],
            "bounced": stats["bounced"],
            "opened": stats["opens_unique"],
            "clicked": stats["clicks_unique"],
            "complained": stats["complained"],
            "unsubscribed": stats["unsubscribed"],
            "suppressed": rows.get("suppressed", 0),
            "invalid": rows.get("invalid", 0),
            "failed": rows.get("failed", 0),
        }


def campaign_draft(template: CampaignTemplate) -> Draft:
    """The draft every recipient's message is rendered from (``to`` set per row)."""
    return Draft(
        sender=Mailbox(template.sender),
        subject=template.subject,
        text=template.text,
        html=template.html,
        headers=template.headers,
    )


def compiled_template(template: CampaignTemplate) -> CompiledDraft:
    """The template compiled; ``Invalid`` naming ``template.FIELD``."""
    if template.html is None and template.text is None:
        raise Invalid("give text, html or both", field="template.text")
    try:
        return CompiledDraft(campaign_draft(template), "template.")
    except TemplateProblem as exc:
        raise Invalid(exc.message, field=exc.field) from exc


class Campaigns:
    """A tenant's campaigns on ``store``; ``operations`` suspends and removes mail."""

    def __init__(
        self, store: Store, settings: Settings, clock: Clock, operations: Operations
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._operations = operations

    async def create(self, tenant: Tenant, spec: CampaignSpec) -> Campaign:
        compiled = compiled_template(spec.template)
        try:
            compiled.render(dict.fromkeys(spec.variables, "x"))
        except TemplateProblem as exc:
            raise Invalid(exc.message, field=exc.field) from exc
        tracking_domain = await self._tracking_domain(tenant, spec.tracking_domain)
        if spec.pool is not None and (problem := pool_problem(self._settings, spec.pool)):
            raise Invalid(problem, field="pool")
        now = self._clock.now()
        state = CampaignState.DRAFT
        campaign = Campaign(
            0, tenant.id, spec.name, state, spec.template, tracking_domain,
            spec.pool, spec.priority, spec.send_at, now, now,
        )  # fmt: skip
        try:
            return await self._store.add_campaign(campaign)
        except Conflict as exc:
            raise AlreadyExists(f"campaign {spec.name!r} exists") from exc

    async def _tracking_domain(self, tenant: Tenant, name: str | None) -> str | None:
        """``name`` as stored, one of the tenant's tracking domains; ``Invalid`` if not."""
        if name is None:
            return None
        wanted = name.strip().lower().rstrip(".")
        if await self._store.get_tracking_domain(wanted, tenant.id) is None:
            known = ", ".join(d.name for d in await self._store.list_tracking_domains(tenant.id))
            raise Invalid(
                f"{name!r} is not a tracking domain of the tenant (its: {known or 'none'})",
                field="tracking_domain",
            )
        return wanted

    async def get(self, tenant: Tenant, campaign_id: int) -> Campaign:
        campaign = await self._store.get_campaign(tenant.id, campaign_id)
        if campaign is None:
            raise Unknown(NO_CAMPAIGN)
        return campaign

    async def find(self, tenant: Tenant, name_or_id: str) -> Campaign:
        """A campaign by id or by name (the CLI's way)."""
        if name_or_id.isdigit():
            return await self.get(tenant, int(name_or_id))
        for campaign in await self._store.list_campaigns(tenant.id):
            if campaign.name == name_or_id:
                return campaign
        raise Unknown(NO_CAMPAIGN)

    async def list(self, tenant: Tenant) -> list[Campaign]:
        return await self._store.list_campaigns(tenant.id)

    async def progress(self, tenant: Tenant, campaign_id: int) -> CampaignProgress:
        campaign = await self.get(tenant, campaign_id)
        rows = await self._store.campaign_counts(tenant.id, campaign.id)
        [stats] = await read_stats(self._store, tenant.id, StatsQuery(campaign=campaign.name))
        return CampaignProgress(campaign, rows, stats.metrics)

    async def add_recipients(
        self, tenant: Tenant, campaign_id: int, rows: Iterable[CampaignRecipient | BadRow]
    ) -> RecipientReport:
        """Store ``rows`` (streamed: ``BATCH`` at a time) after the campaign's last row."""
        campaign = await self.get(tenant, campaign_id)
        if campaign.state is not CampaignState.DRAFT:
            raise AlreadyExists(f"recipients go to a draft; the campaign is {campaign.state}")
        report = RecipientReport()
        number = await self._store.last_campaign_row(tenant.id, campaign.id)
        batch: list[CampaignRecipient] = []
        for row in rows:
            number += 1
            if isinstance(row, BadRow):
                report.invalid += 1
                if len(report.invalid_rows) < REPORTED_ROWS:
                    report.invalid_rows.append(row)
                invalid = RecipientStatus.INVALID
                batch.append(
                    CampaignRecipient(number, row.text[:254], {}, invalid, None, row.error)
                )
            else:
                report.added += 1
                batch.append(CampaignRecipient(number, row.address, row.variables))
            if len(batch) >= BATCH:
                await self._store.add_campaign_recipients(tenant.id, campaign.id, batch)
                batch = []
        if batch:
            await self._store.add_campaign_recipients(tenant.id, campaign.id, batch)
        return report

    async def needed_variables(self, tenant: Tenant, campaign_id: int) -> frozenset[str]:
        """The variables each recipient of the campaign must give."""
        campaign = await self.get(tenant, campaign_id)
        return compiled_template(campaign.template).variables

    async def start(self, tenant: Tenant, campaign_id: int) -> Campaign:
        """A draft becomes scheduled: expansion starts it at its ``send_at`` (or now)."""
        return await self._move(tenant, campaign_id, CampaignState.SCHEDULED, {CampaignState.DRAFT})

    async def pause(self, tenant: Tenant, campaign_id: int) -> Campaign:
        running = {CampaignState.SCHEDULED, CampaignState.RUNNING}
        campaign = await self._move(tenant, campaign_id, CampaignState.PAUSED, running)
        await self._operations.suspend(
            "campaign",
            _target(tenant, campaign),
            reason=f"campaign {campaign.name} paused",
            duration=PAUSE_DURATION,
        )
        return campaign

    async def resume(self, tenant: Tenant, campaign_id: int) -> Campaign:
        campaign = await self._move(
            tenant, campaign_id, CampaignState.RUNNING, {CampaignState.PAUSED}
        )
        await self._lift(tenant, campaign)
        return campaign

    async def cancel(self, tenant: Tenant, campaign_id: int) -> tuple[Campaign, int]:
        """Cancel; the campaign and how many queued messages were removed."""
        live = {
            CampaignState.DRAFT,
            CampaignState.SCHEDULED,
            CampaignState.RUNNING,
            CampaignState.PAUSED,
        }
        campaign = await self._move(tenant, campaign_id, CampaignState.CANCELLED, live)
        removed = await remove_queued(self._store, self._operations, tenant, campaign)
        await self._lift(tenant, campaign)
        return campaign, removed

    async def _lift(self, tenant: Tenant, campaign: Campaign) -> None:
        with contextlib.suppress(Unknown):  # not suspended: nothing to lift
            await self._operations.resume("campaign", _target(tenant, campaign))

    async def _move(
        self, tenant: Tenant, campaign_id: int, state: CampaignState, when: set[CampaignState]
    ) -> Campaign:
        now = self._clock.now()
        moved = await self._store.set_campaign_state(tenant.id, campaign_id, state, now, when=when)
        if moved is None:
            campaign = await self.get(tenant, campaign_id)
            raise AlreadyExists(f"campaign {campaign.name!r} is {campaign.state}")
        return moved


async def remove_queued(
    store: Store, operations: Operations, tenant: Tenant, campaign: Campaign
) -> int:
    """Remove the cancelled ``campaign``'s queued and shunted messages, each with an
    AdminBounce record naming the cancellation; how many."""
    why = f"campaign {campaign.name} cancelled"
    removed = 0
    while True:
        page = await store.campaign_messages_in(tenant.id, campaign.name, REMOVABLE, BATCH)
        if not page:
            return removed
        done = await operations.remove(page, why=why)
        removed += len(done)
        if not done:
            return removed


def _target(tenant: Tenant, campaign: Campaign) -> str:
    return f"{tenant.name}:{campaign.name}"


def recipient_json(row: BadRow) -> dict[str, Any]:
    """An invalid row as a report lists it."""
    return {"line": row.line, "text": row.text, "error": row.error}
