import random

import pytest

from config.schema import RetrySettings
from engine.delivery.outcome import Outcome, OutcomeKind, Scope
from engine.delivery.retry import next_due
from engine.delivery.settling import (
    RecordContext,
    expire_unattempted,
    is_past_max_age,
    settle_attempt,
    shunt,
)
from engine.delivery.transport import AttemptReport
from engine.model import MessageState, QueuedMessage
from engine.records.record import RecordType
from engine.smtp.reply import Reply, Stage

T0 = 1_800_000_000.0
RETRY = RetrySettings(
    first_retry_seconds=1200, max_retry_seconds=28800, jitter=0.0, max_age_seconds=86400
)
CONTEXT = RecordContext(nodeid="n1", tenant="acme")


def message(attempts: int = 0, created_at: float = T0) -> QueuedMessage:
    return QueuedMessage(
        id="s-1",
        submission_id="s",
        tenant_id=3,
        queue="spring:acme@example.com",
        campaign="spring",
        sender="news@acme.test",
        recipient="bob@example.com",
        domain="example.com",
        state=MessageState.LEASED,
        due_at=created_at,
        created_at=created_at,
        attempts=attempts,
        lease_owner="n1:1",
        lease_token="t1",
    )


def report(kind: OutcomeKind, code: int, enhanced: str, category: str) -> AttemptReport:
    return AttemptReport(
        outcome=Outcome(kind, Scope.RECIPIENT, Reply(code, enhanced, "text", Stage.RCPT), category),
        site="mx.example.com",
        peer_name="mx.example.com",
        peer_address="127.0.0.2",
        source="default",
        source_address="127.0.0.5",
        tls_cipher="TLS_AES_256_GCM_SHA384",
        tls_version="TLSv1.3",
    )


@pytest.mark.parametrize(
    ("kind", "code", "attempts", "now", "state", "record_type", "due_offset"),
    [
        (OutcomeKind.DELIVERED, 250, 0, T0 + 5, MessageState.DELIVERED, RecordType.DELIVERY, 5),
        (OutcomeKind.PERMANENT, 550, 0, T0 + 5, MessageState.BOUNCED, RecordType.BOUNCE, 5),
        (
            OutcomeKind.TRANSIENT,
            451,
            0,
            T0 + 5,
            MessageState.QUEUED,
            RecordType.TRANSIENT_FAILURE,
            5 + 1200,
        ),
        (
            OutcomeKind.TRANSIENT,
            451,
            2,
            T0 + 5,
            MessageState.QUEUED,
            RecordType.TRANSIENT_FAILURE,
            5 + 4800,
        ),
        (
            OutcomeKind.TRANSIENT,
            451,
            1,
            T0 + 86000,
            MessageState.EXPIRED,
            RecordType.EXPIRATION,
            86000,
        ),
    ],
)
def test_outcome_decides_state_record_and_due_time(
    kind: OutcomeKind,
    code: int,
    attempts: int,
    now: float,
    state: MessageState,
    record_type: RecordType,
    due_offset: float,
) -> None:
    settlement, record = settle_attempt(
        message(attempts),
        report(kind, code, "5.1.1" if code >= 500 else "4.2.0", "InvalidRecipient"),
        lease_token="t1",
        now=now,
        size=2048,
        retry=RETRY,
        rng=random.Random(1),
        context=CONTEXT,
    )
    assert settlement.state is state
    assert settlement.attempts == attempts + 1
    assert settlement.due_at == pytest.approx(T0 + due_offset)
    assert (settlement.error is None) == (kind is OutcomeKind.DELIVERED)
    assert record.type is record_type
    data = record.to_json()
    assert data["num_attempts"] == attempts + 1
    assert data["site"] == "mx.example.com"
    assert data["peer_address"] == {"name": "mx.example.com", "addr": "127.0.0.2"}
    assert data["source_address"] == "127.0.0.5"
    assert data["egress_source"] == "default"
    assert data["tls_protocol_version"] == "TLSv1.3"
    assert data["response"]["code"] == code
    assert data["meta"] == {"tenant": "acme", "campaign": "spring"}
    expected_class = None if kind is OutcomeKind.DELIVERED else "InvalidRecipient"
    assert data["bounce_classification"] == expected_class


def test_a_message_past_its_age_expires_without_an_attempt() -> None:
    old = message(attempts=3)
    assert is_past_max_age(old, T0 + 86400, RETRY)
    assert not is_past_max_age(old, T0 + 86399, RETRY)
    settlement, record = expire_unattempted(old, lease_token="t1", now=T0 + 86400, context=CONTEXT)
    assert settlement.state is MessageState.EXPIRED and settlement.attempts == 3
    assert record.type is RecordType.EXPIRATION
    assert record.bounce_classification == "MessageExpired"


def test_shunted_message_is_parked_with_its_error() -> None:
    broken = message(attempts=2)
    settlement, record = shunt(
        broken, lease_token="t1", now=T0 + 5, error="KeyError: 'd'", context=CONTEXT
    )
    assert settlement.state is MessageState.SHUNTED and settlement.attempts == 2
    assert settlement.lease_token == "t1" and settlement.error == "KeyError: 'd'"
    assert record.type is RecordType.SHUNTED and record.num_attempts == 2
    assert record.response is not None and record.response.code == 451
    assert record.to_json()["response"]["content"] == "KeyError: 'd'"


@pytest.mark.parametrize(("attempts", "age"), [(0, 5.0), (3, 3600.0), (9, 86400 - 3 * 3600.0)])
def test_a_transient_failure_is_retried_when_the_retry_policy_says(
    attempts: int, age: float
) -> None:
    retry = RetrySettings(
        first_retry_seconds=1200, max_retry_seconds=28800, jitter=0.5, max_age_seconds=86400
    )
    settlement, _ = settle_attempt(
        message(attempts),
        report(OutcomeKind.TRANSIENT, 451, "4.2.0", "MailboxFull"),
        lease_token="t1",
        now=T0 + age,
        size=2048,
        retry=retry,
        rng=random.Random(attempts),
        context=CONTEXT,
    )
    due = next_due(T0, T0 + age, attempts + 1, retry, random.Random(attempts))
    if due is None:
        assert settlement.state is MessageState.EXPIRED
        assert settlement.due_at == T0 + age
    else:
        assert settlement.state is MessageState.QUEUED
        assert settlement.due_at == due


def test_a_delay_by_our_own_limits_counts_no_attempt_and_no_backoff() -> None:
    held = AttemptReport(
        outcome=Outcome(
            OutcomeKind.DELAYED,
            Scope.SITE,
            Reply(451, "4.4.5", "no connection slot free within 5 s", Stage.CONNECT),
            "TransientFailure",
        ),
        site="mx.example.com",
        source="default",
        retry_after=3.0,
    )
    settlement, record = settle_attempt(
        message(attempts=2),
        held,
        lease_token="t1",
        now=T0 + 5,
        size=2048,
        retry=RETRY,
        rng=random.Random(1),
        context=CONTEXT,
    )
    assert settlement.state is MessageState.QUEUED
    assert settlement.attempts == 2
    assert settlement.due_at == pytest.approx(T0 + 8)
    assert record.type is RecordType.DELAYED and record.num_attempts == 2
    assert record.to_json()["response"]["content"] == "no connection slot free within 5 s"
