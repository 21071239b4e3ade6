"""Our SMTP client against a receiver we did not write: aiosmtpd on 127.0.0.1.

The client session (``smtp_out.client_session``) opens, sends and closes as
the deliverer does; aiosmtpd's handler hooks record what arrived, refuse
recipients named ``nobody`` and, when asked, add PIPELINING to the EHLO reply
(aiosmtpd reads pipelined commands in order but does not advertise it).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session

from config.schema import DeliverySettings
from engine.delivery.bounce_classify import BounceClassifier
from engine.delivery.outcome import Outcome, OutcomeKind, Scope
from engine.delivery.transport import OutboundMessage
from engine.scheduler.sources import Source
from smtp_out.client_session import ClientSession, OpenFailure, Peer, open_session
from smtp_out.connection import ConnectionGauge
from smtp_out.settings import ClientSettings
from tests.harness.smtp_sink import SmtpSink
from tests.harness.tlsutil import make_tls_pair

HOST = "127.0.0.1"
SETTINGS = ClientSettings.from_delivery(
    DeliverySettings(
        connect_timeout_seconds=2,
        greeting_timeout_seconds=2,
        ehlo_timeout_seconds=2,
        command_timeout_seconds=2,
        data_timeout_seconds=2,
    )
)
BODY = b"From: a@sender.test\r\nSubject: hi\r\n\r\n.leading dot\r\n..two\r\nend\r\n"

SOURCE = Source("default", "0.0.0.0", "client.sender.test")


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool


@dataclass
class Recorder:
    """aiosmtpd handler hooks: record, refuse ``nobody@``, optionally offer PIPELINING."""

    pipelining: bool = False
    received: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.commands.append(f"RCPT {address}")
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.commands.append("RSET")
        return "250 2.0.0 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content
        assert isinstance(content, bytes) and envelope.mail_from is not None
        tls = session.ssl is not None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), content, tls))
        return "250 2.0.0 Queued"


StartServer = Callable[..., Awaitable[int]]
"""``start(recorder, **options of aiosmtpd's SMTP)``: the port of a new aiosmtpd server."""


@pytest.fixture
async def aiosmtpd() -> AsyncIterator[StartServer]:
    servers: list[asyncio.Server] = []

    async def start(recorder: Recorder, **options: Any) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(recorder, hostname="aiosmtpd.test", loop=loop, **options), HOST, 0
        )
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def message(recipient: str = "user@example.test", data: bytes = BODY) -> OutboundMessage:
    return OutboundMessage(
        id="m1",
        sender="bounces@sender.test",
        recipient=recipient,
        domain="example.test",
        source=SOURCE,
        data=data,
    )


async def session_to(port: int, gauge: ConnectionGauge, *, starttls: bool = False) -> ClientSession:
    opened = await open_session(
        Peer("localhost", HOST, port),
        SOURCE,
        SETTINGS,
        BounceClassifier(),
        gauge,
        starttls=starttls,
    )
    assert not isinstance(opened, OpenFailure), opened
    return opened


def delivered(outcome: Outcome) -> None:
    assert outcome.kind is OutcomeKind.DELIVERED, outcome


@pytest.mark.parametrize("pipelining", [False, True])
async def test_messages_over_one_connection(aiosmtpd: StartServer, pipelining: bool) -> None:
    recorder = Recorder(pipelining=pipelining)
    gauge = ConnectionGauge()
    session = await session_to(await aiosmtpd(recorder), gauge)
    delivered(await session.send(message()))
    refused = await session.send(message("nobody@example.test"))
    assert (refused.kind, refused.scope) == (OutcomeKind.PERMANENT, Scope.RECIPIENT)
    assert (refused.reply.code, refused.reply.enhanced) == (550, "5.1.1")
    assert session.usable, "RSET put the session back in step"
    delivered(await session.send(message("second@example.test", b"no final line end")))
    await session.close()
    assert gauge.value == 0
    assert [(r.mail_from, r.rcpt_tos, r.data) for r in recorder.received] == [
        ("bounces@sender.test", ["user@example.test"], BODY),
        ("bounces@sender.test", ["second@example.test"], b"no final line end\r\n"),
    ]
    assert "RSET" in recorder.commands


async def test_starttls(aiosmtpd: StartServer, tmp_path: Path) -> None:
    recorder = Recorder()
    context: ssl.SSLContext = make_tls_pair(tmp_path).server
    session = await session_to(
        await aiosmtpd(recorder, tls_context=context), ConnectionGauge(), starttls=True
    )
    assert session.tls_version is not None and session.tls_cipher
    delivered(await session.send(message()))
    await session.close()
    assert [r.tls for r in recorder.received] == [True]


async def test_size_limit_and_smtputf8(aiosmtpd: StartServer) -> None:
    recorder = Recorder()
    port = await aiosmtpd(recorder, data_size_limit=200, enable_SMTPUTF8=True)
    session = await session_to(port, ConnectionGauge())
    too_big = await session.send(message(data=b"x" * 300 + b"\r\n"))
    assert (too_big.reply.code, too_big.reply.enhanced) == (552, "5.3.4")
    delivered(await session.send(message("jos\u00e9@example.test")))
    await session.close()
    assert [r.rcpt_tos for r in recorder.received] == [["jos\u00e9@example.test"]]


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_starttls_and_broken_tls_on_both_event_loops(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], tmp_path: Path
) -> None:
    """The engine runs on uvloop, the other tests on asyncio's loop: the TLS switch and
    the count of open connections after a failed handshake hold on both."""
    context = make_tls_pair(tmp_path).server

    async def scenario() -> tuple[str | None, OpenFailure, int]:
        gauge = ConnectionGauge()
        recorder = Recorder(pipelining=True)
        loop = asyncio.get_running_loop()
        good = await loop.create_server(
            lambda: SMTP(recorder, hostname="aiosmtpd.test", loop=loop, tls_context=context),
            HOST,
            0,
        )
        broken = SmtpSink(broken_tls=True)
        _, broken_port = await broken.start(HOST, 0)
        try:
            session = await session_to(good.sockets[0].getsockname()[1], gauge, starttls=True)
            delivered(await session.send(message()))
            await session.close()
            failed = await open_session(
                Peer("localhost", HOST, broken_port),
                SOURCE,
                SETTINGS,
                BounceClassifier(),
                gauge,
                starttls=True,
            )
            assert isinstance(failed, OpenFailure)
            return session.tls_version, failed, gauge.value
        finally:
            good.close()
            await good.wait_closed()
            await broken.stop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        version, failed, still_open = runner.run(scenario())
    assert version is not None
    assert failed.tls_broken
    assert (failed.outcome.reply.code, failed.outcome.reply.enhanced) == (451, "4.7.5")
    assert still_open == 0
