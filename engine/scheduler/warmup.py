"""Warmup: how many messages a new source may send to one provider today.

Owns the warmup plans (``WarmupPlan``: a daily cap per *sending* day, warm
after the last one), the shipped plan ``"standard"`` and the arithmetic that
turns one (source, provider) pair's daily history into today's status
(``warmup_status``): the ramp day, the cap, and whether the ramp is warming,
paused, warm or restarted. Pure: the history and ``today`` are parameters;
reading and writing the counts is the caller's business.

Days are UTC days since the epoch (``utc_day``). A ``DayCount`` holds one
pair's counts of one day: ``sent`` = messages handed to the provider's MX
hosts from the source (delivered, deferred or bounced), ``deferred`` = of
those, temporary failures, ``complained`` = complaints about them received
that day. The deferral rate of a day is ``deferred / sent``, the complaint
rate ``complained / sent``.

Rules (after what large senders publish and their users learned: count
sending days, not calendar days; cap per mailbox provider, not only per IP;
pause the ramp on deferral or complaint spikes; re-warm an IP idle for 30
days or more):
- the ramp day today = 1 + the advancing days before today since the last
  idle gap; an *advancing* day sent something and was not above a pause rate
  (a day that sent fewer than ``min_day_sample`` messages is not judged and
  advances); a day that sent but was above a rate does not advance (a pause);
  a day without sending changes nothing;
- an idle gap is at least ``idle_restart_days`` days in a row without sending:
  the ramp starts again at day 1 (state RESTARTED until the source sends again);
- cap = ``plan.daily[day - 1]``, or None (WARM) past the plan's last day;
- today's own counts never change today's cap (only days before today count).

Invariant: the cap of a day is a value of the plan at an index no greater
than the number of sending days before it, so no (source, provider) pair ever
sends more on its n-th sending day than the plan allows on day n.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from config.schema import Settings

SECONDS_PER_DAY = 86400


@dataclass(frozen=True, slots=True)
class WarmupPlan:
    """A ramp: ``daily[n - 1]`` is the cap of sending day n; warm after the last day."""

    name: str
    daily: tuple[int, ...]


BUILTIN_PLANS: Mapping[str, WarmupPlan] = MappingProxyType(
    {
        "standard": WarmupPlan(
            "standard",
            (
                200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 40_000, 50_000, 75_000,
                100_000, 150_000, 200_000, 250_000, 325_000, 400_000, 500_000, 600_000,
                750_000, 1_000_000, 1_250_000, 1_750_000, 2_000_000, 3_000_000,
                4_250_000, 5_000_000, 6_000_000, 7_500_000, 10_000_000,
            ),
        ),
    }
)  # fmt: skip
"""Shipped plans. ``standard`` is SparkPost's published daily schedule per IP
(support.sparkpost.com, "IP Warm-up Overview"): 29 capped sending days, warm
from day 30. Here the cap applies to each (source, provider) pair."""


@dataclass(frozen=True, slots=True)
class DayCount:
    """One (source, provider) pair's counts of one UTC day (days since the epoch)."""

    day: int
    sent: int
    deferred: int = 0
    complained: int = 0


@dataclass(frozen=True, slots=True)
class WarmupPolicy:
    """When the ramp pauses and when it starts again."""

    deferral_pause_rate: float = 0.2
    """A day whose deferral rate is above this does not advance the ramp."""
    complaint_pause_rate: float = 0.003
    """A day whose complaint rate is above this does not advance the ramp."""
    min_day_sample: int = 20
    """The rates of a day that sent fewer messages are not judged."""
    idle_restart_days: int = 30
    """This many days in a row without sending start the ramp again at day 1."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WarmupPolicy:
        """The policy of the ``[scheduler]`` table."""
        scheduler = settings.scheduler
        return cls(
            deferral_pause_rate=scheduler.warmup_deferral_pause_rate,
            complaint_pause_rate=scheduler.warmup_complaint_pause_rate,
            min_day_sample=scheduler.warmup_min_day_sample,
            idle_restart_days=scheduler.warmup_idle_restart_days,
        )


class WarmupState(StrEnum):
    WARMING = "warming"
    PAUSED = "paused"
    """The last sending day was above a pause rate; today keeps the same day's cap."""
    WARM = "warm"
    """Past the plan's last day: no cap."""
    RESTARTED = "restarted"
    """Idle too long: back to day 1."""


