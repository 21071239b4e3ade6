"""The stats' pure parts: which counters a record adds to, and the rows with their rates."""

from __future__ import annotations

from typing import Any

import pytest

from engine.records.record import rfc3339
from engine.stats.counts import METRICS, MessageFacts, StatCount, StatKey, Tally, hour_of
from engine.stats.report import (
    BounceTotal,
    Dimension,
    StatsQuery,
    StatTotal,
    stats_rows,
    stats_table,
)
from engine.store.stats_sql import (
    bounce_rows,
    count_rows,
    provider_bounce_rows,
    provider_count_rows,
    span_of,
    totals_sql,
)

HOUR = 1_800_000_000


def provider_of(site: str) -> str:
    return "google" if site.endswith(".google.com") else ""


FACTS = MessageFacts("spring", "news@Brand.example", "gmail.example")


def logged(kind: str, **data: Any) -> dict[str, Any]:
    """A record's JSON, with the fields the stats read."""
    return {
        "type": kind,
        "timestamp": rfc3339(HOUR + 10),
        "sender": "news@Brand.example",
        "recipient": "u@gmail.example",
        **data,
    }


def tally_of(*records: dict[str, Any], known: dict[str, str] | None = None) -> Tally:
    tally = Tally(provider_of, {} if known is None else known)
    for data in records:
        tally.add(1, data, FACTS)
    return tally


def counted(*records: dict[str, Any]) -> dict[str, int]:
    [count] = tally_of(*records).counts()
    return {m: n for m, n in zip(METRICS, count.counts, strict=True) if n}


@pytest.mark.parametrize(
    ("kind", "meta", "expected"),
    [
        ("Reception", {}, {"sent": 1}),
        ("Delivery", {}, {"delivered": 1}),
        ("TransientFailure", {}, {"deferred": 1}),
        ("Bounce", {}, {"bounced": 1}),
        ("OOB", {}, {"bounced": 1}),
        ("Expiration", {}, {"expired": 1}),
        ("Feedback", {}, {"complained": 1}),
        ("Unsubscribe", {}, {"unsubscribed": 1}),
        (
            "Open",
            {"first": True, "machine": False},
            dict.fromkeys(("opens", "opens_unique", "opens_human", "opens_human_unique"), 1),
        ),
        ("Open", {"first": False, "machine": True}, {"opens": 1}),
        ("Click", {"first": True, "machine": True}, {"clicks": 1, "clicks_unique": 1}),
        ("Click", {"first": False, "machine": False}, {"clicks": 1, "clicks_human": 1}),
    ],
)
def test_each_record_type_adds_to_its_metrics(
    kind: str, meta: dict[str, Any], expected: dict[str, int]
) -> None:
    assert counted(logged(kind, meta=meta)) == expected


def test_records_no_metric_counts_and_records_of_no_tenant_add_nothing() -> None:
    tally = tally_of(logged("Delayed"), logged("AdminAction"))
    tally.add(None, logged("Delivery"), None)
    assert tally.counts() == []


def test_a_site_names_the_provider_of_its_domain_for_later_records() -> None:
    known: dict[str, str] = {}
    tally = tally_of(
        logged("Reception"),
        logged("Delivery", site="alt1.gmail-smtp-in.l.google.com"),
        {"type": "Open", "timestamp": rfc3339(HOUR), "meta": {"first": True}},
        known=known,
    )
    small = MessageFacts("spring", "news@brand.example", "small.example")
    tally.add(1, logged("Delivery", recipient="x@small.example", site="mx.small.example"), small)
    google, other = tally.counts()
    assert google.key == StatKey(1, HOUR, "spring", "brand.example", "google")
    assert google.counts == tuple(
        int(m in ("delivered", "opens", "opens_unique", "opens_human", "opens_human_unique"))
        for m in METRICS
    )
    # The reception came before the delivery named gmail.example's provider.
    assert other.key.provider == "other"
    assert other.counts == tuple(int(m in ("sent", "delivered")) for m in METRICS)
    assert known == {"gmail.example": "google", "small.example": "other"}


def test_bounces_are_counted_by_category() -> None:
    tally = tally_of(
        logged("Bounce", bounce_classification="SpamBlock"),
        logged("OOB", bounce_classification="SpamBlock"),
        logged("Bounce"),
    )
    [count] = tally.counts()
    assert count.bounces == {"SpamBlock": 2, "Uncategorized": 1}


def test_hours_are_whole_utc_hours() -> None:
    assert hour_of(HOUR + 3599.9) == HOUR
    assert hour_of(HOUR + 3600) == HOUR + 3600


def totals(**metrics: int) -> tuple[int, ...]:
    return tuple(metrics.get(m, 0) for m in METRICS)


