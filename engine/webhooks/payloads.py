"""What the dispatcher queues: which records go to which webhook, in which bodies.

A webhook is posted the records of its tenant whose type it names (every
type when it names none) and that were made at or after the webhook itself.
Format ``single`` posts each record's JSON object as the body; ``batch``
posts JSON arrays of up to the webhook's ``batch_size`` records, in log
order. The records are KumoMTA's shape (``Record.to_json``), unchanged. A
probe (the API's test POST) carries a record of type ``Test``. Pure.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from engine.model import Webhook, WebhookFormat
from engine.records.record import RECORD_VERSION, rfc3339
from engine.store import LoggedRecord, NewWebhookDelivery

TEST_TYPE: Final = "Test"
MAX_BATCH_SIZE: Final = 1000
"""Most records a webhook of format batch may ask for in one POST."""


def body(payload: Any) -> str:
    """The compact JSON text of ``payload``, as posted."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def wants(webhook: Webhook, record: LoggedRecord, at: float) -> bool:
    """Whether ``webhook`` is posted ``record``, made at ``at``."""
    if record.tenant_id != webhook.tenant_id:
        return False
    if webhook.record_types and record.type not in webhook.record_types:
        return False
    return at >= webhook.created_at


def plan_deliveries(
    records: Sequence[LoggedRecord], webhooks: Sequence[Webhook]
) -> list[NewWebhookDelivery]:
    """The POSTs that bring ``records`` (in log order) to the ``webhooks`` that want them."""
    by_tenant: dict[int, list[Webhook]] = defaultdict(list)
    for webhook in webhooks:
        if webhook.enabled:
            by_tenant[webhook.tenant_id].append(webhook)
    matched: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        candidates = by_tenant.get(record.tenant_id, []) if record.tenant_id is not None else []
        if not candidates:
            continue
        at = _timestamp(record)
        for webhook in candidates:
            if wants(webhook, record, at):
                matched[webhook.id].append(record.data)
    deliveries: list[NewWebhookDelivery] = []
    for webhook in sorted(webhooks, key=lambda w: w.id):
        found = matched.get(webhook.id)
        if not found:
            continue
        if webhook.format is WebhookFormat.SINGLE:
            deliveries.extend(
                NewWebhookDelivery(webhook.id, webhook.tenant_id, body(data), 1) for data in found
            )
            continue
        for start in range(0, len(found), webhook.batch_size):
            chunk = found[start : start + webhook.batch_size]
            deliveries.append(
                NewWebhookDelivery(webhook.id, webhook.tenant_id, body(chunk), len(chunk))
            )
    return deliveries


def probe_payload(webhook: Webhook, now: float) -> str:
    """The body of a test POST to ``webhook``, in its format."""
    record = {
        "type": TEST_TYPE,
        "version": RECORD_VERSION,
        "id": None,
        "timestamp": rfc3339(now),
        "meta": {"webhook_id": webhook.id},
    }
    return body(record if webhook.format is WebhookFormat.SINGLE else [record])


def _timestamp(record: LoggedRecord) -> float:
    """The record's time as POSIX seconds (its JSON carries RFC 3339)."""
    text = record.data.get("timestamp")
    if not isinstance(text, str):
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
