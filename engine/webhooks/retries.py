"""When a failed webhook POST is tried again, and when it is given up.

After the ``n``-th failed attempt the next comes after the delivery
backoff's delay (``engine.delivery.retry.retry_delay``: ``first * 2 ** (n -
1)`` capped at ``max``, plus jitter), but never later than ``retry_for``
after the POST was queued: the last attempt is made at that age, so every
POST is tried for at least ``retry_for`` seconds; a failure at or after it
is final. A 2xx status is success; any other status, or none (a refused
connection, a timeout, a broken reply), is a failure. Pure: ``now`` and
``rng`` are parameters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from engine.delivery.retry import retry_delay
from engine.model import WebhookDelivery, WebhookDeliveryState
from engine.store import WebhookAttempt


class WebhookRetryPolicy(Protocol):
    """The retry parameters; ``config.schema.WebhookSettings`` is one."""

    @property
    def first_retry_seconds(self) -> float: ...

    @property
    def max_retry_seconds(self) -> float: ...

    @property
    def retry_jitter(self) -> float: ...

    @property
    def retry_for_seconds(self) -> float: ...


@dataclass(frozen=True, slots=True)
class PostResult:
    """How one POST went: the status the endpoint answered, or the error without one."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def attempt_outcome(
    delivery: WebhookDelivery,
    result: PostResult,
    now: float,
    policy: WebhookRetryPolicy,
    rng: random.Random,
) -> WebhookAttempt:
    """What to store after one more attempt at the claimed ``delivery``."""
    assert delivery.lease_token is not None, "a claimed delivery has a lease token"
    attempts = delivery.attempts + 1
    error = result.error
    if result.ok:
        state, next_at = WebhookDeliveryState.DELIVERED, now
    else:
        if error is None:
            error = f"HTTP {result.status}"
        give_up_at = delivery.created_at + policy.retry_for_seconds
        if now >= give_up_at:
            state, next_at = WebhookDeliveryState.FAILED, now
        else:
            delay = retry_delay(
                attempts,
                policy.first_retry_seconds,
                policy.max_retry_seconds,
                policy.retry_jitter,
                rng,
            )
            state, next_at = WebhookDeliveryState.PENDING, min(now + delay, give_up_at)
    return WebhookAttempt(
        delivery_id=delivery.id,
        lease_token=delivery.lease_token,
        state=state,
        attempts=attempts,
        next_at=next_at,
        status=result.status,
        error=error,
        at=now,
    )
