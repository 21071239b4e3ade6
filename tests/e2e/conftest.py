"""The whole engine as a process: config in a temp dir, the real CLI, real sockets."""

from __future__ import annotations

import json
import os
import queue
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.harness.dns_server import ThreadedDnsServer, Zones
from tests.harness.processes import child_pids
from tests.harness.smtp_sink import ThreadedSmtpSink
from tests.harness.tlsutil import unverified_client_context

if TYPE_CHECKING:
    from tests.e2e.scheduling import Destinations

READY_TIMEOUT = 30.0
PENGUIN = (sys.executable, "-m", "engine.cli")


def write_config(
    tmp_path: Path,
    database_url: str = "",
    extra: str = "",
    *,
    nameserver: tuple[str, int] = ("127.0.0.1", 9),
    delivery: str = "",
    tables: str = "",
    engine: str = "",
    bounce: str = "",
    tracking: str = "",
) -> Path:
    """A config for one test: everything under ``tmp_path``, ephemeral ports.

    DNS goes to ``nameserver`` (by default a loopback port nobody answers),
    so no test ever resolves or reaches a real mail server. ``extra`` is
    appended to the ``[submission]`` table, ``delivery`` to ``[delivery]``,
    ``engine`` to ``[engine]``, ``bounce`` to ``[bounce]``, ``tracking`` to
    ``[tracking]``; ``tables`` (whole TOML tables) goes at the end.
    """
    data = tmp_path / "var"
    url = database_url or f"sqlite:{data / 'penguin.db'}"
    path = tmp_path / "penguin.toml"
    path.write_text(
        f'[engine]\ndata_dir = "{data}"\nhostname = "mta.penguin.test"\nnode_id = "e2e"\n'
        f"shutdown_grace_seconds = 10\n{engine}\n"
        f'[database]\nurl = "{url}"\n'
        f'[records]\njson_log = "{data / "records.jsonl"}"\n'
        f'[dns]\nnameservers = ["{nameserver[0]}:{nameserver[1]}"]\ntimeout_seconds = 1\n'
        '[admin]\nlisten = "127.0.0.1:0"\n'
        f'[tracking]\nlisten = "127.0.0.1:0"\n{tracking}\n'
        f"[delivery]\n{delivery}\n"
        f'[bounce]\nlisten = ["127.0.0.1:0"]\n{bounce}\n'
        '[submission]\nlisten = ["127.0.0.1:0"]\n'
        f"{extra}\n{tables}"
    )
    return path


def penguin(config: Path, *args: str) -> Any:
    """Run a CLI command with --json; its parsed output."""
    return json.loads(penguin_output(config, *args))


def penguin_lines(config: Path, *args: str) -> list[Any]:
    """Run a CLI command that prints one JSON document per line."""
    return [json.loads(line) for line in penguin_output(config, *args).splitlines() if line]


