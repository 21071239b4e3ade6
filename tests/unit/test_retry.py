import random
from dataclasses import dataclass

import pytest

from config.schema import RetrySettings
from engine.delivery.retry import RetryPolicy, is_expired, next_due, retry_delay

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class Policy:
    first_retry_seconds: float = 20 * MINUTE
    max_retry_seconds: float = 8 * HOUR
    jitter: float = 0.0
    max_age_seconds: float = 7 * DAY


# (attempts, first, max, expected) without jitter: doubling from first, capped at max.
@pytest.mark.parametrize(
    ("attempts", "first", "cap", "expected"),
    [
        (1, 1200.0, 28800.0, 1200.0),
        (2, 1200.0, 28800.0, 2400.0),
        (3, 1200.0, 28800.0, 4800.0),
        (4, 1200.0, 28800.0, 9600.0),
        (5, 1200.0, 28800.0, 19200.0),
        (6, 1200.0, 28800.0, 28800.0),
        (7, 1200.0, 28800.0, 28800.0),
        (10_000, 1200.0, 28800.0, 28800.0),
        (1, 60.0, 60.0, 60.0),
        (3, 60.0, 240.0, 240.0),
        (1, 600.0, 300.0, 300.0),
        (2, 0.5, 1e9, 1.0),
    ],
)
def test_delay_doubles_up_to_the_cap(
    attempts: int, first: float, cap: float, expected: float
) -> None:
    assert retry_delay(attempts, first, cap, 0.0, random.Random(1)) == expected


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5, 6, 8, 20])
def test_jitter_stays_within_its_fraction(attempts: int) -> None:
    rng = random.Random(attempts)
    base = retry_delay(attempts, 1200.0, 28800.0, 0.0, rng)
    delays = [retry_delay(attempts, 1200.0, 28800.0, 0.2, rng) for _ in range(2000)]
    assert all(base <= d < base * 1.2 for d in delays)
    assert min(delays) < base * 1.02
    assert max(delays) > base * 1.18


def test_jitter_is_reproducible_with_a_seed() -> None:
    first = [retry_delay(3, 1200.0, 28800.0, 0.2, random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    assert first[0] != retry_delay(3, 1200.0, 28800.0, 0.2, random.Random(8))


@pytest.mark.parametrize(
    ("attempts", "first", "cap", "jitter"),
    [
        (0, 1200.0, 28800.0, 0.2),
        (-1, 1200.0, 28800.0, 0.2),
        (1, 0.0, 28800.0, 0.2),
        (1, 1200.0, 0.0, 0.2),
        (1, 1200.0, 28800.0, -0.1),
    ],
)
def test_delay_rejects_bad_arguments(
    attempts: int, first: float, cap: float, jitter: float
) -> None:
    with pytest.raises(ValueError):
        retry_delay(attempts, first, cap, jitter, random.Random(1))


@pytest.mark.parametrize(
    ("age", "expired"),
    [(0.0, False), (7 * DAY - 1, False), (7 * DAY, True), (8 * DAY, True)],
)
def test_is_expired_at_max_age(age: float, expired: bool) -> None:
    created = 1_700_000_000.0
    assert is_expired(created, created + age, 7 * DAY) is expired


CREATED = 1_700_000_000.0


# (age at failure, attempts, expected due relative to creation, or None to expire).
@pytest.mark.parametrize(
    ("age", "attempts", "due_age"),
    [
        (0.0, 1, 20 * MINUTE),
        (20 * MINUTE, 2, 60 * MINUTE),
        (60 * MINUTE, 3, 140 * MINUTE),
        (6 * DAY, 20, 6 * DAY + 8 * HOUR),
        (7 * DAY - 8 * HOUR - 1, 20, 7 * DAY - 1),
        (7 * DAY - 8 * HOUR, 20, None),
        (7 * DAY - 1, 1, None),
        (7 * DAY, 1, None),
        (30 * DAY, 1, None),
    ],
)
def test_next_due(age: float, attempts: int, due_age: float | None) -> None:
    due = next_due(CREATED, CREATED + age, attempts, Policy(), random.Random(3))
    assert due == (None if due_age is None else CREATED + due_age)


def test_next_due_applies_jitter() -> None:
    policy = Policy(jitter=0.5)
    due = next_due(CREATED, CREATED, 1, policy, random.Random(5))
    assert due is not None
    assert CREATED + 20 * MINUTE <= due < CREATED + 30 * MINUTE


def test_config_defaults_follow_kumomta_and_fit_the_protocol() -> None:
    settings: RetryPolicy = RetrySettings()
    assert settings.first_retry_seconds == 20 * MINUTE
    assert settings.max_age_seconds == 7 * DAY
    due = next_due(CREATED, CREATED, 1, settings, random.Random(1))
    assert due is not None
    assert CREATED + 20 * MINUTE <= due <= CREATED + 20 * MINUTE * (1 + settings.jitter)
