"""Helpers of the scheduler's end-to-end tests: destinations, configs, records, rates.

``Destinations`` is a test DNS server and one SMTP sink on ``SINK_ADDRESS``:
every MX host a test publishes (``Destinations.site``) resolves to the sink,
so the sink tells the sources apart by the client address (``127.0.0.x``).
``Destinations.config`` writes an engine config with a shaping file of the
test's own (``scheduler.shaping_files``) next to it; ``second_node`` makes a
second engine node (own data directory and node id, the same database, the
same engine secret and the same record log) from a first one's config.

Everything waits on conditions with deadlines; ``stays`` is the one
bounded observation of something that must *not* happen.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.schema import RedisSettings
from tests.e2e.conftest import PENGUIN, read_records, write_config
from tests.harness.dns_server import ThreadedDnsServer
from tests.harness.smtp_sink import ReceivedMessage, ThreadedSmtpSink

SINK_ADDRESS = "127.0.0.20"
DEFAULT_SOURCE = "127.0.0.5"
DEFAULT_SOURCES = (
    f'[sources.default]\naddress = "{DEFAULT_SOURCE}"\nehlo_hostname = "mta1.penguin.test"\n'
)


@dataclass
class Destinations:
    """The test DNS server and the sink behind every MX host it publishes."""

    dns: ThreadedDnsServer
    sink: ThreadedSmtpSink

    def site(self, domain: str, mx_host: str) -> None:
        """Publish ``domain`` with one MX host ``mx_host`` at the sink."""
        self.dns.zones.add_mx(domain, [(10, mx_host)])
        self.dns.zones.add_a(mx_host, [SINK_ADDRESS])

    def config(
        self,
        directory: Path,
        *,
        database_url: str = "",
        shaping: str = "",
        scheduler: str = "",
        sources: str = DEFAULT_SOURCES,
        tables: str = "",
        engine: str = "",
        delivery: str = "",
        tracking: str = "",
        redis: RedisSettings | None = None,
    ) -> Path:
        """An engine config in ``directory`` whose shaping file is ``shaping``.

        ``scheduler`` is appended to ``[scheduler]``, ``tracking`` to ``[tracking]``,
        ``tables`` (whole tables) after the sources; ``redis`` shares limits through
        that Redis.
        """
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "shaping.toml").write_text(shaping)
        shared = ""
        if redis is not None:
            shared = f'[redis]\nurl = "{redis.url}"\nkey_prefix = "{redis.key_prefix}"\n'
        return write_config(
            directory,
            database_url,
            engine=engine,
            tracking=tracking,
            nameserver=self.dns.address,
            delivery=f"port = {self.sink.address[1]}\nlease_seconds = 5\n{delivery}",
            tables=(
                f'[scheduler]\nshaping_files = ["shaping.toml"]\n{scheduler}\n'
                f"{sources}\n{shared}{tables}"
            ),
        )

    def arrivals(self, domain: str) -> list[tuple[float, str, ReceivedMessage]]:
        """(arrival time, recipient, message) of each recipient at ``domain``, in order."""
        suffix = "@" + domain.lower()
        return [
            (m.received_at.timestamp(), r, m)
            for m in self.sink.messages
            for r in m.rcpt_tos
            if r.lower().endswith(suffix)
        ]

    def received(self, recipients: Iterable[str]) -> int:
        """How many of ``recipients`` reached the sink at least once."""
        return sum(1 for r in recipients if self.sink.count_for(r) > 0)


def second_node(first: Path, directory: Path, node_id: str) -> Path:
    """A copy of config ``first`` for another node: data in ``directory``, same database,
    same engine secret (call after the first node's secret exists) and same record log."""
    directory.mkdir(parents=True, exist_ok=True)
    text = first.read_text()
    own_data = directory / "var"
    text = text.replace(f'data_dir = "{first.parent / "var"}"', f'data_dir = "{own_data}"')
    text = text.replace('node_id = "e2e"', f'node_id = "{node_id}"')
    config = directory / "penguin.toml"
    config.write_text(text)
    shutil.copy(first.parent / "shaping.toml", directory / "shaping.toml")
    own_data.mkdir(parents=True, exist_ok=True)
    secret = own_data / "secret.key"
    secret.write_bytes((first.parent / "var" / "secret.key").read_bytes())
    secret.chmod(0o600)
    return config


def records_of(config: Path, kind: str) -> list[dict[str, Any]]:
    """The engine's records of type ``kind`` in its JSON-lines log."""
    return [r for r in read_records(config) if r["type"] == kind]


def delay_reason(record: dict[str, Any]) -> str:
    return str((record.get("response") or {}).get("content") or "")


def delayed_for(config: Path, reason: str) -> dict[str, list[dict[str, Any]]]:
    """The Delayed records whose text contains ``reason`` (any case), by recipient.

    Callers pass a stem (``"suspen"``: suspension or suspended; ``"warm"``: warmup cap)."""
    found: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for record in records_of(config, "Delayed"):
        if reason in delay_reason(record).lower():
            found[str(record["recipient"]).lower()].append(record)
    return found


def stays(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether ``condition()`` holds at every check for ``seconds`` (checked every 50 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.05)
    return condition()


def run_penguin(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A CLI command without --json, its status and output kept for the test to judge."""
    return subprocess.run(
        [*PENGUIN, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok_recipients(prefix: str, domain: str, count: int) -> list[str]:
    return [f"{prefix}{n}@{domain}" for n in range(count)]
