"""The records of an operator's requeue and removal."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.delivery.queue_admin import REMOVABLE, REQUEUEABLE, removal_record, requeue_record
from engine.delivery.settling import RecordContext
from engine.model import MessageState, QueuedMessage
from engine.records.record import Record

NOW = 1_800_000_000.0
MESSAGE = QueuedMessage(
    id="sid-1",
    submission_id="sid",
    tenant_id=7,
    queue="spring:acme@example.com",
    campaign="spring",
    sender="news@acme.test",
    recipient="a@example.com",
    domain="example.com",
    state=MessageState.SHUNTED,
    due_at=NOW - 60,
    created_at=NOW - 3600,
    attempts=2,
    last_error="SealError: wrong secret",
)
CONTEXT = RecordContext("node1", "acme")


@pytest.mark.parametrize(
    ("build", "record_type", "response"),
    [
        (requeue_record, "AdminRequeue", None),
        (
            removal_record,
            "AdminBounce",
            {
                "code": 551,
                "enhanced_code": {"class": 5, "subject": 7, "detail": 1},
                "content": "Removed from the queue by an operator",
                "command": None,
            },
        ),
    ],
)
def test_operator_records_name_the_message(
    build: Callable[..., Record], record_type: str, response: object
) -> None:
    record = build(MESSAGE, now=NOW, context=CONTEXT).to_json()
    assert record["type"] == record_type
    assert (record["id"], record["recipient"], record["queue"]) == (
        "sid-1",
        "a@example.com",
        "spring:acme@example.com",
    )
    assert record["num_attempts"] == 2
    assert record["response"] == response
    assert record["meta"] == {"tenant": "acme", "campaign": "spring"}
    assert record["nodeid"] == "node1"


@pytest.mark.parametrize(
    ("state", "requeueable", "removable"),
    [
        (MessageState.SHUNTED, True, True),
        (MessageState.QUEUED, False, True),
        (MessageState.LEASED, False, False),
        (MessageState.DELIVERED, False, False),
        (MessageState.BOUNCED, False, False),
        (MessageState.EXPIRED, False, False),
        (MessageState.SUPPRESSED, False, False),
    ],
)
def test_what_an_operator_may_touch(
    state: MessageState, requeueable: bool, removable: bool
) -> None:
    assert (state in REQUEUEABLE, state in REMOVABLE) == (requeueable, removable)


def test_a_removal_says_why_when_told() -> None:
    record = removal_record(MESSAGE, now=NOW, context=CONTEXT, why="campaign spring cancelled")
    response = record.to_json()["response"]
    assert response["content"] == "Removed from the queue: campaign spring cancelled"
    assert response["code"] == 551