@dataclass(frozen=True, slots=True)
class WarmupStatus:
    """Today's ramp day, cap (None: no cap) and state, with a reason for operators."""

    day: int
    cap: int | None
    state: WarmupState
    reason: str


def utc_day(now: float) -> int:
    """The UTC day of ``now`` (seconds since the epoch), counted from the epoch."""
    return int(now // SECONDS_PER_DAY)


def seconds_to_next_day(now: float) -> float:
    """Seconds from ``now`` to the start of the next UTC day (> 0)."""
    return (utc_day(now) + 1) * SECONDS_PER_DAY - now


def plans_from_settings(settings: Settings) -> Mapping[str, WarmupPlan]:
    """The shipped plans and the ``[warmup_plans.NAME]`` tables (which win by name)."""
    configured = settings.warmup_plans.items()
    return dict(BUILTIN_PLANS) | {
        name: WarmupPlan(name, tuple(plan.daily)) for name, plan in configured
    }


def pause_reason(count: DayCount, policy: WarmupPolicy) -> str:
    """Why ``count``'s day does not advance the ramp; "" when it advances (or sent nothing)."""
    if count.sent < max(1, policy.min_day_sample):
        return ""
    found = []
    for what, value, limit in (
        ("deferral", count.deferred, policy.deferral_pause_rate),
        ("complaint", count.complained, policy.complaint_pause_rate),
    ):
        rate = value / count.sent
        if rate > limit:
            found.append(f"{what} rate {rate:.2%} above {limit:.2%}")
    return "; ".join(found)


def warmup_status(
    plan: WarmupPlan, history: Iterable[DayCount], today: int, policy: WarmupPolicy
) -> WarmupStatus:
    """Today's status of one (source, provider) pair from its daily counts (any order;
    counts of one day add up; days from ``today`` on are ignored)."""
    by_day: dict[int, DayCount] = {}
    for count in history:
        if count.day < today and count.sent > 0:
            seen = by_day.get(count.day)
            by_day[count.day] = count if seen is None else _added(seen, count)
    advanced = 0
    last_pause = ""
    previous: int | None = None
    for day in sorted(by_day):
        if previous is not None and day - previous - 1 >= policy.idle_restart_days:
            advanced = 0
        last_pause = pause_reason(by_day[day], policy)
        advanced += 0 if last_pause else 1
        previous = day
    if previous is not None and today - previous - 1 >= policy.idle_restart_days:
        idle = today - previous - 1
        reason = f"idle {idle} days (restart after {policy.idle_restart_days}): back to day 1"
        return WarmupStatus(1, _cap(plan, 1), WarmupState.RESTARTED, reason)
    ramp_day = advanced + 1
    cap = _cap(plan, ramp_day)
    if cap is None:
        reason = f"plan {plan.name!r} done after {len(plan.daily)} sending days"
        return WarmupStatus(ramp_day, None, WarmupState.WARM, reason)
    if last_pause:
        reason = f"paused at day {ramp_day} of plan {plan.name!r}: last sending day {last_pause}"
        return WarmupStatus(ramp_day, cap, WarmupState.PAUSED, reason)
    reason = f"day {ramp_day} of {len(plan.daily)} of plan {plan.name!r}"
    return WarmupStatus(ramp_day, cap, WarmupState.WARMING, reason)


def _cap(plan: WarmupPlan, day: int) -> int | None:
    return plan.daily[day - 1] if day <= len(plan.daily) else None


def _added(a: DayCount, b: DayCount) -> DayCount:
    return DayCount(a.day, a.sent + b.sent, a.deferred + b.deferred, a.complained + b.complained)
