"""engine.smtp.server against real clients on 127.0.0.1: smtplib and raw streams."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.smtp.handler import Envelope, Session
from engine.smtp.reply import Reply
from engine.smtp.server import LISTEN_BACKLOG, ServerConfig, SmtpServer

USER, PASSWORD = "alice", "s3cret"
DEADLINE = 5.0


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


PLAIN_OK = b64(f"\0{USER}\0{PASSWORD}")
PLAIN_WRONG = b64(f"\0{USER}\0nope")
PLAIN_OTHER_AUTHZID = b64(f"bob\0{USER}\0{PASSWORD}")
PLAIN_NO_SEPARATORS = b64(f"{USER}{PASSWORD}")


# TLS material, generated per test session


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1; returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    return context


@pytest.fixture
def client_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))


# The handler under test


@dataclass
class Delivered:
    mail_from: str | None
    rcpt_tos: list[str]
    body: bytes
    tls_version: str | None
    authenticated_as: str | None


@dataclass
class RecordingHandler:
    """Accepts alice/s3cret; refuses senders named refused@ and recipients named
    nobody@; records everything."""

    refuse_connect: Reply | None = None
    delivered: list[Delivered] = field(default_factory=list)
    rejections: list[tuple[str, Reply]] = field(default_factory=list)
    rejected_envelopes: list[tuple[str | None, str | None]] = field(default_factory=list)
    """The (sender, recipient) told with each of ``rejections``."""
    mail_calls: list[str] = field(default_factory=list)

    async def on_connect(self, session: Session) -> Reply | None:
        return self.refuse_connect

    async def on_auth(self, session: Session, username: str, password: str) -> Reply:
        if (username, password) != (USER, PASSWORD):
            return Reply(535, "5.7.8", "Authentication credentials invalid")
        session.authenticated_as = username
        return Reply(235, "2.7.0", "Authentication successful")

    async def on_mail(self, session: Session, envelope: Envelope, address: str) -> Reply:
        self.mail_calls.append(address)
        if address.startswith("refused@"):
            return Reply(550, "5.7.1", "Sender refused")
        return Reply(250, "2.1.0", "Sender OK")

    async def on_rcpt(self, session: Session, envelope: Envelope, address: str) -> Reply:
        if address.startswith("nobody@"):
            return Reply(550, "5.1.1", "No such user")
        return Reply(250, "2.1.5", "Recipient OK")

    async def on_data(self, session: Session, envelope: Envelope, body: bytes) -> Reply:
        self.delivered.append(
            Delivered(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                body,
                session.tls_version,
                session.authenticated_as,
            )
        )
        return Reply(250, "2.0.0", "Queued")

    async def on_rejection(
        self,
        session: Session,
        command: str,
        reply: Reply,
        *,
        sender: str | None = None,
        recipient: str | None = None,
    ) -> None:
        self.rejections.append((command, reply))
        self.rejected_envelopes.append((sender, recipient))


@dataclass
class Running:
    server: SmtpServer
    handler: RecordingHandler
    port: int


BASE = ServerConfig(hostname="mx.test", idle_timeout_seconds=DEADLINE)
Serve = Callable[..., Awaitable[Running]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    running: list[Running] = []

    async def start(handler: RecordingHandler | None = None, **overrides: Any) -> Running:
        handler = handler or RecordingHandler()
        server = SmtpServer(replace(BASE, **overrides), handler)
        _, port = await server.start("127.0.0.1", 0)
        running.append(Running(server, handler, port))
        return running[-1]

    yield start
    for item in running:
        await item.server.stop(1.0)


class Client:
    """A raw SMTP client on asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def reply(self) -> str:
        """The next reply, lines joined with ``|``."""
        lines: list[str] = []
        async with asyncio.timeout(DEADLINE):
            while True:
                line = await self.reader.readline()
                assert line.endswith(b"\r\n"), f"connection closed after {lines!r}: {line!r}"
                lines.append(line[:-2].decode())
                if line[3:4] == b" ":
                    return "|".join(lines)

    async def expect(self, prefix: str) -> str:
        got = await self.reply()
        assert got.split("|")[-1].startswith(prefix), got
        return got

    async def command(self, line: str, prefix: str) -> str:
        await self.send(line + "\r\n")
        return await self.expect(prefix)

    async def closed(self) -> bool:
        async with asyncio.timeout(DEADLINE):
            return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[int], Awaitable[Client]]]:
    clients: list[Client] = []

    async def open_client(port: int) -> Client:
        clients.append(await Client.connect(port))
        await clients[-1].expect("220 mx.test ESMTP")
        return clients[-1]

    yield open_client
    for client in clients:
        await client.close()


