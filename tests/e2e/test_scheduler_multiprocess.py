"""Limits hold for a pair of delivery processes on one PostgreSQL and one Redis.

Two ``penguin run --role delivery`` nodes and one submission node share the
store and, through ``[redis]``, the lane limits: the sink never sees more
connections from the source than the shaping file's ``connection_limit``,
and a source warming up delivers its day's cap once for the pair, not once
per process; the rest waits with Delayed records (warmup cap), never
bounced.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from config.schema import RedisSettings
from tests.e2e.conftest import (
    EngineProcess,
    penguin,
    provision,
    start_engine,
    submit,
    wait_for,
)
from tests.e2e.scheduling import (
    DEFAULT_SOURCE,
    Destinations,
    delayed_for,
    ok_recipients,
    records_of,
    second_node,
    stays,
)


def start_pair(tmp_path: Path, engine_factory: list[EngineProcess], config: Path) -> EngineProcess:
    """Two delivery nodes and one submission node on ``config``'s database; the submitter."""
    other = second_node(config, tmp_path / "two", "e2e-two")
    start_engine(engine_factory, config, "delivery")
    start_engine(engine_factory, other, "delivery")
    return start_engine(engine_factory, config, "submission")


def test_connection_limit_holds_for_two_processes(
    tmp_path: Path,
    destinations: Destinations,
    engine_factory: list[EngineProcess],
    postgres_url: str,
    redis_settings: RedisSettings,
) -> None:
    destinations.site("lanes.test", "mx.lanes.test")
    destinations.sink.sink.slow_seconds = 0.3  # each message holds its connection a while
    config = destinations.config(
        tmp_path / "one",
        database_url=postgres_url,
        redis=redis_settings,
        shaping='[site."mx.lanes.test"]\nconnection_limit = 2\nmax_deliveries_per_connection = 4\n',
    )
    account = provision(config)
    submitter = start_pair(tmp_path, engine_factory, config)
    recipients = ok_recipients("slow-", "lanes.test", 24)
    submit(submitter.submission, account, recipients)

    destinations.sink.wait_for_count(len(recipients), timeout=40)
    assert destinations.received(recipients) == len(recipients)
    peak = destinations.sink.inbox.peak_connections(DEFAULT_SOURCE)
    assert peak <= 2, f"the sink saw {peak} connections at once from {DEFAULT_SOURCE}"
    assert peak == 2, "the lane used both of its connections"
    wait_for(
        lambda: len(records_of(config, "Delivery")) == len(recipients), what="Delivery records"
    )
    nodes = collections.Counter(r["nodeid"] for r in records_of(config, "Delivery"))
    assert set(nodes) == {"e2e", "e2e-two"}, f"both processes delivered: {dict(nodes)}"
    assert not records_of(config, "TransientFailure"), "waiting for a slot is no attempt"


def test_warmup_cap_holds_for_two_processes(
    tmp_path: Path,
    destinations: Destinations,
    engine_factory: list[EngineProcess],
    postgres_url: str,
    redis_settings: RedisSettings,
) -> None:
    destinations.site("warm.test", "mx.warm-mx.test")
    config = destinations.config(
        tmp_path / "one",
        database_url=postgres_url,
        redis=redis_settings,
        shaping='[provider.warmtest]\nmatch = ["warm-mx.test"]\n',
        sources=(
            f'[sources.default]\naddress = "{DEFAULT_SOURCE}"\n'
            'ehlo_hostname = "mta1.penguin.test"\nwarmup = "seven"\n'
        ),
        tables="[warmup_plans.seven]\ndaily = [7]\n",
    )
    account = provision(config)
    submitter = start_pair(tmp_path, engine_factory, config)
    recipients = ok_recipients("user", "warm.test", 30)
    submit(submitter.submission, account, recipients)

    def capped() -> bool:
        return len(delayed_for(config, "warm")) >= len(recipients) - 7

    wait_for(capped, timeout=30, what="Delayed records (warmup cap) for the 23 over the cap")
    wait_for(lambda: destinations.received(recipients) >= 7, timeout=15, what="the 7 sent")
    assert stays(lambda: len(destinations.sink.messages) == 7, 2.0), "no more today"
    delayed = delayed_for(config, "warm")
    assert not set(delayed) & {r.lower() for r in recipients if destinations.sink.count_for(r)}
    assert all(r["num_attempts"] == 0 for rs in delayed.values() for r in rs)
    assert not records_of(config, "Bounce")
    assert not records_of(config, "TransientFailure")
    states: collections.Counter[str] = collections.Counter()
    for row in penguin(config, "queue", "summary"):
        states[row["state"]] += row["count"]
    assert states == {"delivered": 7, "queued": 23}

    def warmtest_row() -> dict[str, Any]:
        rows: list[dict[str, Any]] = [
            r for r in penguin(config, "ips") if r["provider"] == "warmtest"
        ]
        assert [r["source"] for r in rows] == ["default"], rows
        return rows[0]

    wait_for(lambda: warmtest_row()["sent_today"] == 7, timeout=15, what="penguin ips: 7 sent")
    row = warmtest_row()
    assert (row["plan"], row["day"], row["cap"], row["state"]) == ("seven", 1, 7, "warming")
