"""Retry timing of temporary failures: backoff delays and message expiry.

Pure: the clock (``now``, ``created_at``, POSIX seconds) and the random
source (``rng``) are parameters.

* :func:`retry_delay`: after the ``n``-th failed attempt (``n >= 1``) wait
  ``min(max, first * 2 ** (n - 1))``, plus a random jitter in
  ``[0, jitter * that delay)`` so that messages failed together do not come
  back together. The jitter is added after the cap, so a delay may exceed
  the cap by up to the jitter fraction.
* :func:`is_expired`: a message expires once its age reaches the maximum.
* :func:`next_due`: when to try again, or ``None`` when that try would come
  at or after expiry: the message expires now rather than wait for a try it
  will never get.

The defaults (``config.schema.RetrySettings``) follow KumoMTA's queue
defaults: first retry after 20 minutes, doubling, expiry after 7 days
(https://docs.kumomta.com/reference/kumo/make_queue_config/retry_interval/,
https://docs.kumomta.com/reference/kumo/make_queue_config/max_age/).
"""

from __future__ import annotations

import math
import random
from typing import Protocol


class RetryPolicy(Protocol):
    """The retry parameters; ``config.schema.RetrySettings`` is one."""

    @property
    def first_retry_seconds(self) -> float: ...

    @property
    def max_retry_seconds(self) -> float: ...

    @property
    def jitter(self) -> float: ...

    @property
    def max_age_seconds(self) -> float: ...


def retry_delay(
    attempts: int,
    first_seconds: float,
    max_seconds: float,
    jitter: float,
    rng: random.Random,
) -> float:
    """Seconds to wait after ``attempts`` failed attempts (exponential backoff with jitter)."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if first_seconds <= 0 or max_seconds <= 0 or jitter < 0:
        raise ValueError("need first_seconds > 0, max_seconds > 0 and jitter >= 0")
    doublings = attempts - 1
    if doublings >= math.log2(max_seconds / first_seconds):
        delay = max_seconds
    else:
        delay = first_seconds * 2.0**doublings
    return delay + delay * jitter * rng.random()


def is_expired(created_at: float, now: float, max_age_seconds: float) -> bool:
    """Whether a message created at ``created_at`` has reached its maximum age at ``now``."""
    return now - created_at >= max_age_seconds


def next_due(
    created_at: float,
    now: float,
    attempts: int,
    policy: RetryPolicy,
    rng: random.Random,
) -> float | None:
    """When to try again after ``attempts`` failed attempts, or ``None`` to expire now."""
    if is_expired(created_at, now, policy.max_age_seconds):
        return None
    due = now + retry_delay(
        attempts, policy.first_retry_seconds, policy.max_retry_seconds, policy.jitter, rng
    )
    if is_expired(created_at, due, policy.max_age_seconds):
        return None
    return due
