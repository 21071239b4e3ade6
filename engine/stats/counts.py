"""Which counters a log record adds to: pure.

A ``Tally`` takes records of the log (the record's JSON with what the
store knows of its message, ``MessageFacts``) and sums them per ``StatKey``
(tenant, hour, campaign, sending domain, provider) into ``METRICS`` counts
and bounce counts by category. Records of no tenant, and of types no metric
counts, add nothing.

Metrics: ``sent`` (Reception: accepted), ``delivered`` (Delivery),
``deferred`` (TransientFailure, every attempt), ``bounced`` (Bounce and OOB,
also by ``bounce_classification``), ``expired`` (Expiration),
``complained`` (Feedback), ``unsubscribed`` (Unsubscribe), and for opens and
clicks the total, the unique (``meta.first``) and the human share of each
(``meta.machine`` false); the machine share is the total less the human.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

HOUR = 3600
DAY = 86400
OTHER_PROVIDER = "other"
"""The provider of a recipient whose MX matches no provider, or is not known yet."""
UNCLASSIFIED = "Uncategorized"
"""The bounce category of a bounce without ``bounce_classification``."""

METRICS = (
    "sent",
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "complained",
    "unsubscribed",
    "opens",
    "opens_unique",
    "opens_human",
    "opens_human_unique",
    "clicks",
    "clicks_unique",
    "clicks_human",
    "clicks_human_unique",
)
"""The counters of a rollup row, in the order of ``StatCount.counts`` (and the columns)."""

_INDEX = {name: i for i, name in enumerate(METRICS)}
_SIMPLE = {
    "Reception": "sent",
    "Delivery": "delivered",
    "TransientFailure": "deferred",
    "Expiration": "expired",
    "Feedback": "complained",
    "Unsubscribe": "unsubscribed",
}
_BOUNCES = frozenset({"Bounce", "OOB"})
_HITS = {"Open": "opens", "Click": "clicks"}


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the store knows of a record's message, for records that do not say it
    (opens and clicks name neither sender nor campaign)."""

    campaign: str
    """``""`` for none."""
    sender: str
    recipient_domain: str


@dataclass(frozen=True, slots=True, order=True)
class StatKey:
    tenant_id: int
    hour: int
    """POSIX seconds of the hour's start (UTC)."""
    campaign: str
    domain: str
    """The sending domain (the sender's), lower case; ``""`` when unknown."""
    provider: str


@dataclass(frozen=True, slots=True)
class StatCount:
    """Counts to add to one rollup row: ``counts`` in ``METRICS`` order, and bounces by
    category."""

    key: StatKey
    counts: tuple[int, ...]
    bounces: dict[str, int] = field(default_factory=dict)


def hour_of(timestamp: float) -> int:
    """The start of the hour bucket ``timestamp`` falls in."""
    return int(timestamp // HOUR) * HOUR


def domain_of(address: str | None) -> str:
    """The domain of ``address``, lower case; ``""`` without one."""
    if not address or "@" not in address:
        return ""
    return address.rsplit("@", 1)[1].lower()


class Tally:
    """Sums records into rollup counts.

    ``provider_of(site)`` names a site's provider (``""`` for none). A record naming its
    site teaches the provider of its recipient domain; ``known`` keeps what was
    learnt (pass the same dict to the next tally) for the records that do not
    name a site (receptions, opens, bounce reports).
    """

    def __init__(self, provider_of: Callable[[str], str], known: dict[str, str]) -> None:
        self._provider_of = provider_of
        self._known = known
        self._counts: dict[StatKey, list[int]] = {}
        self._bounces: dict[StatKey, dict[str, int]] = {}

    def add(self, tenant_id: int | None, data: dict[str, Any], facts: MessageFacts | None) -> None:
        """Count the record ``data`` (its JSON) of ``tenant_id`` about a message of
        ``facts`` (None when the message is gone or there is none)."""
        metrics = _metrics_of(data)
        if not metrics or tenant_id is None:
            return
        key = self._key_of(tenant_id, data, facts)
        row = self._counts.get(key)
        if row is None:
            row = self._counts[key] = [0] * len(METRICS)
        for metric in metrics:
            row[_INDEX[metric]] += 1
        if data.get("type") in _BOUNCES:
            category = data.get("bounce_classification") or UNCLASSIFIED
            by_category = self._bounces.setdefault(key, {})
            by_category[category] = by_category.get(category, 0) + 1

    def counts(self) -> list[StatCount]:
        """The sums so far, by key."""
        return [
            StatCount(key, tuple(row), dict(self._bounces.get(key, {})))
            for key, row in sorted(self._counts.items())
        ]

    def _key_of(self, tenant_id: int, data: dict[str, Any], facts: MessageFacts | None) -> StatKey:
        recipient_domain = domain_of(data.get("recipient"))
        if facts is not None:
            recipient_domain = facts.recipient_domain or recipient_domain
        site = data.get("site")
        if site:
            provider = self._provider_of(site) or OTHER_PROVIDER
            if recipient_domain:
                self._known[recipient_domain] = provider
        else:
            provider = self._known.get(recipient_domain, OTHER_PROVIDER)
        return StatKey(
            tenant_id=tenant_id,
            hour=hour_of(timestamp_of(data)),
            campaign="" if facts is None else facts.campaign,
            domain=domain_of(data.get("sender") or (facts.sender if facts else None)),
            provider=provider,
        )


def timestamp_of(data: dict[str, Any]) -> float:
    """The POSIX time of a record's JSON ``timestamp`` (RFC 3339)."""
    return datetime.fromisoformat(data["timestamp"]).timestamp()


def _metrics_of(data: dict[str, Any]) -> tuple[str, ...]:
    kind = data.get("type")
    simple = _SIMPLE.get(kind) if isinstance(kind, str) else None
    if simple is not None:
        return (simple,)
    if kind in _BOUNCES:
        return ("bounced",)
    hit = _HITS.get(kind) if isinstance(kind, str) else None
    if hit is None:
        return ()
    meta = data.get("meta") or {}
    first = bool(meta.get("first"))
    human = not meta.get("machine")
    found = [hit]
    if first:
        found.append(f"{hit}_unique")
    if human:
        found.append(f"{hit}_human")
        if first:
            found.append(f"{hit}_human_unique")
    return tuple(found)