Connect = Callable[[int], Awaitable[Client]]


@pytest.fixture
def smtp_client() -> Iterator[Callable[[int], smtplib.SMTP]]:
    opened: list[smtplib.SMTP] = []

    def open_smtp(port: int) -> smtplib.SMTP:
        opened.append(smtplib.SMTP("127.0.0.1", port, "client.test", timeout=DEADLINE))
        return opened[-1]

    yield open_smtp
    for client in opened:
        client.close()


# EHLO, STARTTLS, AUTH


async def test_ehlo_keywords_before_and_after_tls(
    serve: Serve, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    run = await serve(tls_context=server_tls, auth_enabled=True, max_message_bytes=5000)

    def dialogue() -> tuple[dict[str, str], dict[str, str]]:
        with smtplib.SMTP("127.0.0.1", run.port, "client.test", timeout=DEADLINE) as client:
            client.ehlo()
            before = dict(client.esmtp_features)
            client.starttls(context=client_tls)
            client.ehlo()
            after = dict(client.esmtp_features)
            client.login(USER, PASSWORD)
            client.sendmail("a@x.example", ["b@y.example"], b"Subject: hi\r\n\r\n.dot\r\n")
        return before, after

    before, after = await asyncio.to_thread(dialogue)
    common = {"pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8"}
    assert set(before) == common | {"starttls"}
    assert set(after) == common | {"auth"}
    assert after["size"] == "5000"
    assert after["auth"].split() == ["PLAIN", "LOGIN"]
    [message] = run.handler.delivered
    assert message.body == b"Subject: hi\r\n\r\n.dot\r\n"
    assert message.tls_version is not None and message.tls_version.startswith("TLS")
    assert message.authenticated_as == USER


async def test_auth_refused_before_tls(
    serve: Serve, connect: Connect, server_tls: ssl.SSLContext
) -> None:
    run = await serve(tls_context=server_tls, auth_enabled=True)
    client = await connect(run.port)
    ehlo = await client.command("EHLO client.test", "250 ")
    assert "AUTH" not in ehlo
    await client.command(f"AUTH PLAIN {PLAIN_OK}", "538 5.7.11 ")
    await client.command("MAIL FROM:<a@x.example>", "530 5.7.0 ")
    commands = [command for command, _ in run.handler.rejections]
    assert commands == ["AUTH PLAIN", "MAIL FROM:<a@x.example>"]
    assert run.handler.mail_calls == []


async def test_plaintext_auth_on_loopback_when_configured(
    serve: Serve, smtp_client: Callable[[int], smtplib.SMTP]
) -> None:
    run = await serve(auth_enabled=True, allow_plaintext_auth_on_loopback=True)

    def dialogue() -> None:
        client = smtp_client(run.port)
        client.ehlo()
        assert client.has_extn("auth")
        assert not client.has_extn("starttls")
        client.login(USER, PASSWORD)
        client.sendmail("a@x.example", ["b@y.example"], b"hello\r\n")
        client.quit()

    await asyncio.to_thread(dialogue)
    assert [m.authenticated_as for m in run.handler.delivered] == [USER]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_smtplib_auth_success_and_failure(
    serve: Serve, smtp_client: Callable[[int], smtplib.SMTP], mechanism: str
) -> None:
    run = await serve(auth_enabled=True, allow_plaintext_auth_on_loopback=True)

    def dialogue(password: str) -> tuple[int, bytes | str]:
        client = smtp_client(run.port)
        client.ehlo()
        client.user, client.password = USER, password
        method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        try:
            return client.auth(mechanism, method)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code, exc.smtp_error
        finally:
            client.quit()

    assert (await asyncio.to_thread(dialogue, PASSWORD))[0] == 235
    assert (await asyncio.to_thread(dialogue, "wrong")) == (
        535,
        b"5.7.8 Authentication credentials invalid",
    )
    assert run.handler.rejections[-1][0] == f"AUTH {mechanism}"
    assert "wrong" not in repr(run.handler.rejections)


AUTH_DIALOGUES = {
    "plain initial response": [(f"AUTH PLAIN {PLAIN_OK}", "235 2.7.0")],
    "plain continuation": [("AUTH PLAIN", "334 "), (PLAIN_OK, "235 2.7.0")],
    "plain empty initial response": [("AUTH PLAIN =", "501 5.5.2")],
    "plain without separators": [(f"AUTH PLAIN {PLAIN_NO_SEPARATORS}", "501 5.5.2")],
    "plain wrong": [(f"AUTH PLAIN {PLAIN_WRONG}", "535 5.7.8")],
    "plain foreign authzid": [(f"AUTH PLAIN {PLAIN_OTHER_AUTHZID}", "535 5.7.8")],
    "login prompts": [
        ("AUTH LOGIN", "334 VXNlcm5hbWU6"),
        (b64(USER), "334 UGFzc3dvcmQ6"),
        (b64(PASSWORD), "235 2.7.0"),
    ],
    "login initial username": [
        (f"AUTH LOGIN {b64(USER)}", "334 UGFzc3dvcmQ6"),
        (b64(PASSWORD), "235 2.7.0"),
    ],
    "login wrong password": [
        ("AUTH LOGIN", "334 VXNlcm5hbWU6"),
        (b64(USER), "334 UGFzc3dvcmQ6"),
        (b64("nope"), "535 5.7.8"),
    ],
    "cancel": [("AUTH LOGIN", "334 VXNlcm5hbWU6"), ("*", "501 5.0.0")],
    "bad base64": [("AUTH PLAIN", "334 "), ("not base64!", "501 5.5.2")],
    "unknown mechanism": [("AUTH CRAM-MD5", "504 5.5.4")],
    "twice": [(f"AUTH PLAIN {PLAIN_OK}", "235 2.7.0"), (f"AUTH PLAIN {PLAIN_OK}", "503 5.5.1")],
}


@pytest.mark.parametrize("steps", AUTH_DIALOGUES.values(), ids=AUTH_DIALOGUES.keys())
async def test_auth_dialogues(serve: Serve, connect: Connect, steps: list[tuple[str, str]]) -> None:
    run = await serve(auth_enabled=True, allow_plaintext_auth_on_loopback=True)
    client = await connect(run.port)
    await client.command("EHLO client.test", "250 ")
    for line, expected in steps:
        await client.command(line, expected)
    await client.command("NOOP", "250 2.0.0")
    for command, _ in run.handler.rejections:
        assert command.startswith("AUTH ") and len(command.split()) == 2


# Transactions


async def test_pipelined_transaction_in_one_write(serve: Serve, connect: Connect) -> None:
    run = await serve()
    client = await connect(run.port)
    await client.command("EHLO client.test", "250 ")
    await client.send(
        "MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<b@y.example>\r\n"
        "RCPT TO:<nobody@y.example>\r\nRCPT TO:<c@y.example>\r\nDATA\r\n"
    )
    for prefix in ("250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354 "):
        await client.expect(prefix)
    await client.send(b"Subject: x\r\n\r\n..stuffed\r\n.\r\nMAIL FROM:<d@x.example>\r\nQUIT\r\n")
    await client.expect("250 2.0.0 Queued")
    await client.expect("250 2.1.0")
    await client.expect("221 2.0.0")
    assert await client.closed()
    [message] = run.handler.delivered
    assert message.mail_from == ""
    assert message.rcpt_tos == ["b@y.example", "c@y.example"]
    assert message.body == b"Subject: x\r\n\r\n.stuffed\r\n"


async def test_a_refused_pipelined_transaction_is_reported_once(
    serve: Serve, connect: Connect
) -> None:
    run = await serve()
    client = await connect(run.port)
    await client.command("EHLO client.test", "250 ")
    await client.send(
        "MAIL FROM:<refused@x.example>\r\nRCPT TO:<b@y.example>\r\n"
        "RCPT TO:<c@y.example>\r\nDATA\r\n"
    )
    for prefix in ("550 5.7.1", "503 5.5.1", "503 5.5.1", "503 5.5.1"):
        await client.expect(prefix)
    await client.command("NOOP", "250 2.0.0")
    assert run.handler.rejections == [
        ("MAIL FROM:<refused@x.example>", Reply(550, "5.7.1", "Sender refused"))
    ]
    assert run.handler.rejected_envelopes == [("refused@x.example", None)]

    await client.command("RSET", "250 2.0.0")
    await client.command("RCPT TO:<b@y.example>", "503 5.5.1")
    await client.send("MAIL FROM:<refused@x.example>\r\nDATA\r\n")
    await client.expect("550 5.7.1")
    await client.expect("503 5.5.1")
    await client.send(
        "MAIL FROM:<>\r\nRCPT TO:<nobody@y.example>\r\nRCPT TO:<@r.example:b@y.example>\r\n"
        "DATA\r\nRSET\r\nDATA\r\n"
    )
    for prefix in ("250 2.1.0", "550 5.1.1", "501 5.1.3", "554 5.5.1", "250 2.0.0", "503 5.5.1"):
        await client.expect(prefix)
    assert [command for command, _ in run.handler.rejections] == [
        "MAIL FROM:<refused@x.example>",
        "RCPT TO:<b@y.example>",
        "MAIL FROM:<refused@x.example>",
        "RCPT TO:<nobody@y.example>",
        "RCPT TO:<@r.example:b@y.example>",
        "DATA",
        "DATA",
    ]
    assert run.handler.rejected_envelopes == [
        ("refused@x.example", None),
        (None, None),
        ("refused@x.example", None),
        ("", "nobody@y.example"),
        ("", None),
        ("", None),
        (None, None),
    ]


async def test_unauthenticated_mail_is_reported_with_its_sender(
    serve: Serve, connect: Connect
) -> None:
    run = await serve(auth_enabled=True, allow_plaintext_auth_on_loopback=True)
    client = await connect(run.port)
    await client.command("EHLO client.test", "250 ")
    await client.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n")
    for prefix in ("530 5.7.0", "503 5.5.1", "503 5.5.1"):
        await client.expect(prefix)
    assert [command for command, _ in run.handler.rejections] == ["MAIL FROM:<a@x.example>"]
    assert run.handler.rejected_envelopes == [("a@x.example", None)]
    assert run.handler.mail_calls == []


SEQUENCE = [
    ("MAIL FROM:<a@x.example>", "503 5.5.1"),
    ("HELO client.test", "250 mx.test"),
    ("MAIL FROM:<a@x.example> SIZE=10", "555 5.5.4"),
    ("STARTTLS", "454 4.7.0"),
    ("EHLO", "501 5.5.4"),
    ("EHLO client.test", "250 SMTPUTF8"),
    ("RCPT TO:<b@y.example>", "503 5.5.1"),
    ("DATA", "503 5.5.1"),
    ("AUTH PLAIN", "502 5.5.1"),
    ("MAIL FROM:<a@x.example>", "250 2.1.0"),
    ("MAIL FROM:<a@x.example>", "503 5.5.1"),
    ("RCPT TO:<@relay.example:b@y.example>", "501 5.1.3"),
    ("RCPT TO:<b@y.example> NOTIFY=NEVER", "555 5.5.4"),
    ("DATA", "554 5.5.1"),
    ("RSET", "250 2.0.0"),
    ("RCPT TO:<b@y.example>", "503 5.5.1"),
    ("VRFY someone", "252 2.5.2"),
    ("HELP", "214 2.0.0"),
    ("NOOP", "250 2.0.0"),
    ("EXPN list", "502 5.5.1"),
    ("BOGUS", "502 5.5.1"),
    ("", "502 5.5.1"),
    ("QUIT", "221 2.0.0"),
]


async def test_command_sequence_and_replies(serve: Serve, connect: Connect) -> None:
    run = await serve()
    client = await connect(run.port)
    for line, expected in SEQUENCE:
        await client.command(line, expected)
    assert await client.closed()
    refused = [reply.code for _, reply in run.handler.rejections]
    assert refused == [int(code[:3]) for _, code in SEQUENCE if code[0] in "45"]


async def test_size_limit_by_parameter_and_by_body(serve: Serve, connect: Connect) -> None:
    run = await serve(max_message_bytes=1000)
    client = await connect(run.port)
    await client.command("EHLO client.test", "250 ")
    await client.command("MAIL FROM:<a@x.example> SIZE=1001", "552 5.3.4")
    await client.command("MAIL FROM:<a@x.example> SIZE=1000", "250 2.1.0")
    await client.command("RCPT TO:<b@y.example>", "250 2.1.5")
    await client.command("DATA", "354 ")
    await client.send(b"x" * 500 + b"\r\n")
    await client.send(b"y" * 500 + b"\r\n" + b"z" * 5000 + b"\r\n")
    await client.command(".", "552 5.3.4")
    await client.command("NOOP", "250 2.0.0")
    assert run.handler.delivered == []


async def test_too_many_recipients(serve: Serve, connect: Connect) -> None:
    run = await serve(max_recipients=2)
    client = await connect(run.port)
    await client.command("EHLO client.test", "250 ")
    await client.command("MAIL FROM:<a@x.example>", "250 2.1.0")
    for n, expected in ((1, "250 2.1.5"), (2, "250 2.1.5"), (3, "452 4.5.3")):
        await client.command(f"RCPT TO:<r{n}@y.example>", expected)
    await client.command("DATA", "354 ")
    await client.command("hi\r\n.", "250 2.0.0")
    assert run.handler.delivered[0].rcpt_tos == ["r1@y.example", "r2@y.example"]


async def test_body_line_over_998_octets_is_refused(serve: Serve, connect: Connect) -> None:
    run = await serve()
    client = await connect(run.port)
    await client.command("EHLO client.test", "250 ")
    await client.command("MAIL FROM:<a@x.example>", "250 2.1.0")
    await client.command("RCPT TO:<b@y.example>", "250 2.1.5")
    await client.command("DATA", "354 ")
    await client.command("ok\r\n" + "x" * 999 + "\r\n.", "550 5.5.2")
    await client.command("NOOP", "250 2.0.0")
    assert run.handler.delivered == []


@pytest.mark.parametrize("fake_end", ["\n.\r\n", "\r\n.\n", "\n.\n", "\r.\r"])
async def test_smuggling_does_not_end_data(serve: Serve, connect: Connect, fake_end: str) -> None:
    run = await serve()
    client = await connect(run.port)
    await client.command("EHLO client.test", "250 ")
    await client.send("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n")
    for prefix in ("250 2.1.0", "250 2.1.5", "354 "):
        await client.expect(prefix)
    smuggled = "MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\nforged\r\n"
    await client.send(f"Subject: real\r\n\r\nbody{fake_end}{smuggled}")
    # Had the fake end closed the body, the next reply would be a 250 for it.
    await client.send("tail\r\n.\r\nNOOP\r\n")
    await client.expect("550 5.6.0")
    await client.expect("250 2.0.0 OK")
    assert run.handler.delivered == []
    assert run.handler.mail_calls == ["a@x.example"]


# Limits, timeouts, STARTTLS injection, shutdown


async def test_idle_timeout_closes_with_421(serve: Serve, connect: Connect) -> None:
    run = await serve(idle_timeout_seconds=0.2)
    client = await connect(run.port)
    await client.expect("421 4.4.2")
    assert await client.closed()


async def test_idle_timeout_counts_from_the_last_command(serve: Serve, connect: Connect) -> None:
    run = await serve(idle_timeout_seconds=1.0)
    client = await connect(run.port)
    loop = asyncio.get_running_loop()
    for _ in range(2):
        await asyncio.sleep(0.6)  # a slow client, each pause within the timeout
        await client.command("NOOP", "250")
    last_command = loop.time()
    await client.expect("421 4.4.2")
    assert loop.time() - last_command >= 0.9
    assert await client.closed()


async def test_data_timeout_closes_with_421(serve: Serve, connect: Connect) -> None:
    run = await serve(data_timeout_seconds=0.2)
    client = await connect(run.port)
    await client.send("EHLO c.test\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n")
    for prefix in ("250 ", "250 2.1.0", "250 2.1.5", "354 "):
        await client.expect(prefix)
    await client.send("partial body\r\n")
    await client.expect("421 4.4.2")
    assert await client.closed()
    assert run.handler.delivered == []


async def trickle(client: Client, data: bytes, interval: float) -> None:
    """Send ``data`` one octet every ``interval`` seconds, until done or closed."""
    with contextlib.suppress(ConnectionError):
        for octet in data:
            await client.send(bytes([octet]))
            await asyncio.sleep(interval)


async def cut_after(client: Client, data: bytes) -> float:
    """Trickle ``data`` until the 421 4.4.2 and the close; the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sender = asyncio.create_task(trickle(client, data, 0.3))
    try:
        await client.expect("421 4.4.2")
        elapsed = loop.time() - started
        assert await client.closed()
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    return elapsed


async def test_a_trickled_command_line_is_cut_at_the_deadline(
    serve: Serve, connect: Connect
) -> None:
    run = await serve(idle_timeout_seconds=1.0)
    client = await connect(run.port)
    elapsed = await cut_after(client, b"NOOP " + b"x" * 100)
    assert 0.9 <= elapsed < 3.0


async def test_a_trickled_auth_response_is_cut_at_the_deadline(
    serve: Serve, connect: Connect
) -> None:
    run = await serve(idle_timeout_seconds=1.0, auth_enabled=True, require_tls_for_auth=False)
    client = await connect(run.port)
    await client.command("EHLO client.test", "250 ")
    await client.command("AUTH LOGIN", "334 ")
    elapsed = await cut_after(client, b64(USER).encode() * 10)
    assert 0.9 <= elapsed < 3.0


async def test_a_trickled_data_body_is_cut_at_the_deadline(serve: Serve, connect: Connect) -> None:
    run = await serve(data_timeout_seconds=1.0)
    client = await connect(run.port)
    await client.send("EHLO c.test\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n")
    for prefix in ("250 ", "250 2.1.0", "250 2.1.5", "354 "):
        await client.expect(prefix)
    elapsed = await cut_after(client, b"line\r\n" * 20)
    assert 0.9 <= elapsed < 3.0
    assert run.handler.delivered == []


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``: Send-Q in ``ss -ltn``."""
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is needed to read a listening socket's backlog")
    shown = subprocess.run(
        [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    [line] = shown.splitlines()
    return int(line.split()[2])


def test_a_trickled_command_line_is_cut_under_uvloop() -> None:
    async def scenario() -> float:
        server = SmtpServer(replace(BASE, idle_timeout_seconds=1.0), RecordingHandler())
        _, port = await server.start("127.0.0.1", 0)
        client = await Client.connect(port)
        try:
            await client.expect("220 mx.test ESMTP")
            return await cut_after(client, b"NOOP " + b"x" * 100)
        finally:
            await client.close()
            await server.stop(1.0)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        elapsed = runner.run(scenario())
    assert 0.9 <= elapsed < 3.0


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop])
@pytest.mark.parametrize("bound_by_caller", [False, True])
def test_listen_backlog(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], bound_by_caller: bool
) -> None:
    async def backlog() -> int:
        server = SmtpServer(BASE, RecordingHandler())
        if bound_by_caller:
            sock = socket.create_server(("127.0.0.1", 0), backlog=LISTEN_BACKLOG)
            sock.setblocking(False)
            _, port = await server.start(sock=sock)
        else:
            _, port = await server.start("127.0.0.1", 0)
        try:
            return await asyncio.to_thread(listen_backlog, port)
        finally:
            await server.stop(1.0)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        shown = runner.run(backlog())
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert shown == min(LISTEN_BACKLOG, somaxconn)


