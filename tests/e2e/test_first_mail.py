"""The README's first mail: what a newcomer sees happen to recipient domains that
have no mail server.

A null MX (as example.com and example.org publish) and a domain that does not
exist bounce at the first attempt (BadDomain); a DNS lookup without answer
and an MX host refusing the connection leave the message queued for a retry
about 20 minutes later.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import EngineProcess, penguin, provision, submit, wait_for, write_config
from tests.harness.dns_server import ThreadedDnsServer, Zones

pytestmark = pytest.mark.slow

DEAD_MX = "127.0.0.9"
"""An MX address where nothing listens on the delivery port."""

OUTCOMES = [
    # recipient, state, record type, response code, enhanced code, text, category
    (
        "a@example.com",
        "bounced",
        "Bounce",
        550,
        (5, 1, 2),
        "example.com accepts no mail (null MX, RFC 7505)",
        "BadDomain",
    ),
    (
        "b@example.org",
        "bounced",
        "Bounce",
        550,
        (5, 1, 2),
        "example.org does not exist (NXDOMAIN)",
        "BadDomain",
    ),
    (
        "c@silent.example",
        "queued",
        "TransientFailure",
        451,
        (4, 4, 3),
        "MX lookup for silent.example failed: no answer within 1 s",
        "DNSFailure",
    ),
    (
        "d@refusing.example",
        "queued",
        "TransientFailure",
        451,
        (4, 4, 1),
        "connection refused",
        None,
    ),
]


@pytest.fixture
def dns() -> Iterator[ThreadedDnsServer]:
    zones = Zones()
    zones.add_null_mx("example.com")
    zones.drop("silent.example")
    zones.add_mx("refusing.example", [(10, "mx.refusing.example")])
    zones.add_a("mx.refusing.example", [DEAD_MX])
    with ThreadedDnsServer(zones) as server:
        yield server


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind((DEAD_MX, 0))
        port: int = probe.getsockname()[1]
    return port


def last_record(config: Path, queue_id: str) -> dict[str, Any]:
    """The one message of submission ``queue_id``, with its latest record as ``last``."""
    [shown] = penguin(config, "queue", "show", queue_id)
    message: dict[str, Any] = shown
    return message | {"last": message["records"][-1]}


def test_mail_to_domains_without_a_mail_server(
    tmp_path: Path, dns: ThreadedDnsServer, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(tmp_path, nameserver=dns.address, delivery=f"port = {unused_port()}")
    account = provision(config)
    engine = EngineProcess(config)
    engine_factory.append(engine)
    engine.start()
    submitted = time.time()
    queue_ids = {
        recipient: submit(engine.submission, account, [recipient]) for recipient, *_ in OUTCOMES
    }

    for recipient, state, record_type, code, enhanced, text, category in OUTCOMES:
        queue_id = queue_ids[recipient]

        def attempted(queue_id: str = queue_id) -> bool:
            return bool(last_record(config, queue_id)["last"]["type"] != "Reception")

        wait_for(attempted, what=f"the first attempt at {recipient}")
        shown = last_record(config, queue_id)
        record = shown["last"]
        assert (shown["state"], record["type"]) == (state, record_type), recipient
        response = record["response"]
        assert (response["code"], response["content"]) == (code, text)
        assert tuple(response["enhanced_code"].values()) == enhanced
        if category is not None:
            assert record["bounce_classification"] == category
        if state == "queued":
            assert shown["due_at"] >= submitted + 0.8 * 1200  # 20 min, less the jitter
