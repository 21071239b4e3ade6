"""Expansion: a running campaign's pending rows made into messages and accepted.

It runs in the accepting process (where the acceptor and its spool are): a
campaign's messages take the same way in as SMTP and HTTP ones (checks,
quotas, suppressions at commit, durable before they count), and no other
process needs the template. Each round takes up to ``batch`` pending rows of
each running campaign, renders and composes one message per row (a row that
does not render or compose is ``failed`` with why) and accepts them in one
acceptor call under the idempotency key ``KEY_PREFIX`` + ``ID:FIRST-LAST``, stored in
the acceptance's transaction. The rows are then marked ``queued`` (with the
message id) or ``suppressed``. A crash between the two leaves the rows
pending; the next round takes the same rows (a running campaign's list does
not change), finds the key and marks them from the receipt stored with it:
no row is lost or accepted twice. Rows are taken in row order after the last
one done, so a round never waits on a scan of rows already done.

A scheduled campaign starts at its ``send_at``; one with a pool or a tracking
domain of its own no sooner than ``settle_seconds`` after its creation: by then
every process's snapshots of routing and tracking (refreshed from the store)
hold them, so none of its mail goes out another way. A running one with no
pending row left is ``done``. Over the tenant's quota a campaign waits for the
next round.

Cancel (``Campaigns.cancel``, any process) marks the campaign cancelled, then
removes its queued messages. A batch being accepted meanwhile may commit after
that sweep: so after each batch is accepted the campaign's state is read again,
and if it is cancelled the expansion removes the campaign's queued messages
itself (the same ``remove_queued``). Either the cancel's sweep sees the batch
(accepted before the state changed) or this check sees the cancel; no later
round takes a cancelled campaign.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from config import Settings
from engine.campaigns.service import campaign_draft, remove_queued
from engine.clock import Clock
from engine.model import (
    Campaign,
    CampaignRecipient,
    CampaignState,
    RecipientMark,
    RecipientStatus,
    Tenant,
)
from engine.provisioning import Operations
from engine.service import Address, Health
from engine.store import Store
from engine.submission.acceptance import HeaderField, Reception
from engine.submission.acceptor import (
    Acceptor,
    Idempotency,
    IdempotencyInProgress,
    NotStored,
    Outgoing,
    OverQuota,
    Refused,
)
from engine.submission.composition import CompositionError, Mailbox, composed_message
from engine.submission.templating import CompiledDraft, TemplateProblem

log = logging.getLogger(__name__)

BATCH = 500
IDLE_SECONDS = 1.0
SETTLING_REFRESHES = 2
"""Refreshes of the slower snapshot a new campaign waits for (see ``settle_seconds``)."""
KEY_PREFIX = "campaign\n"
"""Of a batch's idempotency key: no HTTP header value holds a line break, so no
request's ``Idempotency-Key`` can take a campaign's."""


def settle_seconds(settings: Settings) -> float:
    """How long after its creation a campaign waits to start: ``SETTLING_REFRESHES``
    periods of the slower of the snapshots that read its pool (``[scheduler]
    refresh_seconds``) and its tracking domain (``[tracking] refresh_seconds``)."""
    slower = max(settings.scheduler.refresh_seconds, settings.tracking.refresh_seconds)
    return SETTLING_REFRESHES * slower


class Expansion:
    """The ``campaigns`` service of an accepting process (see the module)."""

    name = "campaigns"

    def __init__(
        self,
        *,
        store: Store,
        acceptor: Acceptor,
        operations: Operations,
        clock: Clock,
        hostname: str,
        nodeid: str,
        batch: int = BATCH,
        idle_seconds: float = IDLE_SECONDS,
        settle_seconds: float = 0.0,
    ) -> None:
        self._store = store
        self._acceptor = acceptor
        self._operations = operations
        self._clock = clock
        self._settle_seconds = settle_seconds
        self._hostname = hostname
        self._nodeid = nodeid
        self._batch = batch
        self._idle_seconds = idle_seconds
        self._stopping = asyncio.Event()
        self._after: dict[int, int] = {}
        self._templates: dict[int, CompiledDraft] = {}
        self._problem = ""

    async def start(self) -> list[Address]:
        return []

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = await self.round()
                self._problem = ""
            except Exception as exc:
                log.exception("campaign expansion failed; retrying")
                self._problem = str(exc)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._idle_seconds)

    async def stop(self, grace_seconds: float) -> None:
        self._stopping.set()

    def health(self) -> Health:
        return Health(not self._problem, self._problem or "expanding campaigns")

    async def round(self) -> bool:
        """One batch of each running campaign (starting those due); True if any row
        was done."""
        busy = False
        now = self._clock.now()
        for campaign in await self._store.campaigns_in(
            {CampaignState.SCHEDULED, CampaignState.RUNNING}
        ):
            if campaign.state is CampaignState.SCHEDULED:
                routed = bool(campaign.pool or campaign.tracking_domain)
                settling = self._settle_seconds if routed else 0.0
                starts = max(campaign.send_at or 0.0, campaign.created_at + settling)
                if starts > now:
                    continue
                started = await self._store.set_campaign_state(
                    campaign.tenant_id,
                    campaign.id,
                    CampaignState.RUNNING,
                    now,
                    when={CampaignState.SCHEDULED},
                )
                if started is None:
                    continue
                campaign = started
            busy = await self.expand(campaign) > 0 or busy
        return busy

    async def expand(self, campaign: Campaign) -> int:
        """Accept the campaign's next batch of pending rows; how many rows were done."""
        rows = await self._store.pending_campaign_recipients(
            campaign.tenant_id, campaign.id, self._after.get(campaign.id, 0), self._batch
        )
        if not rows:
            await self._store.set_campaign_state(
                campaign.tenant_id,
                campaign.id,
                CampaignState.DONE,
                self._clock.now(),
                when={CampaignState.RUNNING},
            )
            self._after.pop(campaign.id, None)
            self._templates.pop(campaign.id, None)
            return 0
        tenant = await self._store.get_tenant_by_id(campaign.tenant_id)
        if tenant is None:
            return 0
        marks = await self._accepted(tenant, campaign, rows)
        if marks is None:
            return 0
        await self._store.mark_campaign_recipients(tenant.id, campaign.id, marks)
        if len(marks) == len(rows):
            self._after[campaign.id] = rows[-1].row
        current = await self._store.get_campaign(tenant.id, campaign.id)
        if current is None or current.state is CampaignState.CANCELLED:
            await remove_queued(self._store, self._operations, tenant, campaign)
        return len(marks)

    async def _accepted(
        self, tenant: Tenant, campaign: Campaign, rows: Sequence[CampaignRecipient]
    ) -> list[RecipientMark] | None:
        """The marks of ``rows`` once their messages are accepted; None to try later."""
        marks: list[RecipientMark] = []
        sent: list[CampaignRecipient] = []
        outgoing: list[Outgoing] = []
        for row in rows:
            try:
                raw, fields = self._message(campaign, row)
                outgoing.append(Outgoing(raw, [row.address], fields))
                sent.append(row)
            except (TemplateProblem, CompositionError) as exc:
                marks.append(RecipientMark(row.row, RecipientStatus.FAILED, reason=str(exc)))
        if not sent:
            return marks
        span = f"{KEY_PREFIX}{campaign.id}:{sent[0].row}-{sent[-1].row}"
        domains = frozenset(d.name for d in await self._store.list_domains(tenant.id))
        try:
            receipt = await self._acceptor.accept(
                tenant=tenant,
                domains=domains,
                sender=campaign.template.sender,
                messages=outgoing,
                reception=self._reception(campaign),
                meta={"campaign_id": campaign.id},
                idempotency=Idempotency(span, span),
            )
        except Refused as exc:
            row = sent[exc.message]
            failed = RecipientMark(row.row, RecipientStatus.FAILED, reason=exc.reply.text)
            return [*marks, failed]  # the others stay pending: the next round takes them
        except (OverQuota, NotStored, IdempotencyInProgress) as exc:
            # Over quota, the store down, or another process accepting these rows now.
            log.warning("campaign %s waits: %s", campaign.name, exc)
            return None
        return sorted([*marks, *_marks(sent, receipt)], key=lambda m: m.row)

    def _message(
        self, campaign: Campaign, row: CampaignRecipient
    ) -> tuple[bytes, list[HeaderField]]:
        compiled = self._templates.get(campaign.id)
        if compiled is None:
            compiled = CompiledDraft(campaign_draft(campaign.template), "template.")
            self._templates[campaign.id] = compiled
        draft = compiled.render(row.variables)
        draft = draft._replace(
            to=(Mailbox(row.address),), campaign=campaign.name, priority=campaign.priority
        )
        return composed_message(draft)

    def _reception(self, campaign: Campaign) -> Reception:
        return Reception(
            protocol="campaign",
            peer_host="localhost",
            ehlo_name="campaign",
            session_id=secrets.token_hex(8),
            username=f"campaign:{campaign.id}",
            tls_version=None,
            tls_cipher=None,
            hostname=self._hostname,
            nodeid=self._nodeid,
        )


def _marks(sent: Sequence[CampaignRecipient], receipt: dict[str, Any]) -> list[RecipientMark]:
    """Each sent row queued (with its message id, in order) or suppressed."""
    queued = list(receipt["messages"])
    marks = []
    at = 0
    for row in sent:
        if at < len(queued) and queued[at]["recipient"].lower() == row.address.lower():
            marks.append(RecipientMark(row.row, RecipientStatus.QUEUED, queued[at]["id"]))
            at += 1
        else:
            marks.append(RecipientMark(row.row, RecipientStatus.SUPPRESSED))
    return marks
