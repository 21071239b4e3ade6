"""Tenants' quotas at acceptance: messages per UTC day and a rate, shared by every process.

Owns ``TenantQuota``, the one check every way in calls before it accepts
mail for a tenant: SMTP submission (``SubmissionHandler.on_rcpt``) and the
HTTP API (``admit`` with the request's recipient count, answered with 429).
One message is one recipient. The quotas in force come from the tenants'
settings book (``engine.scheduler.tenant_settings``: the config's
``[tenants.NAME]`` with the store's overrides); the counts are kept by the
engine's limiter (``engine.limits``: Redis with ``redis.url``, so every
process and node counts against one quota; in the process otherwise):

- the day: a counter per tenant and UTC day (``quota:day:TENANT_ID:DAY``), the
  day from the ``now`` passed in (the engine's ``Clock``); it expires after
  its day;
- the rate: a GCRA throttle per tenant (``quota:rate:TENANT_ID``).

``admit`` takes all ``count`` units or none of the day's: when the day quota
has room, the rate is asked, and a refusal there gives the day's units back.
A refused rate may still have taken some of its units (a throttle cannot give
back), so a large refused request slows the next ones a little: the quota is
never exceeded, only met early. A tenant without quotas costs no limiter call.

Invariants: over any UTC day a tenant's admitted count never passes its daily
quota (while the limiter is shared; a Redis outage counts in each process);
a verdict that refuses names the quota and when to try again.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.limits import Limiter
from engine.model import Tenant
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.scheduler.warmup import seconds_to_next_day, utc_day

DAY_KEY_GRACE_SECONDS = 3600.0
"""How long a day's counter outlives its day (so a late read still finds it)."""


@dataclass(frozen=True, slots=True)
class QuotaVerdict:
    """Whether ``count`` messages may be accepted now; if not, which quota refused
    (``daily`` or ``rate``), its limit as the operator set it, and the seconds until
    trying again makes sense."""

    allowed: bool
    quota: str = ""
    limit: str = ""
    retry_after: float = 0.0

    def reason(self, tenant: str) -> str:
        """The refusal in words, for a reply or a record; ``""`` when allowed."""
        if self.allowed:
            return ""
        if self.quota == "daily":
            return f"daily quota of {self.limit} messages reached for tenant {tenant}"
        return f"rate quota {self.limit} reached for tenant {tenant}"


ADMITTED = QuotaVerdict(True)


class TenantQuota:
    """The tenants' quotas of ``book``, counted by ``limiter``."""

    def __init__(self, limiter: Limiter, book: TenantSettingsBook) -> None:
        self._limiter = limiter
        self._book = book

    async def admit(self, tenant: Tenant, count: int, now: float) -> QuotaVerdict:
        """Take ``count`` messages of ``tenant``'s quotas at ``now``, all or none of the day's."""
        quotas = self._book.quotas(tenant.name)
        if not quotas.limited or count <= 0:
            return ADMITTED
        if quotas.daily:
            key, ttl = _day_key(tenant, now), seconds_to_next_day(now) + DAY_KEY_GRACE_SECONDS
            taken = await self._limiter.take_within_cap(key, quotas.daily, count, ttl)
            if taken < count:
                if taken:
                    await self._limiter.add(key, -taken, ttl)
                return QuotaVerdict(False, "daily", str(quotas.daily), seconds_to_next_day(now))
        if quotas.rate is not None:
            grant = await self._limiter.throttle(_rate_key(tenant), quotas.rate, now, count)
            if grant.granted < count:
                if quotas.daily:
                    await self.give_back(tenant, count, now)
                limit = self._book.tenant(tenant.name).rate_quota  # as the operator wrote it
                return QuotaVerdict(False, "rate", limit, grant.retry_after)
        return ADMITTED

    async def give_back(self, tenant: Tenant, count: int, now: float) -> None:
        """Return ``count`` messages admitted at ``now`` and then not accepted to the day's
        quota (the rate's units stay spent)."""
        if self._book.quotas(tenant.name).daily and count > 0:
            ttl = seconds_to_next_day(now) + DAY_KEY_GRACE_SECONDS
            await self._limiter.add(_day_key(tenant, now), -count, ttl)

    async def used_today(self, tenant: Tenant, now: float) -> int:
        """Messages of ``tenant`` counted against the day of ``now`` so far."""
        (used,) = await self._limiter.counts([_day_key(tenant, now)])
        return max(0, used)


def _day_key(tenant: Tenant, now: float) -> str:
    return f"quota:day:{tenant.id}:{utc_day(now)}"


def _rate_key(tenant: Tenant) -> str:
    return f"quota:rate:{tenant.id}"