def test_rows_carry_their_rates_and_none_without_a_denominator() -> None:
    query = StatsQuery(group_by=(Dimension.CAMPAIGN, Dimension.DAY))
    day = HOUR - HOUR % 86400
    rows = stats_rows(
        query,
        [
            StatTotal(("b", day), totals(sent=0)),
            StatTotal(
                ("a", day),
                totals(sent=200, delivered=150, bounced=10, complained=3, opens_human_unique=30),
            ),
        ],
        [BounceTotal(("a", day), "SpamBlock", 10)],
    )
    first, second = (row.to_json() for row in rows)
    assert (first["campaign"], first["day"]) == ("a", "2027-01-15T00:00:00Z")
    assert first["rates"] == {
        "delivery_rate": 0.75,
        "bounce_rate": 0.05,
        "complaint_rate": 0.02,
        "open_rate": 0.2,
        "click_rate": 0.0,
    }
    assert first["bounced_by_category"] == {"SpamBlock": 10}
    assert second["rates"]["delivery_rate"] is None
    table = stats_table(query, rows).splitlines()
    assert table[0].split()[:4] == ["campaign", "day", "sent", "delivered"]
    assert table[1].split()[:4] == ["a", "2027-01-15T00:00:00Z", "200", "150"]


def test_a_query_grouped_by_nothing_answers_one_row_even_with_nothing_counted() -> None:
    [row] = stats_rows(StatsQuery(), [], [])
    assert row.metrics == dict.fromkeys(METRICS, 0)


@pytest.mark.parametrize(
    "group_by", [(Dimension.HOUR, Dimension.DAY), (Dimension.CAMPAIGN, Dimension.CAMPAIGN)]
)
def test_a_query_refuses_both_time_buckets_or_a_dimension_twice(
    group_by: tuple[Dimension, ...],
) -> None:
    with pytest.raises(ValueError):
        StatsQuery(group_by=group_by)


@pytest.mark.parametrize(
    ("query", "span"),
    [
        (StatsQuery(group_by=(Dimension.CAMPAIGN, Dimension.DAY)), 86400),
        (StatsQuery(since=HOUR - HOUR % 86400 + 1800, until=HOUR - HOUR % 86400), 86400),
        (StatsQuery(group_by=(Dimension.HOUR,)), 3600),
        (StatsQuery(since=HOUR), 3600),
        (StatsQuery(until=HOUR + 0.5), 3600),
    ],
)
def test_queries_read_days_unless_they_need_hours(query: StatsQuery, span: int) -> None:
    assert span_of(query) == span


def test_counts_are_kept_per_hour_and_summed_per_day() -> None:
    day = HOUR - HOUR % 86400
    counts = [
        StatCount(StatKey(1, day + 3600 * h, "c", "d", "p"), totals(sent=h + 1), {"X": 1})
        for h in range(3)
    ]
    rows = count_rows(counts)
    assert [row[1:3] for row in rows] == [
        (3600, day),
        (3600, day + 3600),
        (3600, day + 7200),
        (86400, day),
    ]
    assert rows[-1][6] == 1 + 2 + 3
    assert bounce_rows(counts)[-1] == (1, 86400, day, "c", "d", "p", "X", 3)


def test_counts_by_provider_are_summed_over_campaign_and_domain() -> None:
    keys = [("c", "d", "p"), ("c2", "d", "p"), ("c", "d2", "p"), ("c", "d", "q")]
    counts = [
        StatCount(StatKey(1, HOUR, *key), totals(sent=n + 1), {"X": n + 1})
        for n, key in enumerate(keys)
    ]
    day = HOUR - HOUR % 86400
    rows = provider_count_rows(counts)
    assert sorted((row[:4], row[4]) for row in rows) == [
        ((1, 3600, HOUR, "p"), 1 + 2 + 3),
        ((1, 3600, HOUR, "q"), 4),
        ((1, 86400, day, "p"), 1 + 2 + 3),
        ((1, 86400, day, "q"), 4),
    ]
    assert all(len(row) == 4 + len(METRICS) for row in rows)
    assert sorted(provider_bounce_rows(counts)) == [
        (1, 3600, HOUR, "p", "X", 6),
        (1, 3600, HOUR, "q", "X", 4),
        (1, 86400, day, "p", "X", 6),
        (1, 86400, day, "q", "X", 4),
    ]


@pytest.mark.parametrize(
    ("query", "table"),
    [
        (StatsQuery(group_by=(Dimension.PROVIDER, Dimension.HOUR)), "stat_provider_counts"),
        (StatsQuery(group_by=(Dimension.DAY,), provider="google"), "stat_provider_counts"),
        (StatsQuery(), "stat_provider_counts"),
        (StatsQuery(group_by=(Dimension.CAMPAIGN,)), "stat_counts"),
        (StatsQuery(group_by=(Dimension.HOUR,), domain="brand.example"), "stat_counts"),
        (StatsQuery(group_by=(Dimension.PROVIDER,), campaign="spring"), "stat_counts"),
    ],
)
def test_queries_without_campaign_or_domain_read_the_rollup_by_provider(
    query: StatsQuery, table: str
) -> None:
    counts, bounces, _ = totals_sql(query, cast="")
    assert f" FROM {table} " in counts
    assert f" FROM {table.replace('counts', 'bounces')} " in bounces
