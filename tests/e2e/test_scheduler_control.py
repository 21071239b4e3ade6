"""Stopping and slowing mail: operator suspensions and backoff from receivers' replies.

- ``penguin suspend tenant`` holds the tenant's new mail (Delayed records,
  reason suspension, no attempt counted) with an AdminAction record, other
  tenants' mail goes on; ``penguin resume`` lets it go.
- A Gmail-like site answering ``421 4.7.28 ... unusual rate`` gets its rate
  lowered: the next messages arrive at the sink at most at the reduced rate,
  and ``penguin lanes`` shows a backoff level.
- A Microsoft-like site answering ``550 5.7.1 ... (S3150)`` suspends the
  source for that provider, with an AdminAction record saying so; later
  mail to that provider is Delayed, never attempted, while the source still
  delivers elsewhere.

The test's shaping file points the shipped providers (``google``,
``microsoft``) at the test's MX names, so the shipped backoff rules apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.e2e.conftest import (
    EngineProcess,
    penguin,
    penguin_lines,
    provision,
    start_engine,
    submit,
    wait_for,
)
from tests.e2e.scheduling import (
    Destinations,
    delayed_for,
    ok_recipients,
    records_of,
)
from tests.harness.smtp_sink import most_in_window


def stored_records(config: Path, kind: str) -> list[dict[str, Any]]:
    """Records of type ``kind`` in the store (the CLI's own records are only there)."""
    return [r for r in penguin_lines(config, "records", "tail", "-n", "5000") if r["type"] == kind]


def content(record: dict[str, Any]) -> str:
    return str((record.get("response") or {}).get("content") or "")


def test_suspended_tenant_waits_until_resumed(
    tmp_path: Path, destinations: Destinations, engine_factory: list[EngineProcess]
) -> None:
    destinations.site("hold.test", "mx.hold.test")
    config = destinations.config(tmp_path)
    acme = provision(config)
    other = provision(config, "other", "news.other.test")
    penguin(config, "suspend", "tenant", "acme", "--reason", "maintenance", "--for", "2h")
    [action] = stored_records(config, "AdminAction")
    assert "acme" in content(action), content(action)
    assert "maintenance" in content(action), content(action)
    [listed] = penguin(config, "suspensions")
    assert (listed["scope"], listed["target"]) == ("tenant", "acme")

    engine = start_engine(engine_factory, config)
    held = ok_recipients("held", "hold.test", 3)
    submit(engine.submission, acme, held)
    submit(engine.submission, other, ["free@hold.test"])
    wait_for(lambda: destinations.sink.count_for("free@hold.test") == 1, what="other tenant")

    def all_delayed() -> bool:
        return {r.lower() for r in held} <= set(delayed_for(config, "suspen"))

    wait_for(all_delayed, timeout=15, what="Delayed records (suspension) for acme's mail")
    assert [destinations.sink.attempts_for(r) for r in held] == [0, 0, 0]
    delayed = delayed_for(config, "suspen")
    assert all(d["num_attempts"] == 0 for r in held for d in delayed[r.lower()])

    penguin(config, "resume", "tenant", "acme")
    wait_for(lambda: destinations.received(held) == len(held), timeout=20, what="resumed mail")
    actions = [content(r) for r in stored_records(config, "AdminAction")]
    assert len(actions) == 2 and "resumed" in actions[1], actions
    assert penguin(config, "suspensions") == []
    assert not records_of(config, "TransientFailure")
    assert engine.terminate() == 0


GMAIL_LIKE = """[provider.google]
match = ["gmail-mx.test"]
enable_tls = "opportunistic"
max_message_rate = "20/s,max_burst=2"
provider_max_message_rate = "20/s,max_burst=2"
"""
REDUCED_RATE = 10
"""The shipped rule ``gmail-rate`` halves the provider's rate (factor 0.5)."""
SLACK = 2
"""Messages beyond burst + rate in a 1 s window allowed for the varying delay between the
engine's grant and the sink's 250 (see ``test_scheduler_shaping.SLACK``)."""


def backoff_levels(lanes: Any, site_part: str) -> Iterator[int]:
    """Every integer field whose name mentions backoff, in ``penguin lanes`` rows naming
    ``site_part``."""
    rows = lanes if isinstance(lanes, list) else lanes.get("lanes", [])
    for row in rows:
        if site_part in str(row):
            for key, value in row.items():
                if "backoff" in key and isinstance(value, int) and not isinstance(value, bool):
                    yield value


def test_unusual_rate_reply_lowers_the_rate(
    tmp_path: Path, destinations: Destinations, engine_factory: list[EngineProcess]
) -> None:
    destinations.site("gmail.test", "mx.gmail-mx.test")
    config = destinations.config(
        tmp_path, shaping=GMAIL_LIKE, scheduler="backoff_step_after = 1000\n"
    )
    account = provision(config)
    engine = start_engine(engine_factory, config)
    submit(engine.submission, account, ["unusualrate@gmail.test"])

    def deferred() -> bool:
        return any(
            r["recipient"] == "unusualrate@gmail.test"
            for r in records_of(config, "TransientFailure")
        )

    wait_for(deferred, timeout=15, what="the 421 4.7.28 reply")
    recipients = ok_recipients("user", "gmail.test", 50)
    submit(engine.submission, account, recipients)
    destinations.sink.wait_for_count(len(recipients), timeout=30)

    times = [t for t, _, _ in destinations.arrivals("gmail.test")]
    busiest = most_in_window(times, 1.0)
    assert busiest <= 2 + REDUCED_RATE + SLACK, f"{busiest} messages within 1 s after the 421"
    span = max(times) - min(times)
    least = (len(recipients) - 2) / REDUCED_RATE
    assert span >= least - 0.25, f"50 messages in {span:.2f} s; at the reduced rate >= {least} s"
    levels = list(backoff_levels(penguin(config, "lanes"), "gmail-mx.test"))
    assert levels and max(levels) > 0, f"penguin lanes: {penguin(config, 'lanes')}"
    assert engine.terminate() == 0


def test_network_block_suspends_the_source_for_the_provider(
    tmp_path: Path, destinations: Destinations, engine_factory: list[EngineProcess]
) -> None:
    destinations.site("outlook.test", "mx.outlook-mx.test")
    destinations.site("elsewhere.test", "mx.elsewhere.test")
    config = destinations.config(
        tmp_path, shaping='[provider.microsoft]\nmatch = ["outlook-mx.test"]\n'
    )
    account = provision(config)
    engine = start_engine(engine_factory, config)
    submit(engine.submission, account, ["blocked-s3150@outlook.test"])

    def source_suspended() -> list[dict[str, Any]]:
        return [
            r
            for r in stored_records(config, "AdminAction")
            if (r.get("meta") or {}).get("scope") == "source_provider"
        ]

    wait_for(lambda: bool(source_suspended()), timeout=15, what="an AdminAction (suspension)")
    [action] = source_suspended()
    assert action["meta"]["target"] == "default|microsoft"
    text = content(action)
    assert "S3150" in text and "microsoft" in text.lower(), text
    assert "block" in text.lower(), text
    [listed] = penguin(config, "suspensions")
    assert (listed["scope"], listed["target"]) == ("source_provider", "default|microsoft")

    later = ok_recipients("later", "outlook.test", 3)
    submit(engine.submission, account, [*later, "free@elsewhere.test"])
    wait_for(lambda: destinations.sink.count_for("free@elsewhere.test") == 1, what="elsewhere")

    def all_delayed() -> bool:
        return {r.lower() for r in later} <= set(delayed_for(config, "suspen"))

    wait_for(all_delayed, timeout=15, what="Delayed records (suspension) for later mail")
    assert [destinations.sink.attempts_for(r) for r in later] == [0, 0, 0]
    delayed = delayed_for(config, "suspen")
    assert all(d["num_attempts"] == 0 for r in later for d in delayed[r.lower()])
    assert engine.terminate() == 0
