"""Stats queries and their answer rows: pure.

A ``StatsQuery`` groups the rollup by one or more ``Dimension``s and filters
it by campaign, sending domain, provider and time (``since`` inclusive and
``until`` exclusive, at hour granularity: an hour bucket counts when its
start is in [hour of ``since``, ``until``)). The store sums the rollup rows
per group (``StatTotal``, ``BounceTotal``); ``stats_rows`` turns the sums
into ``StatsRow``s with their rates.

Rates (None when the denominator is 0): delivery = delivered / sent,
bounce = bounced / sent, complaint = complained / delivered, open and
click = unique human opens or clicks / delivered.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.stats.counts import METRICS


class Dimension(enum.StrEnum):
    CAMPAIGN = "campaign"
    DOMAIN = "domain"
    PROVIDER = "provider"
    HOUR = "hour"
    DAY = "day"


TIME_DIMENSIONS = frozenset({Dimension.HOUR, Dimension.DAY})

GroupValue = str | int
"""A group's value on a dimension: a name, or a bucket's start (POSIX seconds)."""


@dataclass(frozen=True, slots=True)
class StatsQuery:
    group_by: tuple[Dimension, ...] = ()
    campaign: str | None = None
    domain: str | None = None
    provider: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError("group_by names a dimension twice")
        if set(self.group_by) >= TIME_DIMENSIONS:
            raise ValueError("group_by takes hour or day, not both")


@dataclass(frozen=True, slots=True)
class StatTotal:
    """The summed ``METRICS`` of one group (values in ``group_by`` order)."""

    group: tuple[GroupValue, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BounceTotal:
    group: tuple[GroupValue, ...]
    category: str
    count: int


@dataclass(frozen=True, slots=True)
class StatsRow:
    """One group's numbers: ``group`` by dimension, the metrics, bounces by category."""

    group: dict[Dimension, GroupValue]
    metrics: dict[str, int]
    bounces: dict[str, int] = field(default_factory=dict)

    def rates(self) -> dict[str, float | None]:
        m = self.metrics
        return {
            "delivery_rate": _ratio(m["delivered"], m["sent"]),
            "bounce_rate": _ratio(m["bounced"], m["sent"]),
            "complaint_rate": _ratio(m["complained"], m["delivered"]),
            "open_rate": _ratio(m["opens_human_unique"], m["delivered"]),
            "click_rate": _ratio(m["clicks_human_unique"], m["delivered"]),
        }

    def to_json(self) -> dict[str, Any]:
        """The row as the API answers it (and ``penguin stats --json`` prints it)."""
        m = self.metrics
        group: dict[str, Any] = {
            str(d): _iso(v) if d in TIME_DIMENSIONS and isinstance(v, int) else v
            for d, v in self.group.items()
        }
        return {
            **group,
            "sent": m["sent"],
            "delivered": m["delivered"],
            "deferred": m["deferred"],
            "bounced": m["bounced"],
            "bounced_by_category": dict(sorted(self.bounces.items())),
            "expired": m["expired"],
            "complained": m["complained"],
            "unsubscribed": m["unsubscribed"],
            "opens": _hits(m, "opens"),
            "clicks": _hits(m, "clicks"),
            "rates": self.rates(),
        }


def stats_rows(
    query: StatsQuery, totals: Sequence[StatTotal], bounces: Sequence[BounceTotal]
) -> list[StatsRow]:
    """The answer rows, ordered by group; a query grouped by nothing answers one row
    (zeros when nothing was counted)."""
    by_group: dict[tuple[GroupValue, ...], dict[str, int]] = {}
    for total in totals:
        by_group[total.group] = dict(zip(METRICS, total.counts, strict=True))
    bounced: dict[tuple[GroupValue, ...], dict[str, int]] = {}
    for bounce in bounces:
        into = bounced.setdefault(bounce.group, {})
        into[bounce.category] = into.get(bounce.category, 0) + bounce.count
    if not query.group_by and not by_group:
        by_group[()] = dict.fromkeys(METRICS, 0)
    return [
        StatsRow(
            dict(zip(query.group_by, group, strict=True)),
            by_group[group],
            bounced.get(group, {}),
        )
        # A dimension's values are all names or all bucket starts: tuples compare as they are.
        for group in sorted(by_group)
    ]


def stats_json(query: StatsQuery, rows: Sequence[StatsRow]) -> dict[str, Any]:
    """The answer's JSON: what ``GET /v1/stats`` sends and ``penguin stats --json`` prints."""
    return {"group_by": [str(d) for d in query.group_by], "rows": [r.to_json() for r in rows]}


_TABLE_COLUMNS = (
    ("sent", lambda j: j["sent"]),
    ("delivered", lambda j: j["delivered"]),
    ("deferred", lambda j: j["deferred"]),
    ("bounced", lambda j: j["bounced"]),
    ("complained", lambda j: j["complained"]),
    ("unsub", lambda j: j["unsubscribed"]),
    ("opens", lambda j: j["opens"]["human_unique"]),
    ("clicks", lambda j: j["clicks"]["human_unique"]),
    ("deliv%", lambda j: _percent(j["rates"]["delivery_rate"])),
    ("bounce%", lambda j: _percent(j["rates"]["bounce_rate"])),
    ("compl%", lambda j: _percent(j["rates"]["complaint_rate"])),
)


def stats_table(query: StatsQuery, rows: Sequence[StatsRow]) -> str:
    """The rows as a text table (opens and clicks: unique human ones)."""
    names = [str(d) for d in query.group_by]
    lines = [[*names, *(title for title, _ in _TABLE_COLUMNS)]]
    for row in rows:
        data = row.to_json()
        cells = [str(data[name]) or "-" for name in names]
        lines.append([*cells, *(str(value(data)) for _, value in _TABLE_COLUMNS)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i < len(names) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}"


def _hits(m: dict[str, int], kind: str) -> dict[str, int]:
    total, unique = m[kind], m[f"{kind}_unique"]
    human, human_unique = m[f"{kind}_human"], m[f"{kind}_human_unique"]
    return {
        "total": total,
        "unique": unique,
        "human_total": human,
        "human_unique": human_unique,
        "machine_total": total - human,
        "machine_unique": unique - human_unique,
    }


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")
