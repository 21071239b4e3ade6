"""Pools and traffic shaping as the receiving sink sees them, and ``penguin reload``.

- A tenant's pool of two weighted sources: mail leaves from both addresses
  in about their weights' ratio; a campaign's pool override sends that
  campaign from its own source only.
- A site's ``max_message_rate`` (GCRA, with a burst): no 1 s window at the
  sink holds more than burst + rate messages, and the run lasts at least
  (count - burst) / rate.
- ``penguin reload`` refuses an invalid shaping file naming file and key,
  delivery goes on under the old rules; a valid change takes effect.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

from tests.e2e.conftest import (
    EngineProcess,
    message,
    provision,
    read_records,
    start_engine,
    submit,
)
from tests.e2e.scheduling import (
    DEFAULT_SOURCES,
    Destinations,
    ok_recipients,
    records_of,
    run_penguin,
)
from tests.harness.smtp_sink import most_in_window

POOLS = (
    DEFAULT_SOURCES
    + """
[sources.a]
address = "127.0.0.2"
ehlo_hostname = "a.penguin.test"
weight = 3

[sources.b]
address = "127.0.0.3"
ehlo_hostname = "b.penguin.test"
weight = 1

[sources.c]
address = "127.0.0.4"
ehlo_hostname = "c.penguin.test"

[pools.p1]
sources = ["a", "b"]

[pools.p2]
sources = ["c"]
"""
)

EHLO_OF = {
    "127.0.0.2": "a.penguin.test",
    "127.0.0.3": "b.penguin.test",
    "127.0.0.4": "c.penguin.test",
}


def test_tenant_pool_is_weighted_and_a_campaign_has_its_own(
    tmp_path: Path, destinations: Destinations, engine_factory: list[EngineProcess]
) -> None:
    destinations.site("pool.test", "mx.pool.test")
    config = destinations.config(
        tmp_path,
        sources=POOLS,
        tables='[tenants.acme]\npool = "p1"\n\n[campaigns."acme:promo"]\npool = "p2"\n',
    )
    account = provision(config)
    engine = start_engine(engine_factory, config)
    plain = ok_recipients("plain", "pool.test", 80)
    promo = ok_recipients("promo", "pool.test", 20)
    sender = f"news@{account.domain}"
    submit(engine.submission, account, plain)
    submit(engine.submission, account, promo, message(sender, extra="X-Campaign: promo\r\n"))

    destinations.sink.wait_for_count(len(plain) + len(promo), timeout=30)
    by_group: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for _, rcpt, m in destinations.arrivals("pool.test"):
        by_group[rcpt[:5]][m.peer[0]] += 1
    assert set(by_group["promo"]) == {"127.0.0.4"}, f"the campaign's pool: {by_group['promo']}"
    seen = by_group["plain"]
    assert set(seen) == {"127.0.0.2", "127.0.0.3"}, f"the tenant's pool: {seen}"
    share = seen["127.0.0.2"] / sum(seen.values())
    assert 0.6 <= share <= 0.9, f"weights 3:1 should give about 0.75 from a, got {dict(seen)}"
    ehlos = {(m.peer[0], m.ehlo) for m in destinations.sink.messages}
    assert ehlos <= set(EHLO_OF.items()), f"each source says its own EHLO name: {ehlos}"
    assert engine.terminate() == 0


RATE = 20
BURST = 5
SLACK = 2
"""Messages a 1 s window at the sink may hold beyond BURST + RATE: the throttle grants at
the engine, the sink sees each message an SMTP transaction later, and that delay varies
(tens of ms on a loaded two-core machine); 100 ms of variation lets at most RATE * 0.1 = 2
more messages into a window."""


def test_site_message_rate_holds_at_the_sink(
    tmp_path: Path, destinations: Destinations, engine_factory: list[EngineProcess]
) -> None:
    destinations.site("rate.test", "mx.rate.test")
    config = destinations.config(
        tmp_path,
        shaping=f'[site."mx.rate.test"]\nmax_message_rate = "{RATE}/s,max_burst={BURST}"\n',
    )
    account = provision(config)
    engine = start_engine(engine_factory, config)
    recipients = ok_recipients("user", "rate.test", 100)
    submit(engine.submission, account, recipients)  # one transaction: all due at once

    destinations.sink.wait_for_count(len(recipients), timeout=30)
    times = [t for t, _, _ in destinations.arrivals("rate.test")]
    assert len(times) == len(recipients)
    busiest = most_in_window(times, 1.0)
    assert busiest <= BURST + RATE + SLACK, f"{busiest} messages within 1 s"
    span = max(times) - min(times)
    least = (len(recipients) - BURST) / RATE
    assert span >= least - 0.25, f"100 messages in {span:.2f} s, spec needs >= {least:.2f} s"
    assert not records_of(config, "TransientFailure"), "our own throttle costs no attempt"
    assert engine.terminate() == 0


RELOAD_SITE = '[site."mx.reload.test"]\nconnection_limit = 1\n'
MAX_WAIT = 20.0


def per_connection(destinations: Destinations, recipients: list[str]) -> collections.Counter[int]:
    """How many of ``recipients`` came over each connection of the sink."""
    wanted = {r.lower() for r in recipients}
    return collections.Counter(
        m.connection for _, r, m in destinations.arrivals("reload.test") if r.lower() in wanted
    )


def test_reload_refuses_an_invalid_shaping_file_and_applies_a_valid_one(
    tmp_path: Path, destinations: Destinations, engine_factory: list[EngineProcess]
) -> None:
    destinations.site("reload.test", "mx.reload.test")
    config = destinations.config(
        tmp_path, shaping=RELOAD_SITE + "max_deliveries_per_connection = 1\n"
    )
    shaping = tmp_path / "shaping.toml"
    account = provision(config)
    engine = start_engine(engine_factory, config)
    first = ok_recipients("first", "reload.test", 4)
    submit(engine.submission, account, first)
    destinations.sink.wait_for_count(len(first), timeout=15)
    assert max(per_connection(destinations, first).values()) == 1

    # Invalid: the valid key beside the bad one must not be taken either.
    shaping.write_text(
        RELOAD_SITE + 'max_deliveries_per_connection = 100\nmax_message_rate = "fast"\n'
    )
    refused = run_penguin(config, "reload")
    said = (refused.stdout + refused.stderr).strip()
    assert refused.returncode == 1, said
    assert len(said.splitlines()) == 1, said
    assert "shaping.toml" in said, said
    assert "max_message_rate" in said, said
    second = ok_recipients("second", "reload.test", 4)
    submit(engine.submission, account, second)
    destinations.sink.wait_for_count(len(first) + len(second), timeout=15)
    carried = per_connection(destinations, second)
    assert max(carried.values()) == 1, f"old rules (1 message per connection): {carried}"

    shaping.write_text(RELOAD_SITE + "max_deliveries_per_connection = 100\n")
    applied = run_penguin(config, "reload")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    # The engine reloads on the signal, a moment after the command: send batches until
    # one shares a connection, within a deadline.
    deadline = time.monotonic() + MAX_WAIT
    batch = 0
    while True:
        batch += 1
        third = ok_recipients(f"third{batch}-", "reload.test", 4)
        submit(engine.submission, account, third)
        destinations.sink.wait_for_count(len(first) + len(second) + 4 * batch, timeout=15)
        if max(per_connection(destinations, third).values()) > 1:
            break
        assert time.monotonic() < deadline, "the valid shaping file never took effect"
    assert not [r for r in read_records(config) if r["type"] in ("Bounce", "TransientFailure")]
    assert engine.terminate() == 0
