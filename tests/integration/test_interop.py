"""Our SMTP client against a server we did not write: aiosmtpd on loopback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as AiosmtpdServer

from config.schema import DeliverySettings
from engine.clock import FakeClock
from engine.delivery.bounce_classify import BounceClassifier
from engine.delivery.outcome import OutcomeKind, Scope
from engine.delivery.transport import OutboundMessage
from engine.limits.local import LocalLimiter
from engine.scheduler.shaping import Shaping
from engine.scheduler.sources import Source
from smtp_out.deliverer import SmtpDeliverer
from smtp_out.dns import MxResolver
from tests.harness.dns_server import DnsServer, Zones
from tests.harness.tlsutil import make_tls_pair

DOMAIN = "interop.test"
MX = "mx.interop.test"
RECEIVER_ADDRESS = "127.0.0.2"
BODY = (
    b"From: a@sender.test\r\nTo: b@interop.test\r\nSubject: interop\r\n\r\n"
    b".a line that starts with a dot\r\n..and two\r\nend\r\n"
)


class Mailbox:
    """aiosmtpd handler: keeps what it accepts, refuses the local part ``nobody``."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool]] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        encrypted = session.ssl is not None
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content, encrypted))
        return "250 2.0.0 OK accepted"


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[tuple[Mailbox, int]]:
    """aiosmtpd on 127.0.0.2 (ephemeral port) offering STARTTLS."""
    mailbox = Mailbox()
    loop = asyncio.get_running_loop()
    tls = make_tls_pair(tmp_path).server
    server = await loop.create_server(
        lambda: AiosmtpdServer(mailbox, hostname=MX, tls_context=tls, loop=loop),
        RECEIVER_ADDRESS,
        0,
    )
    try:
        yield mailbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def deliverer(receiver: tuple[Mailbox, int]) -> AsyncIterator[SmtpDeliverer]:
    zones = Zones()
    zones.add_mx(DOMAIN, [(10, MX)])
    zones.add_a(MX, [RECEIVER_ADDRESS])
    dns = DnsServer(zones)
    await dns.start()
    clock = FakeClock()
    deliverer = SmtpDeliverer(
        delivery=DeliverySettings(port=receiver[1]),
        resolver=MxResolver([dns.address], 2.0, clock, random.Random(1)),
        classifier=BounceClassifier(),
        clock=clock,
        shaping=Shaping.load(),
        limiter=LocalLimiter(clock),
    )
    try:
        yield deliverer
    finally:
        await deliverer.close()
        await dns.stop()


def message(local: str, n: int) -> OutboundMessage:
    return OutboundMessage(
        id=f"m{n}",
        sender="bounces@sender.test",
        recipient=f"{local}@{DOMAIN}",
        domain=DOMAIN,
        source=Source("default", "0.0.0.0", "mta.sender.test"),
        data=BODY,
    )


async def test_delivery_to_aiosmtpd_over_starttls(
    receiver: tuple[Mailbox, int], deliverer: SmtpDeliverer
) -> None:
    mailbox, _ = receiver
    delivered = await deliverer.deliver(message("alice", 1))
    assert delivered.outcome.kind is OutcomeKind.DELIVERED, delivered
    assert delivered.outcome.reply.code == 250
    assert delivered.tls_version is not None and delivered.tls_version.startswith("TLS")

    refused = await deliverer.deliver(message("nobody", 2))
    assert refused.outcome.kind is OutcomeKind.PERMANENT, refused
    assert refused.outcome.scope is Scope.RECIPIENT
    assert (refused.outcome.reply.code, refused.outcome.reply.enhanced) == (550, "5.1.1")
    assert refused.outcome.classification == "InvalidRecipient"

    assert mailbox.messages == [("bounces@sender.test", [f"alice@{DOMAIN}"], BODY, True)]
