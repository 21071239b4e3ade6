"""Which records go to which webhook, in which bodies; when failed POSTs are retried."""

from __future__ import annotations

import json
import random

import pytest

from config.schema import WebhookSettings
from engine.model import (
    Webhook,
    WebhookDelivery,
    WebhookDeliveryState,
    WebhookFormat,
)
from engine.records.record import Record, RecordType
from engine.store import LoggedRecord, NewWebhookDelivery
from engine.webhooks.payloads import plan_deliveries, probe_payload
from engine.webhooks.retries import PostResult, attempt_outcome

T0 = 1_800_000_000.0


def hook(
    webhook_id: str,
    tenant_id: int,
    *types: str,
    fmt: WebhookFormat = WebhookFormat.SINGLE,
    batch: int = 1,
    enabled: bool = True,
    at: float = T0,
) -> Webhook:
    return Webhook(webhook_id, tenant_id, "https://h.example/", types, fmt, batch, enabled, b"",
                   at, at)  # fmt: skip


def logged(seq: int, tenant_id: int | None, kind: RecordType, at: float = T0) -> LoggedRecord:
    record = Record(kind, at, tenant_id, id=f"m{seq}")
    return LoggedRecord(seq, tenant_id, kind.value, record.to_json())


def test_records_go_to_their_tenants_webhooks_that_want_their_type() -> None:
    records = [
        logged(1, 1, RecordType.RECEPTION),
        logged(2, 1, RecordType.DELIVERY),
        logged(3, 2, RecordType.DELIVERY),
        logged(4, None, RecordType.ADMIN_ACTION),
        logged(5, 1, RecordType.BOUNCE, at=T0 - 1),  # before the webhooks were made
    ]
    hooks = [
        hook("wh_all", 1),
        hook("wh_del", 1, "Delivery", "Bounce"),
        hook("wh_off", 1, enabled=False),
        hook("wh_two", 2, "Bounce"),
    ]
    planned = plan_deliveries(records, hooks)
    assert [(d.webhook_id, json.loads(d.payload)["id"]) for d in planned] == [
        ("wh_all", "m1"),
        ("wh_all", "m2"),
        ("wh_del", "m2"),
    ]
    assert planned[0] == NewWebhookDelivery("wh_all", 1, planned[0].payload, 1)
    assert json.loads(planned[1].payload) == records[1].data


def test_a_batch_webhook_gets_arrays_of_up_to_its_size_in_log_order() -> None:
    records = [logged(seq, 1, RecordType.DELIVERY) for seq in range(1, 8)]
    planned = plan_deliveries(records, [hook("wh_b", 1, fmt=WebhookFormat.BATCH, batch=3)])
    bodies = [json.loads(d.payload) for d in planned]
    assert [[r["id"] for r in body] for body in bodies] == [
        ["m1", "m2", "m3"],
        ["m4", "m5", "m6"],
        ["m7"],
    ]
    assert [d.record_count for d in planned] == [3, 3, 1]
    assert bodies[0][0] == records[0].data


def test_a_probe_is_a_test_record_in_the_webhooks_format() -> None:
    single = json.loads(probe_payload(hook("wh_s", 1), T0))
    assert single["type"] == "Test" and single["meta"] == {"webhook_id": "wh_s"}
    batch = json.loads(probe_payload(hook("wh_b", 1, fmt=WebhookFormat.BATCH, batch=5), T0))
    assert [r["type"] for r in batch] == ["Test"]


def delivery(attempts: int, created_at: float = T0) -> WebhookDelivery:
    return WebhookDelivery(
        id=7, webhook_id="wh", tenant_id=1, payload="{}", record_count=1,
        state=WebhookDeliveryState.PENDING, attempts=attempts, next_at=created_at,
        created_at=created_at, updated_at=created_at, lease_token="tok",
        lease_expires=created_at + 90,
    )  # fmt: skip


SETTINGS = WebhookSettings(
    first_retry_seconds=30, max_retry_seconds=3600, retry_jitter=0.0, retry_for_seconds=86400
)


@pytest.mark.parametrize(
    ("attempts", "age", "result", "state", "delay", "error"),
    [
        (0, 0, PostResult(200), WebhookDeliveryState.DELIVERED, 0, None),
        (0, 0, PostResult(204), WebhookDeliveryState.DELIVERED, 0, None),
        (0, 0, PostResult(500), WebhookDeliveryState.PENDING, 30, "HTTP 500"),
        (1, 30, PostResult(404), WebhookDeliveryState.PENDING, 60, "HTTP 404"),
        (2, 90, PostResult(None, "refused"), WebhookDeliveryState.PENDING, 120, "refused"),
        (20, 50_000, PostResult(503), WebhookDeliveryState.PENDING, 3600, "HTTP 503"),
        (25, 85_000, PostResult(503), WebhookDeliveryState.PENDING, 1400, "HTTP 503"),
        (26, 86_400, PostResult(503), WebhookDeliveryState.FAILED, 0, "HTTP 503"),
        (26, 86_400, PostResult(200), WebhookDeliveryState.DELIVERED, 0, None),
    ],
)
def test_failed_posts_back_off_until_the_retry_time_ends(
    attempts: int,
    age: float,
    result: PostResult,
    state: WebhookDeliveryState,
    delay: float,
    error: str | None,
) -> None:
    now = T0 + age
    outcome = attempt_outcome(delivery(attempts), result, now, SETTINGS, random.Random(1))
    assert (outcome.state, outcome.next_at - now, outcome.error) == (state, delay, error)
    assert (outcome.attempts, outcome.status, outcome.lease_token) == (
        attempts + 1,
        result.status,
        "tok",
    )


def test_retries_are_jittered_and_last_at_least_the_retry_time() -> None:
    settings = WebhookSettings(first_retry_seconds=30, max_retry_seconds=3600, retry_jitter=0.2)
    rng = random.Random(7)
    now, attempts, delays = T0, 0, []
    while True:
        outcome = attempt_outcome(delivery(attempts), PostResult(500), now, settings, rng)
        if outcome.state is WebhookDeliveryState.FAILED:
            break
        delays.append(outcome.next_at - now)
        now, attempts = outcome.next_at, outcome.attempts
    assert now - T0 >= settings.retry_for_seconds
    assert 30 <= delays[0] < 36 and 60 <= delays[1] < 72
    assert len({round(d, 6) for d in delays[:5]}) == 5
    assert max(delays) <= 3600 * 1.2