async def test_max_commands(serve: Serve, connect: Connect) -> None:
    run = await serve(max_commands=3)
    client = await connect(run.port)
    await client.send("NOOP\r\n" * 5)
    for prefix in ("250 2.0.0", "250 2.0.0", "250 2.0.0", "421 4.7.0"):
        await client.expect(prefix)
    assert await client.closed()


async def test_max_sessions(serve: Serve, connect: Connect) -> None:
    run = await serve(max_sessions=1)
    await connect(run.port)
    extra = await Client.connect(run.port)
    try:
        await extra.expect("421 4.3.2")
        assert await extra.closed()
    finally:
        await extra.close()


async def test_on_connect_refusal(serve: Serve) -> None:
    handler = RecordingHandler(refuse_connect=Reply(554, "5.7.1", "Go away"))
    run = await serve(handler)
    client = await Client.connect(run.port)
    try:
        await client.expect("554 5.7.1 Go away")
        assert await client.closed()
    finally:
        await client.close()
    assert [reply.code for _, reply in handler.rejections] == [554]


async def test_starttls_discards_pipelined_plaintext(
    serve: Serve,
    connect: Connect,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    run = await serve(tls_context=server_tls, auth_enabled=True)
    client = await connect(run.port)
    await client.command("EHLO client.test", "250 ")
    await client.send("STARTTLS\r\nMAIL FROM:<evil@x.example>\r\nNOOP\r\n")
    await client.expect("220 2.0.0")
    await client.writer.start_tls(client_tls, server_hostname="localhost")
    await client.command("NOOP", "250 2.0.0 OK")
    ehlo = await client.command("EHLO client.test", "250 ")
    assert "AUTH PLAIN LOGIN" in ehlo and "STARTTLS" not in ehlo
    await client.command("STARTTLS", "503 5.5.1")
    await client.command(f"AUTH PLAIN {PLAIN_OK}", "235 2.7.0")
    assert "evil" not in repr(run.handler.rejections)
    assert run.handler.mail_calls == []


async def test_stop_lets_an_in_flight_transaction_finish(serve: Serve, connect: Connect) -> None:
    run = await serve()
    busy = await connect(run.port)
    idle = await connect(run.port)
    await busy.send("EHLO c.test\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n")
    for prefix in ("250 ", "250 2.1.0", "250 2.1.5", "354 "):
        await busy.expect(prefix)
    stopping = asyncio.create_task(run.server.stop(DEADLINE))
    await idle.expect("421 4.3.2")
    assert await idle.closed()
    with pytest.raises(OSError):
        await Client.connect(run.port)
    assert not stopping.done()
    await busy.command("last words\r\n.", "250 2.0.0")
    await busy.expect("421 4.3.2")
    assert await busy.closed()
    async with asyncio.timeout(DEADLINE):
        await stopping
    assert [m.body for m in run.handler.delivered] == [b"last words\r\n"]
    assert run.server.session_count == 0


async def test_stop_closes_sessions_left_at_the_deadline(serve: Serve, connect: Connect) -> None:
    run = await serve()
    client = await connect(run.port)
    await client.send("EHLO c.test\r\nMAIL FROM:<a@x.example>\r\n")
    await client.expect("250 ")
    await client.expect("250 2.1.0")
    async with asyncio.timeout(DEADLINE):
        await run.server.stop(0.1)
    await client.expect("421 4.3.2")
    assert await client.closed()
    assert run.server.session_count == 0


def test_starttls_and_auth_under_uvloop(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async def scenario() -> RecordingHandler:
        handler = RecordingHandler()
        config = replace(BASE, tls_context=server_tls, auth_enabled=True)
        server = SmtpServer(config, handler)
        _, port = await server.start("127.0.0.1", 0)

        def dialogue() -> None:
            with smtplib.SMTP("127.0.0.1", port, "client.test", timeout=DEADLINE) as client:
                client.starttls(context=client_tls)
                client.login(USER, PASSWORD)
                client.sendmail("a@x.example", ["b@y.example"], b"via uvloop\r\n")

        try:
            await asyncio.to_thread(dialogue)
        finally:
            await server.stop(1.0)
        return handler

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        handler = runner.run(scenario())
    [message] = handler.delivered
    assert message.body == b"via uvloop\r\n"
    assert message.tls_version is not None