def penguin_output(config: Path, *args: str) -> str:
    done = subprocess.run(
        [*PENGUIN, *args, "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise AssertionError(f"penguin {' '.join(args)} failed: {done.stdout} {done.stderr}")
    return done.stdout


@dataclass
class EngineProcess:
    """``penguin run`` in a child process."""

    config: Path
    role: str = "all"
    cwd: Path | None = None
    process: subprocess.Popen[str] | None = None
    submission: tuple[str, int] = ("", 0)
    admin: tuple[str, int] = ("", 0)
    bounce: tuple[str, int] = ("", 0)
    tracking: tuple[str, int] = ("", 0)
    output: list[str] = field(default_factory=list)
    _lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [*PENGUIN, "run", "--role", self.role, "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.cwd,
        )
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("engine not ready in time:\n" + "".join(self.output))
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("engine exited:\n" + "".join(self.output))
            if line.startswith("submission listening on "):
                host, _, port = line.split()[-1].rpartition(":")
                self.submission = (host, int(port))
            if line.startswith("admin listening on "):
                host, _, port = line.split()[-1].rpartition(":")
                self.admin = (host, int(port))
            if line.startswith("bounce listening on "):
                host, _, port = line.split()[-1].rpartition(":")
                self.bounce = (host, int(port))
            if line.startswith("tracking listening on "):
                host, _, port = line.split()[-1].rpartition(":")
                self.tracking = (host, int(port))
            if line.strip() == "engine ready":
                return

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)
        process.stdout.close()

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def engine_factory() -> Iterator[list[EngineProcess]]:
    engines: list[EngineProcess] = []
    yield engines
    for engine in engines:
        engine.close()


def start_engine(engines: list[EngineProcess], config: Path, role: str = "all") -> EngineProcess:
    engine = EngineProcess(config, role)
    engines.append(engine)
    engine.start()
    return engine


def worker_pids(supervisor: EngineProcess) -> set[int]:
    assert supervisor.process is not None
    return child_pids(supervisor.process.pid)


def start_two_workers(
    engine_factory: list[EngineProcess], config: Path
) -> tuple[EngineProcess, set[int]]:
    """A supervisor of ``engine.processes = 2`` and its two workers' pids."""
    engine = start_engine(engine_factory, config)
    workers = worker_pids(engine)
    assert len(workers) == 2
    return engine, workers


def wait_for(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Until ``condition()`` holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def read_records(config: Path) -> list[dict[str, Any]]:
    """Every record in the engine's JSON-lines log."""
    path = config.parent / "var" / "records.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@dataclass(frozen=True)
class Account:
    tenant: str
    domain: str
    username: str
    password: str
    dns_records: list[dict[str, str]] = field(default_factory=list)
    """What ``penguin domain add`` asked to publish."""


def provision(
    config: Path, tenant: str = "acme", domain: str = "news.acme.test", algo: str = "rsa"
) -> Account:
    """Tenant, sending domain and SMTP credentials through the CLI."""
    penguin(config, "tenant", "create", tenant)
    added = penguin(config, "domain", "add", tenant, domain, "--algo", algo)
    user = penguin(config, "smtp-user", "create", tenant)
    return Account(tenant, domain, user["username"], user["password"], added["dns_records"])


def client_tls() -> ssl.SSLContext:
    """Trusts the engine's self-signed certificate (tests only)."""
    return unverified_client_context()


def message(sender: str, subject: str = "hello", extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: someone@example.com\r\nSubject: {subject}\r\n{extra}\r\n"
        "Hello from the tests.\r\n"
    ).encode()


def submit(
    address: tuple[str, int],
    account: Account,
    recipients: list[str],
    body: bytes | None = None,
    sender: str | None = None,
) -> str:
    """One authenticated submission over STARTTLS; the queue id from the 250 reply."""
    sender = sender or f"news@{account.domain}"
    with smtplib.SMTP(*address, timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(account.username, account.password)
        client.mail(sender)
        for rcpt in recipients:
            code, reply = client.rcpt(rcpt)
            assert code == 250, reply
        code, reply = client.data(body or message(sender))
        assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]


MX_ADDRESS = "127.0.0.2"
SOURCE_ADDRESS = "127.0.0.5"
DOMAINS = ("example.com", "example.org", "example.net")


@dataclass
class Receivers:
    """A DNS server and an SMTP sink on loopback: where delivery goes in these tests."""

    dns: ThreadedDnsServer
    sink: ThreadedSmtpSink

    def config(
        self,
        tmp_path: Path,
        database_url: str = "",
        delivery: str = "",
        engine: str = "",
        lease_seconds: float = 5,
        bounce: str = "",
        tracking: str = "",
    ) -> Path:
        return write_config(
            tmp_path,
            database_url,
            engine=engine,
            bounce=bounce,
            tracking=tracking,
            nameserver=self.dns.address,
            delivery=f"port = {self.sink.address[1]}\nlease_seconds = {lease_seconds}\n{delivery}",
            tables=(
                f'[sources.default]\naddress = "{SOURCE_ADDRESS}"\n'
                'ehlo_hostname = "mta1.penguin.test"\n'
            ),
        )

    def publish(self, account: Account) -> None:
        for record in account.dns_records:
            if record["type"] == "TXT":
                self.dns.zones.add_txt(record["name"].rstrip("."), record["value"])


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    zones = Zones()
    for domain in DOMAINS:
        zones.add_mx(domain, [(10, "mx.receiver.test")])
    zones.add_a("mx.receiver.test", [MX_ADDRESS])
    with ThreadedDnsServer(zones) as dns_server, ThreadedSmtpSink(MX_ADDRESS, 0) as sink:
        yield Receivers(dns_server, sink)


def dkim_lookup(server: tuple[str, int]) -> Callable[..., bytes]:
    """dkimpy's TXT lookup, answered by the test DNS server."""

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        query = dns.message.make_query(name.decode().rstrip("."), dns.rdatatype.TXT)
        response = dns.query.udp(query, server[0], port=server[1], timeout=timeout)
        return b"".join(b"".join(r.strings) for rrset in response.answer for r in rrset)

    return lookup


@pytest.fixture
def destinations() -> Iterator[Destinations]:
    """``tests.e2e.scheduling.Destinations``: a DNS server and one sink behind every MX."""
    from tests.e2e.scheduling import SINK_ADDRESS, Destinations

    with ThreadedDnsServer(Zones()) as dns_server, ThreadedSmtpSink(SINK_ADDRESS, 0) as sink:
        yield Destinations(dns_server, sink)
    assert not sink.sink.errors
