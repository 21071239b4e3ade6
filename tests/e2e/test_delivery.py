"""Engine processes deliver to a loopback sink through a test DNS server.

Covers the whole path (SMTP submission → queue → DKIM-signed delivery, each
copy with a signed return path on the domain ``domain add`` published SPF for),
at-least-once delivery across a SIGKILL, exactly one copy when a receiver
answers the final dot after the lease would have run out, two delivery
processes sharing
one PostgreSQL store without duplicates, delivery woken by acceptance in
another process (PostgreSQL ``NOTIFY``), and ``engine.processes`` workers
sharing one listener and one store under a supervisor (its restarts:
``test_supervisor.py``).
"""

from __future__ import annotations

import collections
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dkim
import pytest

from config import load_settings
from engine.return_path import codec_from_settings
from engine.sealing import load_or_create_secret, secret_path
from tests.e2e.conftest import (
    DOMAINS,
    SOURCE_ADDRESS,
    Account,
    EngineProcess,
    Receivers,
    dkim_lookup,
    message,
    penguin,
    penguin_lines,
    provision,
    read_records,
    start_engine,
    start_two_workers,
    submit,
    wait_for,
    worker_pids,
)
from tests.harness.processes import exited


@pytest.mark.parametrize("algo", ["rsa", "ed25519"])
def test_submitted_mail_arrives_signed(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess], algo: str
) -> None:
    config = receivers.config(tmp_path)
    account = provision(config, algo=algo)
    receivers.publish(account)
    engine = start_engine(engine_factory, config)
    recipients = [f"user{i}@{d}" for i, d in enumerate(DOMAINS)]
    queue_id = submit(engine.submission, account, recipients)

    received = receivers.sink.wait_for_count(len(recipients), timeout=30)
    lookup = dkim_lookup(receivers.dns.address)
    settings = load_settings(config)
    codec = codec_from_settings(settings, load_or_create_secret(secret_path(settings.engine)))
    spf = {r["name"].rstrip(".") for r in account.dns_records if r["value"].startswith("v=spf1")}
    for copy in received:
        assert dkim.verify(copy.data, dnsfunc=lookup)
        assert copy.peer[0] == SOURCE_ADDRESS
        assert copy.ehlo == "mta1.penguin.test"
        local, _, return_path_domain = copy.mail_from.partition("@")
        assert return_path_domain in spf, "domain add published SPF for the MAIL FROM domain"
        assert codec.message_id(local) == f"{queue_id}-{recipients.index(copy.rcpt_tos[0]) + 1}"

    def all_delivered() -> bool:
        return {m["state"] for m in penguin(config, "queue", "show", queue_id)} == {"delivered"}

    wait_for(all_delivered, what="every recipient delivered")
    shown = penguin(config, "queue", "show", f"{queue_id}-1")
    delivery = shown["records"][-1]
    assert delivery["type"] == "Delivery"
    assert delivery["site"] == "mx.receiver.test"
    assert delivery["response"]["code"] == 250

    tailed = penguin_lines(config, "records", "tail", "-n", "50")
    assert [r["type"] for r in tailed].count("Delivery") == len(recipients)
    assert [r["type"] for r in tailed].count("Reception") == len(recipients)
    metrics = urllib.request.urlopen(
        f"http://{engine.admin[0]}:{engine.admin[1]}/metrics", timeout=10
    ).read()
    assert b'penguin_delivery_attempts_total{outcome="delivered",site="mx.receiver.test"} 3.0' in (
        metrics
    )
    assert b"penguin_dkim_sign_seconds_count" in metrics
    assert b"penguin_accepted_messages_total 3.0" in metrics
    assert engine.terminate() == 0


