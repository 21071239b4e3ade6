"""What the engine takes for a header section, over real sockets: acceptance and signing agree.

A field in RFC 5322's obsolete syntax (white space before the colon) is
accepted and delivered DKIM-signed; a line that is part of no header field
is refused at the end of DATA with ``550 5.6.0``, never queued.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from tests.e2e.conftest import (
    Account,
    EngineProcess,
    Receivers,
    client_tls,
    dkim_lookup,
    message,
    penguin,
    provision,
    start_engine,
    submit,
    write_config,
)


def test_white_space_before_a_colon_is_accepted_and_delivered_signed(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    config = receivers.config(tmp_path)
    account = provision(config)
    receivers.publish(account)
    engine = start_engine(engine_factory, config)
    sender = f"news@{account.domain}"
    body = (
        f"From : News <{sender}>\r\nTo: reader@example.com\r\nSubject : x\r\n"
        "X-Campaign\t: spring\r\n\r\nHello.\r\n"
    ).encode()
    queue_id = submit(engine.submission, account, ["reader@example.com"], body)

    [copy] = receivers.sink.wait_for_count(1, timeout=30)
    assert dkim.verify(copy.data, dnsfunc=dkim_lookup(receivers.dns.address))
    head = copy.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert f"From: News <{sender}>".encode() in head
    assert b"Subject: x" in head
    assert not any(line.startswith(b"X-Campaign") for line in head)
    shown = penguin(config, "queue", "show", f"{queue_id}-1")
    assert shown["queue"] == "spring:acme@example.com"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProcess, Account]]:
    config = write_config(tmp_path_factory.mktemp("headers"))
    account = provision(config)
    engine = EngineProcess(config, "submission")
    engine.start()
    try:
        yield engine, account
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("domain", "header", "reply"),
    [
        ("colon.example", b"Subject: hi\r\nno colon on this line\r\n", "line 3 has no colon"),
        (
            "ascii.example",
            "Sübject: hi\r\n".encode(),
            "line 2 has a field name that is not printable US-ASCII",
        ),
        ("space.example", b"X Mailer: hi\r\n", "line 2 has white space inside its field name"),
    ],
)
def test_a_line_that_is_no_header_field_is_refused_at_the_end_of_data(
    running: tuple[EngineProcess, Account], domain: str, header: bytes, reply: str
) -> None:
    engine, account = running
    sender = f"news@{account.domain}"
    with smtplib.SMTP(*engine.submission, timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(account.username, account.password)
        client.mail(sender)
        client.rcpt(f"reader@{domain}")
        code, text = client.data(f"From: {sender}\r\n".encode() + header + b"\r\nbody\r\n")
        assert (code, text.decode()) == (550, f"5.6.0 Malformed header field: {reply}")
        client.mail(sender)
        client.rcpt(f"reader@{domain}")
        code, _ = client.data(message(sender))
        assert code == 250
    queued = [r for r in penguin(engine.config, "queue", "summary") if domain in r["queue"]]
    assert [r["count"] for r in queued] == [1]
