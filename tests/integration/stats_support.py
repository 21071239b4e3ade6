"""A tenant's traffic with a record of every type the stats count, and its expected totals."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.model import MessageState, QueuedMessage, Submission, Tenant
from engine.records.record import Record, RecordType
from engine.rollup.service import StatsRollup
from engine.store import Store

T0 = 1_800_000_000.0
"""An hour's start (and ``FakeClock``'s default time)."""
RECORDS = 5 + 16
"""The records ``send_traffic`` writes."""
GOOGLE_SITE = "alt1.gmail-smtp-in.l.google.com,gmail-smtp-in.l.google.com"


def _message(tenant: Tenant, n: int, domain: str, campaign: str) -> QueuedMessage:
    return QueuedMessage(
        id=f"{tenant.name}-{n}",
        submission_id=f"{tenant.name}-s",
        tenant_id=tenant.id,
        queue=f"{campaign}:{tenant.name}@{domain}",
        campaign=campaign,
        sender=f"news@{tenant.name}.example",
        recipient=f"user{n}@{domain}",
        domain=domain,
        state=MessageState.QUEUED,
        due_at=T0,
        created_at=T0,
    )


async def send_traffic(store: Store, tenant: Tenant, campaign: str = "spring") -> None:
    """Five messages of ``tenant`` (four to a Google-hosted domain, one to another) and
    their records: attempts, bounces, a report, opens, clicks, a complaint, an
    unsubscribe, an expiry; and records no metric counts."""
    m = [_message(tenant, n, "gmail.example", campaign) for n in range(4)]
    m.append(_message(tenant, 4, "elsewhere.example", campaign))
    body = b"Subject: hi\r\n\r\nhello\r\n"
    submission = Submission(f"{tenant.name}-s", tenant.id, body, tuple(m), T0)

    def record(kind: RecordType, i: int, at: float, **fields: Any) -> Record:
        return Record(
            kind, at, tenant.id, id=m[i].id, sender=m[i].sender, recipient=m[i].recipient, **fields
        )

    await store.accept([submission], [record(RecordType.RECEPTION, i, T0) for i in range(5)])

    def hit(kind: RecordType, i: int, first: bool, machine: bool) -> Record:
        meta = {"first": first, "machine": machine}
        return Record(kind, T0 + 600, tenant.id, id=m[i].id, meta=meta)

    await store.add_records(
        [
            record(RecordType.TRANSIENT_FAILURE, 0, T0 + 60, site=GOOGLE_SITE),
            *(record(RecordType.DELIVERY, i, T0 + 120, site=GOOGLE_SITE) for i in range(3)),
            record(
                RecordType.BOUNCE,
                3,
                T0 + 120,
                site=GOOGLE_SITE,
                bounce_classification="InvalidRecipient",
            ),
            record(RecordType.DELAYED, 4, T0 + 130),
            hit(RecordType.OPEN, 0, first=True, machine=False),
            hit(RecordType.OPEN, 0, first=False, machine=False),
            hit(RecordType.OPEN, 1, first=True, machine=True),
            hit(RecordType.CLICK, 0, first=True, machine=False),
            hit(RecordType.CLICK, 1, first=True, machine=True),
            record(RecordType.FEEDBACK, 1, T0 + 900),
            hit(RecordType.UNSUBSCRIBE, 1, first=True, machine=False),
            record(RecordType.OOB, 2, T0 + 3700, bounce_classification="QuotaIssues"),
            record(RecordType.EXPIRATION, 4, T0 + 3700),
            Record(RecordType.ADMIN_ACTION, T0 + 3700, meta={"action": "suspend"}),
        ]
    )


def hits(total: int, unique: int, human: int, human_unique: int) -> dict[str, int]:
    return {
        "total": total,
        "unique": unique,
        "human_total": human,
        "human_unique": human_unique,
        "machine_total": total - human,
        "machine_unique": unique - human_unique,
    }


TOTALS: dict[str, Any] = {
    "sent": 5,
    "delivered": 3,
    "deferred": 1,
    "bounced": 2,
    "bounced_by_category": {"InvalidRecipient": 1, "QuotaIssues": 1},
    "expired": 1,
    "complained": 1,
    "unsubscribed": 1,
    "opens": hits(3, 2, 2, 1),
    "clicks": hits(2, 2, 1, 1),
    "rates": {
        "delivery_rate": 0.6,
        "bounce_rate": 0.4,
        "complaint_rate": 0.333333,
        "open_rate": 0.333333,
        "click_rate": 0.333333,
    },
}
"""What ``send_traffic`` counts, grouped by nothing."""


async def until_counted(rollup: StatsRollup, applied: int) -> None:
    """Step ``rollup`` until it applied ``applied`` records in all (on PostgreSQL another
    database's running transaction may hold the latest back a moment)."""
    async with asyncio.timeout(10):
        while rollup.applied < applied:
            if not await rollup.step():
                await asyncio.sleep(0.01)