def submit_load(engine: EngineProcess, account: Account, count: int) -> list[str]:
    """``count`` single-recipient submissions from 8 concurrent clients."""

    def one(n: int) -> str:
        rcpt = f"load{n}@{DOMAINS[n % len(DOMAINS)]}"
        submit(engine.submission, account, [rcpt], message(f"news@{account.domain}"))
        return rcpt

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def test_sigkill_during_delivery_loses_nothing(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    in_flight = 16
    config = receivers.config(tmp_path, delivery=f"max_in_flight = {in_flight}\n")
    account = provision(config)
    submitter = start_engine(engine_factory, config, "submission")
    recipients = submit_load(submitter, account, 240)
    assert submitter.terminate() == 0

    engine = start_engine(engine_factory, config, "delivery")
    receivers.sink.wait_for_count(60, timeout=60)
    engine.kill()
    start_engine(engine_factory, config, "delivery")

    def everyone_has_mail() -> bool:
        return all(receivers.sink.count_for(r) >= 1 for r in recipients)

    wait_for(everyone_has_mail, timeout=90, what="every accepted recipient delivered")
    counts = collections.Counter(r for m in receivers.sink.messages for r in m.rcpt_tos)
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= in_flight

    def settled() -> bool:
        summary = penguin(config, "queue", "summary")
        return {r["state"] for r in summary} == {"delivered"}

    wait_for(settled, timeout=30, what="every message settled as delivered")


def delivered_once(config: Path, receivers: Receivers, recipients: list[str]) -> None:
    """Every recipient reached the sink exactly once and is settled as delivered."""
    receivers.sink.wait_for_count(len(recipients), timeout=90)

    def settled() -> bool:
        summary = penguin(config, "queue", "summary")
        return {r["state"] for r in summary} == {"delivered"}

    wait_for(settled, timeout=30, what="every message settled as delivered")
    counts = collections.Counter(r for m in receivers.sink.messages for r in m.rcpt_tos)
    assert set(counts) == set(recipients)
    assert max(counts.values()) == 1


def test_an_attempt_outlasting_the_lease_keeps_its_message(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    lease = 2.0
    receivers.sink.sink.slow_seconds = 3.5  # the reply to the final dot comes after the lease
    config = receivers.config(tmp_path, lease_seconds=lease)
    account = provision(config)
    engine = start_engine(engine_factory, config)
    recipients = [f"slow{n}@{DOMAINS[n % len(DOMAINS)]}" for n in range(4)]
    queue_id = submit(engine.submission, account, recipients)

    delivered_once(config, receivers, recipients)
    assert [receivers.sink.attempts_for(r) for r in recipients] == [1] * len(recipients)
    message_ids = [m["id"] for m in penguin(config, "queue", "show", queue_id)]
    assert len(message_ids) == len(recipients)
    stored = penguin_lines(config, "records", "tail", "-n", "100")
    for records in (stored, read_records(config)):
        deliveries = collections.Counter(r["id"] for r in records if r["type"] == "Delivery")
        assert deliveries == dict.fromkeys(message_ids, 1)
    assert all(m["attempts"] == 1 for m in penguin(config, "queue", "show", queue_id))
    assert engine.terminate() == 0


def test_two_delivery_processes_share_postgres_without_duplicates(
    tmp_path: Path,
    receivers: Receivers,
    engine_factory: list[EngineProcess],
    postgres_url: str,
) -> None:
    first = tmp_path / "one"
    second = tmp_path / "two"
    first.mkdir()
    second.mkdir()
    config = receivers.config(first, postgres_url, delivery="claim_batch = 8\n")
    other = receivers.config(second, postgres_url, delivery="claim_batch = 8\n")
    other.write_text(other.read_text().replace('node_id = "e2e"', 'node_id = "e2e-two"'))
    account = provision(config)
    other_secret = second / "var" / "secret.key"
    other_secret.parent.mkdir(parents=True)
    other_secret.write_bytes((first / "var" / "secret.key").read_bytes())
    other_secret.chmod(0o600)

    start_engine(engine_factory, config, "delivery")
    start_engine(engine_factory, other, "delivery")
    submitter = start_engine(engine_factory, config, "submission")
    recipients = submit_load(submitter, account, 240)
    delivered_once(config, receivers, recipients)
    records = penguin_lines(config, "records", "tail", "-n", "1000")
    nodes = {r["nodeid"] for r in records if r["type"] == "Delivery"}
    assert nodes == {"e2e", "e2e-two"}


def test_delivery_in_another_process_is_woken_through_postgres(
    tmp_path: Path,
    receivers: Receivers,
    engine_factory: list[EngineProcess],
    postgres_url: str,
) -> None:
    config = receivers.config(tmp_path, postgres_url, delivery="idle_poll_seconds = 60\n")
    account = provision(config)
    delivery = start_engine(engine_factory, config, "delivery")
    submitter = start_engine(engine_factory, config, "submission")
    recipients = submit_load(submitter, account, 30)
    receivers.sink.wait_for_count(len(recipients), timeout=20)  # well before the 60 s poll
    counts = collections.Counter(r for m in receivers.sink.messages for r in m.rcpt_tos)
    assert set(counts) == set(recipients)
    assert submitter.terminate() == 0
    assert delivery.terminate() == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_worker_processes_share_listener_and_store(
    tmp_path: Path,
    receivers: Receivers,
    engine_factory: list[EngineProcess],
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else ""
    config = receivers.config(tmp_path, url, engine="processes = 2\ndelivery_processes = 0")
    account = provision(config)
    engine, workers = start_two_workers(engine_factory, config)

    recipients = submit_load(engine, account, 120)
    delivered_once(config, receivers, recipients)
    records = read_records(config)
    for kind in ("Reception", "Delivery"):
        assert sorted(r["recipient"] for r in records if r["type"] == kind) == sorted(recipients)
    metrics = urllib.request.urlopen(
        f"http://{engine.admin[0]}:{engine.admin[1]}/metrics", timeout=10
    ).read()
    assert b"penguin_accepted_messages_total 120.0" in metrics, "metrics of every worker"
    assert (
        b'penguin_delivery_attempts_total{outcome="delivered",site="mx.receiver.test"} 120.0'
        in metrics
    )
    assert engine.terminate() == 0
    assert exited(workers)


def test_killed_supervisor_takes_its_workers(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    config = receivers.config(tmp_path, engine="processes = 2\ndelivery_processes = 0")
    engine, workers = start_two_workers(engine_factory, config)
    engine.kill()
    wait_for(lambda: exited(workers), what="workers killed with their supervisor")


def test_split_workers_in_one_command_wake_delivery_on_acceptance(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    config = receivers.config(
        tmp_path,
        delivery="idle_poll_seconds = 60\n",
        engine="processes = 1\ndelivery_processes = 1",
    )
    account = provision(config)
    engine = start_engine(engine_factory, config)
    assert len(worker_pids(engine)) == 2
    assert "2 engine processes serving: submission, delivery" in "".join(engine.output)
    recipients = submit_load(engine, account, 30)
    receivers.sink.wait_for_count(len(recipients), timeout=20)  # well before the 60 s poll
    counts = collections.Counter(r for m in receivers.sink.messages for r in m.rcpt_tos)
    assert set(counts) == set(recipients)
    assert engine.terminate() == 0
