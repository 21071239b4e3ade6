"""The SQL of the stats rollup, shared by both store backends: pure.

Statements use ``?`` placeholders (PostgreSQL's store numbers them); the
aggregates take ``cast`` (``::bigint`` on PostgreSQL, whose ``sum`` of a
bigint is a numeric) so both backends return integers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from engine.stats.counts import DAY, HOUR, METRICS, MessageFacts, StatCount, StatKey, hour_of
from engine.stats.report import BounceTotal, Dimension, StatsQuery, StatTotal
from engine.store import LogPosition

KEY_COLUMNS = ("tenant_id", "span", "bucket", "campaign", "domain", "provider")
PROVIDER_KEY_COLUMNS = ("tenant_id", "span", "bucket", "provider")
"""The key of the rollup by provider (``KEY_COLUMNS`` without campaign and domain)."""

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


def _add_counts(table: str, keys: Sequence[str]) -> str:
    return (
        f"INSERT INTO {table} AS s ({', '.join((*keys, *METRICS))})"
        f" VALUES ({', '.join('?' * (len(keys) + len(METRICS)))})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
        + ", ".join(f"{m} = s.{m} + excluded.{m}" for m in METRICS)
    )


def _add_bounces(table: str, keys: Sequence[str]) -> str:
    return (
        f"INSERT INTO {table} AS s ({', '.join(keys)}, category, count)"
        f" VALUES ({', '.join('?' * (len(keys) + 2))})"
        f" ON CONFLICT ({', '.join(keys)}, category) DO UPDATE SET"
        " count = s.count + excluded.count"
    )


ADD_COUNTS = _add_counts("stat_counts", KEY_COLUMNS)
ADD_BOUNCES = _add_bounces("stat_bounces", KEY_COLUMNS)
ADD_PROVIDER_COUNTS = _add_counts("stat_provider_counts", PROVIDER_KEY_COLUMNS)
ADD_PROVIDER_BOUNCES = _add_bounces("stat_provider_bounces", PROVIDER_KEY_COLUMNS)

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
        [StatTotal(tuple(row[:n]), tuple(row[n:])) for row in totals],
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


def provider_count_rows(counts: Sequence[StatCount]) -> list[tuple[object, ...]]:
    """``ADD_PROVIDER_COUNTS``'s rows: ``count_rows`` summed over campaign and domain."""
    return [_without_sender(row) for row in count_rows(_by_provider(counts))]


def provider_bounce_rows(counts: Sequence[StatCount]) -> list[tuple[object, ...]]:
    """``ADD_PROVIDER_BOUNCES``'s rows: ``bounce_rows`` summed over campaign and domain."""
    return [_without_sender(row) for row in bounce_rows(_by_provider(counts))]


def _by_provider(counts: Sequence[StatCount]) -> list[StatCount]:
    return _summed(counts, lambda key: replace(key, campaign="", domain=""))


def _without_sender(row: tuple[object, ...]) -> tuple[object, ...]:
    # KEY_COLUMNS' campaign and domain dropped: PROVIDER_KEY_COLUMNS.
    return (*row[:3], *row[5:])


def _spans(counts: Sequence[StatCount]) -> list[tuple[int, StatCount]]:
    by_day = _summed(counts, lambda key: replace(key, hour=key.hour - key.hour % DAY))
    return [(HOUR, c) for c in counts] + [(DAY, c) for c in by_day]


def _summed(counts: Sequence[StatCount], key_of: Callable[[StatKey], StatKey]) -> list[StatCount]:
    """``counts`` summed per ``key_of`` their key."""
    sums: dict[StatKey, tuple[list[int], dict[str, int]]] = {}
    for c in counts:
        metrics, bounces = sums.setdefault(key_of(c.key), ([0] * len(METRICS), {}))
        for i, n in enumerate(c.counts):
            metrics[i] += n
        for category, n in c.bounces.items():
            bounces[category] = bounces.get(category, 0) + n
    return [StatCount(key, tuple(metrics), bounces) for key, (metrics, bounces) in sums.items()]


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
    ``query``; the first columns of each are the groups, in ``query.group_by`` order.

    A query grouped by every key of the table it reads, by hour, reads its rows as
    they are: each group is one row, and there is nothing to sum."""
    groups = [_GROUP_EXPRESSIONS[d] for d in query.group_by]
    conditions, params = _conditions(query)
    span = span_of(query)
    where = f" WHERE tenant_id = ? AND span = {span}"
    where += "".join(f" AND {c}" for c in conditions)
    # Grouped time first: rows come in key order, so the grouping sorts less.
    order = sorted(groups, key=lambda g: g not in TIME_GROUPS)
    counts_table, bounces_table = _tables(query)
    keyed = span == HOUR and set(groups) == _GROUP_KEYS[counts_table]
    if keyed:
        totals = f"SELECT {', '.join([*groups, *METRICS])} FROM {counts_table}{where}"
        bounces = f"SELECT {', '.join([*groups, 'category', 'count'])} FROM {bounces_table}{where}"
        return totals, bounces, params
    group_by = f" GROUP BY {', '.join(order)}" if groups else ""
    sums = ", ".join(f"coalesce(sum({m}), 0){cast}" for m in METRICS)
    totals = f"SELECT {', '.join([*groups, sums])} FROM {counts_table}{where}{group_by}"
    bounces = (
        f"SELECT {', '.join([*groups, 'category', f'sum(count){cast}'])} FROM {bounces_table}"
        f"{where} GROUP BY {', '.join([*order, 'category'])}"
    )
    return totals, bounces, params


_GROUP_KEYS = {
    "stat_counts": {"bucket", "campaign", "domain", "provider"},
    "stat_provider_counts": {"bucket", "provider"},
}
"""The key columns of each counts table a query can group by (its bounces table's,
but for the category)."""


def _tables(query: StatsQuery) -> tuple[str, str]:
    """The rollup tables ``query`` reads: by provider unless it needs campaign or domain."""
    sender = {Dimension.CAMPAIGN, Dimension.DOMAIN}.intersection(query.group_by)
    if sender or query.campaign is not None or query.domain is not None:
        return "stat_counts", "stat_bounces"
    return "stat_provider_counts", "stat_provider_bounces"


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
