"""The SQL of the stats rollup, shared by both store backends: pure.

Statements use ``?`` placeholders (PostgreSQL's store numbers them); the
aggregates take ``cast`` (``::bigint`` on PostgreSQL, whose ``sum`` of a
bigint is a numeric) so both backends return integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from engine.stats.counts import DAY, HOUR, METRICS, MessageFacts, StatCount, StatKey, hour_of
from engine.stats.report import BounceTotal, Dimension, StatsQuery, StatTotal
from engine.store import LogPosition

KEY_COLUMNS = ("tenant_id", "span", "bucket", "campaign", "domain", "provider")

_GROUP_EXPRESSIONS = {
    Dimension.CAMPAIGN: "campaign",
    Dimension.DOMAIN: "domain",
    Dimension.PROVIDER: "provider",
    Dimension.HOUR: "bucket",
    Dimension.DAY: f"(bucket - bucket % {DAY})",
}
TIME_GROUPS = frozenset({_GROUP_EXPRESSIONS[Dimension.HOUR], _GROUP_EXPRESSIONS[Dimension.DAY]})

MESSAGE_FACTS = "SELECT id, campaign, sender, domain FROM messages WHERE id IN "
"""The facts of messages by id (the list of ids follows)."""
ADD_COUNTS = (
    f"INSERT INTO stat_counts AS s ({', '.join((*KEY_COLUMNS, *METRICS))})"
    f" VALUES ({', '.join('?' * (len(KEY_COLUMNS) + len(METRICS)))})"
    f" ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET "
    + ", ".join(f"{m} = s.{m} + excluded.{m}" for m in METRICS)
)
ADD_BOUNCES = (
    f"INSERT INTO stat_bounces AS s ({', '.join(KEY_COLUMNS)}, category, count)"
    f" VALUES ({', '.join('?' * (len(KEY_COLUMNS) + 2))})"
    f" ON CONFLICT ({', '.join(KEY_COLUMNS)}, category) DO UPDATE SET"
    " count = s.count + excluded.count"
)
LEASE = (
    "UPDATE stat_cursor SET owner = ?, lease_expires = ?"
    " WHERE id = 1 AND (owner IS NULL OR owner = ? OR lease_expires <= ?) RETURNING txid, seq"
)
MOVE_CURSOR = "UPDATE stat_cursor SET txid = ?, seq = ? WHERE id = 1 AND txid = ? AND seq = ?"


def lease_params(owner: str, now: float, lease_seconds: float) -> tuple[object, ...]:
    return (owner, now + lease_seconds, owner, now)


def totals_of(
    query: StatsQuery, totals: list[Any], bounces: list[Any]
) -> tuple[list[StatTotal], list[BounceTotal]]:
    """The rows of ``totals_sql``'s statements as values."""
    n = len(query.group_by)
    return (
        [StatTotal(tuple(row[:n]), tuple(int(v) for v in row[n:])) for row in totals],
        [BounceTotal(tuple(row[:n]), str(row[n]), int(row[n + 1])) for row in bounces],
    )


def cursor_params(expected: LogPosition, reached: LogPosition) -> tuple[int, ...]:
    """``MOVE_CURSOR``'s parameters."""
    return (reached.txid, reached.seq, expected.txid, expected.seq)


def message_facts(row: Any) -> tuple[str, MessageFacts]:
    """A row of ``MESSAGE_FACTS``: the message id and its facts."""
    return str(row[0]), MessageFacts(row[1], row[2], row[3])


def count_rows(counts: Sequence[StatCount]) -> list[tuple[object, ...]]:
    """``ADD_COUNTS``'s rows: each count per hour, and summed per day."""
    return [(*_key(c, span), *c.counts) for span, c in _spans(counts)]


def bounce_rows(counts: Sequence[StatCount]) -> list[tuple[object, ...]]:
    """``ADD_BOUNCES``'s rows: each count per hour, and summed per day."""
    return [
        (*_key(c, span), category, n)
        for span, c in _spans(counts)
        for category, n in sorted(c.bounces.items())
    ]


def _spans(counts: Sequence[StatCount]) -> list[tuple[int, StatCount]]:
    days: dict[StatKey, tuple[list[int], dict[str, int]]] = {}
    for c in counts:
        day = replace(c.key, hour=c.key.hour - c.key.hour % DAY)
        sums, bounces = days.setdefault(day, ([0] * len(METRICS), {}))
        for i, n in enumerate(c.counts):
            sums[i] += n
        for category, n in c.bounces.items():
            bounces[category] = bounces.get(category, 0) + n
    by_day = [StatCount(key, tuple(sums), bounces) for key, (sums, bounces) in days.items()]
    return [(HOUR, c) for c in counts] + [(DAY, c) for c in by_day]


def _key(c: StatCount, span: int) -> tuple[object, ...]:
    k = c.key
    return (k.tenant_id, span, k.hour, k.campaign, k.domain, k.provider)


def span_of(query: StatsQuery) -> int:
    """The buckets a query reads: days, unless it groups by hour or its times cut days."""
    since = None if query.since is None else hour_of(query.since)
    until = None if query.until is None else math.ceil(query.until)
    cut = any(t is not None and t % DAY for t in (since, until))
    return HOUR if Dimension.HOUR in query.group_by or cut else DAY


def totals_sql(query: StatsQuery, cast: str) -> tuple[str, str, list[object]]:
    """(the metrics' sums, the bounces' sums, their parameters after the tenant id) of
    ``query``; the first columns of each are the groups, in ``query.group_by`` order."""
    groups = [_GROUP_EXPRESSIONS[d] for d in query.group_by]
    conditions, params = _conditions(query)
    where = f" WHERE tenant_id = ? AND span = {span_of(query)}"
    where += "".join(f" AND {c}" for c in conditions)
    # Grouped time first: rows come in key order, so the grouping sorts less.
    order = sorted(groups, key=lambda g: g not in TIME_GROUPS)
    group_by = f" GROUP BY {', '.join(order)}" if groups else ""
    sums = ", ".join(f"coalesce(sum({m}), 0){cast}" for m in METRICS)
    totals = f"SELECT {', '.join([*groups, sums])} FROM stat_counts{where}{group_by}"
    bounces = (
        f"SELECT {', '.join([*groups, 'category', f'sum(count){cast}'])} FROM stat_bounces"
        f"{where} GROUP BY {', '.join([*order, 'category'])}"
    )
    return totals, bounces, params


def _conditions(query: StatsQuery) -> tuple[list[str], list[object]]:
    conditions: list[str] = []
    params: list[object] = []
    for column, value in (
        ("campaign", query.campaign),
        ("domain", query.domain),
        ("provider", query.provider),
    ):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    if query.since is not None:
        conditions.append("bucket >= ?")
        params.append(hour_of(query.since))
    if query.until is not None:
        conditions.append("bucket < ?")
        params.append(math.ceil(query.until))
    return conditions, params
