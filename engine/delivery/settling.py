"""From an attempt's report to the message's next state and its record. Pure.

- delivered → ``delivered`` + Delivery record;
- permanent → ``bounced`` + Bounce record;
- delayed (our own limits held it back, nothing was sent) → back to ``queued``,
  due after the report's ``retry_after``, attempts unchanged + Delayed record;
- transient → back to ``queued``, due after the backoff (doubling with
  jitter, ``engine.delivery.retry.next_due``) + TransientFailure record; when the
  next try would fall past the maximum age → ``expired`` + Expiration record;
- a message already past its maximum age when claimed expires without an
  attempt (Expiration, classification MessageExpired).

Every settlement carries the lease token of the claim the attempt ran under,
so the store applies it only while that claim still holds the message.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from engine.delivery.outcome import OutcomeKind
from engine.delivery.retry import RetryPolicy, is_expired, next_due
from engine.delivery.transport import AttemptReport
from engine.model import MessageState, QueuedMessage, Settlement
from engine.records.record import Record, RecordType
from engine.smtp.reply import Reply

EXPIRED_RESPONSE = Reply(551, "5.4.7", "Delivery time expired")


@dataclass(frozen=True, slots=True)
class RecordContext:
    """Fields every delivery record of this node shares."""

    nodeid: str
    tenant: str
    pool: str = "default"


def settle_attempt(
    message: QueuedMessage,
    report: AttemptReport,
    *,
    lease_token: str,
    now: float,
    size: int,
    retry: RetryPolicy,
    rng: random.Random,
    context: RecordContext,
) -> tuple[Settlement, Record]:
    """The settlement and record for one finished attempt."""
    outcome = report.outcome
    reply = outcome.reply
    if outcome.kind is OutcomeKind.DELAYED:
        return delayed(
            message,
            reply,
            lease_token=lease_token,
            now=now,
            until=now + report.retry_after,
            context=context,
            site=report.site,
            egress_source=report.source,
            source_address=report.source_address,
        )
    attempts = message.attempts + 1
    error = None if outcome.kind is OutcomeKind.DELIVERED else str(reply)
    if outcome.kind is OutcomeKind.DELIVERED:
        state, record_type, due = MessageState.DELIVERED, RecordType.DELIVERY, now
    elif outcome.kind is OutcomeKind.PERMANENT:
        state, record_type, due = MessageState.BOUNCED, RecordType.BOUNCE, now
    else:
        retry_at = next_due(message.created_at, now, attempts, retry, rng)
        if retry_at is None:
            state, record_type, due = MessageState.EXPIRED, RecordType.EXPIRATION, now
        else:
            state, record_type, due = MessageState.QUEUED, RecordType.TRANSIENT_FAILURE, retry_at
    settlement = Settlement(message.id, lease_token, state, attempts, due, error)
    record = message_record(
        record_type,
        message,
        now=now,
        context=context,
        num_attempts=attempts,
        site=report.site,
        size=size,
        response=reply,
        command=None if reply.stage is None else reply.stage.command,
        peer_address=(
            (report.peer_name or "", report.peer_address or "") if report.peer_address else None
        ),
        bounce_classification=(
            None if outcome.kind is OutcomeKind.DELIVERED else outcome.classification
        ),
        egress_source=report.source,
        source_address=report.source_address,
        tls_cipher=report.tls_cipher,
        tls_protocol_version=report.tls_version,
    )
    return settlement, record


def delayed(
    message: QueuedMessage,
    reason: Reply,
    *,
    lease_token: str,
    now: float,
    until: float,
    context: RecordContext,
    **fields: Any,
) -> tuple[Settlement, Record]:
    """Put a claimed message back, due at ``until``, without counting an attempt: our
    own limits held it back (``reason`` says which)."""
    settlement = Settlement(
        message.id, lease_token, MessageState.QUEUED, message.attempts, until, reason.text
    )
    return settlement, delayed_record(message, reason, now=now, context=context, **fields)


def delayed_record(
    message: QueuedMessage,
    reason: Reply,
    *,
    now: float,
    context: RecordContext,
    **fields: Any,
) -> Record:
    """The Delayed record of a message our own limits hold back (``reason`` says which
    and until when)."""
    return message_record(
        RecordType.DELAYED,
        message,
        now=now,
        context=context,
        num_attempts=message.attempts,
        response=reason,
        **fields,
    )


def expire_unattempted(
    message: QueuedMessage, *, lease_token: str, now: float, context: RecordContext
) -> tuple[Settlement, Record]:
    """Expire a claimed message that is already past its maximum age."""
    return _settle_unattempted(
        message,
        MessageState.EXPIRED,
        RecordType.EXPIRATION,
        EXPIRED_RESPONSE,
        lease_token=lease_token,
        now=now,
        context=context,
        bounce_classification="MessageExpired",
    )


def shunt(
    message: QueuedMessage, *, lease_token: str, now: float, error: str, context: RecordContext
) -> tuple[Settlement, Record]:
    """Park a message whose attempt broke the engine: kept, never retried by itself."""
    return _settle_unattempted(
        message,
        MessageState.SHUNTED,
        RecordType.SHUNTED,
        Reply(451, "4.3.0", error),
        lease_token=lease_token,
        now=now,
        context=context,
    )


def _settle_unattempted(
    message: QueuedMessage,
    state: MessageState,
    record_type: RecordType,
    response: Reply,
    *,
    lease_token: str,
    now: float,
    context: RecordContext,
    **fields: Any,
) -> tuple[Settlement, Record]:
    """End a claimed message without an attempt: its settlement and its record."""
    settlement = Settlement(message.id, lease_token, state, message.attempts, now, response.text)
    record = message_record(
        record_type,
        message,
        now=now,
        context=context,
        num_attempts=message.attempts,
        response=response,
        **fields,
    )
    return settlement, record


def message_record(
    record_type: RecordType,
    message: QueuedMessage,
    *,
    now: float,
    context: RecordContext,
    **fields: Any,
) -> Record:
    """A record about ``message``: its identity and context, plus ``fields``."""
    return Record(
        type=record_type,
        timestamp=now,
        tenant_id=message.tenant_id,
        id=message.id,
        sender=message.sender,
        recipient=message.recipient,
        queue=message.queue,
        created=message.created_at,
        egress_pool=context.pool,
        meta={"tenant": context.tenant, "campaign": message.campaign or None},
        nodeid=context.nodeid,
        **fields,
    )


def is_past_max_age(message: QueuedMessage, now: float, retry: RetryPolicy) -> bool:
    return is_expired(message.created_at, now, retry.max_age_seconds)
