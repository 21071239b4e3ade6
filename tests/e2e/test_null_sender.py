"""A relaying Postfix's delivery status notice goes back to the tenant, and no further.

A Postfix null client that relays through the tenant's account sends its
non-delivery notices (``MAIL FROM:<>``) through the same account. The engine
delivers them to the tenant's own sending domains with an empty return path,
refuses them to anyone else, signs them only with the tenant's own key, and
answers a failed notice with nothing but a record.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import pytest

from tests.e2e.conftest import (
    Account,
    EngineProcess,
    client_tls,
    dkim_lookup,
    penguin,
    provision,
    read_records,
    wait_for,
    write_config,
)
from tests.harness.dns_server import ThreadedDnsServer, Zones
from tests.harness.smtp_sink import ReceivedMessage, ThreadedSmtpSink

POSTFIX_BOUNCE = (Path(__file__).parent / "fixtures" / "postfix_bounce.eml").read_bytes()
MX_ADDRESS = "127.0.0.3"
SOURCE_ADDRESS = "127.0.0.6"
NULL_SENDER_REFUSED = (
    550,
    b"5.7.1 A null sender may only send to this account's own sending domains",
)


@dataclass
class World:
    engine: EngineProcess
    acme: Account
    globex: Account
    sink: ThreadedSmtpSink
    dns: ThreadedDnsServer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("null_sender")
    zones = Zones()
    for domain in ("news.acme.test", "globex.test", "example.com"):
        zones.add_mx(domain, [(10, "mx.receiver.test")])
    zones.add_a("mx.receiver.test", [MX_ADDRESS])
    with ThreadedDnsServer(zones) as dns_server, ThreadedSmtpSink(MX_ADDRESS, 0) as sink:
        config = write_config(
            tmp,
            nameserver=dns_server.address,
            delivery=f"port = {sink.address[1]}\n",
            tables=f'[sources.default]\naddress = "{SOURCE_ADDRESS}"\n',
        )
        acme = provision(config)
        globex = provision(config, tenant="globex", domain="globex.test")
        for account in (acme, globex):
            for record in account.dns_records:
                if record["type"] == "TXT":
                    zones.add_txt(record["name"].rstrip("."), record["value"])
        engine = EngineProcess(config)
        engine.start()
        try:
            yield World(engine, acme, globex, sink, dns_server)
        finally:
            engine.close()


def crlf(text: bytes) -> bytes:
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def notice(sender_header: str) -> bytes:
    """The Postfix notice with its From header naming ``sender_header``."""
    header = b"From: MAILER-DAEMON@app1.news.acme.test (Mail Delivery System)\n"
    assert header in POSTFIX_BOUNCE
    return crlf(POSTFIX_BOUNCE.replace(header, f"From: {sender_header}\n".encode()))


def relay_null_sender(
    world: World, recipients: list[str], body: bytes, ehlo: str = "app1.news.acme.test"
) -> tuple[list[tuple[int, bytes]], tuple[int, bytes] | None]:
    """``MAIL FROM:<>`` through the tenant's account, as Postfix relays a notice: the
    RCPT replies and the DATA reply (None when every recipient was refused)."""
    with smtplib.SMTP(*world.engine.submission, local_hostname=ehlo, timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(world.acme.username, world.acme.password)
        assert client.mail("") == (250, b"2.1.0 Sender ok")
        replies = [client.rcpt(rcpt) for rcpt in recipients]
        if not any(code == 250 for code, _ in replies):
            return replies, None
        return replies, client.data(body)


def queue_id(data_reply: tuple[int, bytes] | None) -> str:
    assert data_reply is not None and data_reply[0] == 250, data_reply
    return data_reply[1].decode().rsplit(" ", 1)[-1]


def arrived(world: World, recipient: str) -> ReceivedMessage:
    wait_for(lambda: world.sink.count_for(recipient) > 0, what=f"a delivery to {recipient}")
    return next(m for m in world.sink.messages if recipient in m.rcpt_tos)


def records_of(world: World, queue: str) -> list[dict[str, Any]]:
    return [r for r in read_records(world.engine.config) if (r["id"] or "").startswith(queue)]


def test_a_postfix_notice_reaches_the_tenant_with_an_empty_return_path(world: World) -> None:
    replies, data = relay_null_sender(world, ["news@news.acme.test"], crlf(POSTFIX_BOUNCE))
    assert replies == [(250, b"2.1.5 Recipient ok")]
    queue = queue_id(data)

    copy = arrived(world, "news@news.acme.test")
    assert copy.mail_from == ""
    assert b"Content-Type: multipart/report; report-type=delivery-status;" in copy.data
    assert b"This is the mail system at host app1.news.acme.test." in copy.data
    assert b"From: MAILER-DAEMON@app1.news.acme.test (Mail Delivery System)" in copy.data
    assert b"DKIM-Signature:" not in copy.data  # app1.news.acme.test has no key

    def delivered() -> bool:
        return [r["type"] for r in records_of(world, queue)] == ["Reception", "Delivery"]

    wait_for(delivered, what="Reception and Delivery records")
    assert [r["sender"] for r in records_of(world, queue)] == ["", ""]


def test_a_notice_to_anyone_else_is_refused_at_rcpt(world: World) -> None:
    replies, data = relay_null_sender(
        world,
        ["someone@example.com", "news@globex.test", "postmaster@news.acme.test"],
        crlf(POSTFIX_BOUNCE),
        ehlo="app2.news.acme.test",
    )
    assert replies == [NULL_SENDER_REFUSED, NULL_SENDER_REFUSED, (250, b"2.1.5 Recipient ok")]
    queue = queue_id(data)
    arrived(world, "postmaster@news.acme.test")
    shown = penguin(world.engine.config, "queue", "show", queue)
    assert [m["recipient"] for m in shown] == ["postmaster@news.acme.test"]

    def refusals() -> list[tuple[str | None, str | None, int]]:
        return [
            (r["sender"], r["recipient"], r["response"]["code"])
            for r in read_records(world.engine.config)
            if r["type"] == "Rejection" and r["peer_address"]["name"] == "app2.news.acme.test"
        ]

    wait_for(lambda: len(refusals()) == 2, what="a Rejection record per refused recipient")
    assert refusals() == [("", "someone@example.com", 550), ("", "news@globex.test", 550)]


def test_a_notice_only_to_others_is_not_accepted(world: World) -> None:
    replies, data = relay_null_sender(world, ["someone@example.com"], crlf(POSTFIX_BOUNCE))
    assert replies == [NULL_SENDER_REFUSED]
    assert data is None


@pytest.mark.parametrize(
    ("local", "header_from", "signed_by"),
    [
        ("own", "MAILER-DAEMON@news.acme.test (Mail Delivery System)", "news.acme.test"),
        ("foreign", "Mail Delivery System <MAILER-DAEMON@mx1.hosting.example>", None),
        ("other-tenant", "MAILER-DAEMON@globex.test (Mail Delivery System)", None),
    ],
)
def test_a_notice_is_signed_only_with_the_tenants_own_key(
    world: World, local: str, header_from: str, signed_by: str | None
) -> None:
    recipient = f"dkim-{local}@news.acme.test"
    _, data = relay_null_sender(world, [recipient], notice(header_from))
    queue_id(data)
    copy = arrived(world, recipient)
    if signed_by is None:
        assert b"DKIM-Signature:" not in copy.data
    else:
        assert f"d={signed_by};".encode() in copy.data
        assert dkim.verify(copy.data, dnsfunc=dkim_lookup(world.dns.address))


def test_a_failed_notice_gets_a_record_and_no_notice(world: World) -> None:
    recipients = ["permfail@news.acme.test", "tempfail@news.acme.test"]
    receptions = sum(r["type"] == "Reception" for r in read_records(world.engine.config))
    replies, data = relay_null_sender(world, recipients, crlf(POSTFIX_BOUNCE))
    assert [code for code, _ in replies] == [250, 250]
    queue = queue_id(data)

    def settled() -> bool:
        kinds = {r["type"] for r in records_of(world, queue)}
        return {"Bounce", "TransientFailure"} <= kinds

    wait_for(settled, what="a Bounce and a TransientFailure")
    failures = [r for r in records_of(world, queue) if r["type"] != "Reception"]
    assert {(r["type"], r["recipient"], r["sender"]) for r in failures} == {
        ("Bounce", "permfail@news.acme.test", ""),
        ("TransientFailure", "tempfail@news.acme.test", ""),
    }
    shown = {
        m["recipient"]: m["state"] for m in penguin(world.engine.config, "queue", "show", queue)
    }
    assert shown == {"permfail@news.acme.test": "bounced", "tempfail@news.acme.test": "queued"}
    records = read_records(world.engine.config)
    assert sum(r["type"] == "Reception" for r in records) == receptions + len(recipients)
