"""The SMTP sink against stdlib smtplib and raw sockets: each behaviour it promises."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from typing import cast

import pytest

from tests.harness.smtp_sink import (
    Behaviour,
    SmtpSink,
    ThreadedSmtpSink,
    _Wire,
    behaviour_for,
    end_of_data,
    most_in_window,
)
from tests.harness.tlsutil import TlsPair, make_tls_pair

MESSAGE = b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> TlsPair:
    return make_tls_pair(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sink() -> Iterator[ThreadedSmtpSink]:
    with ThreadedSmtpSink() as running:
        yield running
    assert not running.sink.errors


def _client(sink: ThreadedSmtpSink) -> smtplib.SMTP:
    host, port = sink.address
    return smtplib.SMTP(host, port, local_hostname="client.test", timeout=TIMEOUT)


class RawClient:
    """A line-level SMTP client on a plain socket, for what smtplib will not do."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def reply(self) -> bytes:
        """One whole (possibly multi-line) reply."""
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"".join(lines)

    def command(self, text: str) -> bytes:
        self.send(text.encode() + b"\r\n")
        return self.reply()

    def open_transaction(self, rcpt: str) -> None:
        assert self.reply().startswith(b"220")
        assert self.command("EHLO client.test").startswith(b"250")
        assert self.command("MAIL FROM:<sender@example.org>").startswith(b"250")
        assert self.command(f"RCPT TO:<{rcpt}>").startswith(b"250")
        assert self.command("DATA").startswith(b"354")

    def is_closed(self) -> bool:
        """True once the peer has closed (EOF or reset); waits up to the socket timeout."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


@pytest.fixture
def raw(sink: ThreadedSmtpSink) -> Iterator[RawClient]:
    client = RawClient(sink.address)
    yield client
    client.close()


@pytest.mark.parametrize(
    ("rcpt", "behaviour"),
    [
        ("alice@example.com", Behaviour.ACCEPT),
        ("TempFail@example.com", Behaviour.TEMPFAIL),
        ("tempfail-7@example.com", Behaviour.TEMPFAIL),
        ("permfail@example.com", Behaviour.PERMFAIL),
        ("quota@example.com", Behaviour.QUOTA),
        ("421-anything@example.com", Behaviour.CLOSE_421),
        ("datatempfail@example.com", Behaviour.DATA_TEMPFAIL),
        ("datapermfail+x@example.com", Behaviour.DATA_PERMFAIL),
        ("slow@example.com", Behaviour.SLOW),
        ("disconnect-in-data@example.com", Behaviour.DISCONNECT_IN_DATA),
        ("stall@example.com", Behaviour.STALL),
        ("garbage@example.com", Behaviour.GARBAGE),
        ("tempfail", Behaviour.TEMPFAIL),
        ("421@example.com", Behaviour.ACCEPT),
        ("unusualrate-3@example.com", Behaviour.RATE_LIMITED),
        ("blocked-s3150@example.com", Behaviour.NETWORK_BLOCKED),
        ("blocked@example.com", Behaviour.ACCEPT),
    ],
)
def test_behaviour_for(rcpt: str, behaviour: Behaviour) -> None:
    assert behaviour_for(rcpt) is behaviour


@pytest.mark.parametrize(
    ("behaviours", "expected"),
    [
        ([Behaviour.ACCEPT], (Behaviour.ACCEPT, False)),
        ([Behaviour.SLOW, Behaviour.DATA_TEMPFAIL], (Behaviour.DATA_TEMPFAIL, True)),
        ([Behaviour.DATA_TEMPFAIL, Behaviour.DATA_PERMFAIL], (Behaviour.DATA_PERMFAIL, False)),
        ([Behaviour.STALL, Behaviour.DISCONNECT_IN_DATA], (Behaviour.DISCONNECT_IN_DATA, False)),
    ],
)
def test_end_of_data(behaviours: list[Behaviour], expected: tuple[Behaviour, bool]) -> None:
    assert end_of_data(behaviours) == expected


def test_accepts_and_records(sink: ThreadedSmtpSink) -> None:
    with _client(sink) as client:
        refused = client.sendmail("sender@example.org", ["a@example.com", "B@example.com"], MESSAGE)
        assert client.sock is not None
        port = client.sock.getsockname()[1]
    assert refused == {}
    [message] = sink.wait_for_count(1, TIMEOUT)
    assert message.mail_from == "sender@example.org"
    assert message.rcpt_tos == ("a@example.com", "B@example.com")
    assert message.data == MESSAGE
    assert message.peer == ("127.0.0.1", port)
    assert message.tls_version is None
    assert message.ehlo == "client.test"
    assert message.received_at.tzinfo is not None
    assert sink.count_for("b@EXAMPLE.com") == 1
    assert sink.inbox.connections == 1


def test_duplicates_are_counted(sink: ThreadedSmtpSink) -> None:
    with _client(sink) as client:
        for _ in range(3):
            client.sendmail("sender@example.org", ["dup@example.com"], MESSAGE)
    sink.wait_for_count(3, TIMEOUT)
    assert sink.count_for("dup@example.com") == 3
    assert sink.attempts_for("dup@example.com") == 3


@pytest.mark.parametrize(
    ("rcpt", "code", "text"),
    [
        ("tempfail@example.com", 451, b"4.3.0 Try again later"),
        ("PermFail-2@example.com", 550, b"5.1.1 No such user"),
        ("quota@example.com", 452, b"4.2.2 Mailbox full"),
    ],
)
def test_rcpt_refusals(sink: ThreadedSmtpSink, rcpt: str, code: int, text: bytes) -> None:
    with _client(sink) as client:
        client.ehlo()
        client.mail("sender@example.org")
        assert client.rcpt(rcpt) == (code, text)
        assert client.rcpt("ok@example.com")[0] == 250
        assert client.data(MESSAGE)[0] == 250
    [message] = sink.wait_for_count(1, TIMEOUT)
    assert message.rcpt_tos == ("ok@example.com",)
    assert sink.count_for(rcpt) == 0
    assert sink.attempts_for(rcpt) == 1


def test_421_replies_and_closes(raw: RawClient) -> None:
    assert raw.reply().startswith(b"220")
    raw.command("EHLO client.test")
    raw.command("MAIL FROM:<sender@example.org>")
    assert raw.command("RCPT TO:<421-later@example.com>") == b"421 4.7.0 Try again later\r\n"
    assert raw.is_closed()


def test_unusual_rate_replies_as_gmail_and_closes(raw: RawClient) -> None:
    assert raw.reply().startswith(b"220")
    raw.command("EHLO client.test")
    raw.command("MAIL FROM:<sender@example.org>")
    reply = raw.command("RCPT TO:<unusualrate-1@example.com>")
    assert reply.startswith(b"421 4.7.28 [127.0.0.1] Our system has detected an unusual rate")
    assert raw.is_closed()


def test_network_block_replies_as_microsoft(sink: ThreadedSmtpSink) -> None:
    with _client(sink) as client:
        client.ehlo()
        client.mail("sender@example.org")
        code, text = client.rcpt("blocked-s3150@example.com")
        assert client.rcpt("ok@example.com")[0] == 250
        assert client.data(MESSAGE)[0] == 250
    assert code == 550
    assert text.startswith(b"5.7.1 Unfortunately, messages from [127.0.0.1] weren't sent.")
    assert b"(S3150)" in text


def test_peak_connections_per_client_address(sink: ThreadedSmtpSink) -> None:
    first, second = _client(sink), _client(sink)
    with first, second:
        first.ehlo()
        second.ehlo()
    with _client(sink) as third:  # after the others sent QUIT: never more than 2 at once
        third.sendmail("sender@example.org", ["x@example.com"], MESSAGE)
    [message] = sink.wait_for_count(1, TIMEOUT)
    assert message.connection == 3
    assert sink.inbox.connections == 3
    assert sink.inbox.peak_connections("127.0.0.1") == 2
    assert sink.inbox.peak_connections("127.0.0.9") == 0


@pytest.mark.parametrize(
    ("times", "window", "most"),
    [
        ([], 1.0, 0),
        ([5.0], 1.0, 1),
        ([0.0, 0.5, 1.0, 1.5], 1.0, 3),
        ([0.0, 1.0, 2.0, 3.0], 0.5, 1),
        ([3.0, 0.1, 0.2, 2.0, 0.3], 0.25, 3),
    ],
)
def test_most_in_window(times: list[float], window: float, most: int) -> None:
    assert most_in_window(times, window) == most


@pytest.mark.parametrize(
    ("rcpt", "code", "text"),
    [
        ("datatempfail@example.com", 451, b"4.3.0 Try again later"),
        ("datapermfail@example.com", 554, b"5.7.1 Message rejected"),
    ],
)
def test_data_refusals(sink: ThreadedSmtpSink, rcpt: str, code: int, text: bytes) -> None:
    with _client(sink) as client:
        client.ehlo()
        client.mail("sender@example.org")
        assert client.rcpt(rcpt)[0] == 250
        assert client.data(MESSAGE) == (code, text)
        assert client.noop()[0] == 250
    assert sink.messages == []
    assert sink.attempts_for(rcpt) == 1


def test_slow_waits_before_answering() -> None:
    with ThreadedSmtpSink(slow_seconds=0.3) as sink, _client(sink) as client:
        client.ehlo()
        client.mail("sender@example.org")
        client.rcpt("slow@example.com")
        started = time.monotonic()
        assert client.data(MESSAGE)[0] == 250
        assert time.monotonic() - started >= 0.3
    assert len(sink.messages) == 1


def test_disconnect_in_data_cuts_mid_message(sink: ThreadedSmtpSink, raw: RawClient) -> None:
    raw.open_transaction("disconnect-in-data@example.com")
    raw.send(b"Subject: partial\r\n")
    assert raw.is_closed()
    with pytest.raises(OSError):
        for _ in range(100):
            raw.send(b"more body\r\n" * 1000)
    assert sink.messages == []


def test_stall_never_answers(sink: ThreadedSmtpSink, raw: RawClient) -> None:
    raw.open_transaction("stall@example.com")
    raw.send(MESSAGE + b".\r\n")
    raw.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        raw.line()
    assert sink.messages == []


def test_garbage_rcpt_reply(raw: RawClient) -> None:
    assert raw.reply().startswith(b"220")
    raw.command("EHLO client.test")
    raw.command("MAIL FROM:<sender@example.org>")
    assert raw.command("RCPT TO:<garbage@example.com>") == b"HELLO WORLD\r\n"


def test_pipelined_transaction(sink: ThreadedSmtpSink, raw: RawClient) -> None:
    assert raw.reply().startswith(b"220")
    assert b"250-PIPELINING" in raw.command("EHLO client.test")
    raw.send(
        b"MAIL FROM:<s@example.org>\r\nRCPT TO:<quota@example.com>\r\n"
        b"RCPT TO:<p@example.com>\r\nDATA\r\n"
    )
    replies = [raw.line()[:3] for _ in range(4)]
    assert replies == [b"250", b"452", b"250", b"354"]
    raw.send(b"..dotted\r\n.\r\nQUIT\r\n")
    assert raw.line().startswith(b"250 2.0.0")
    assert raw.line().startswith(b"221")
    [message] = sink.wait_for_count(1, TIMEOUT)
    assert message.data == b".dotted\r\n"


@pytest.mark.parametrize(
    ("wire", "body", "rest"),
    [
        (b".\r\nQUIT\r\n", b"", b"QUIT\r\n"),
        (b"\r\n.\r\n", b"\r\n", b""),
        (b".a\r\n..b\r\nc\r\n.\r\nNOOP\r\n", b"a\r\n.b\r\nc\r\n", b"NOOP\r\n"),
        (b"x\r\n.y\r\n\r\n.\r\n", b"x\r\ny\r\n\r\n", b""),
        (b"a\n.\nb\r.\r\r\n.\r\n", b"a\n.\nb\r.\r\r\n", b""),
    ],
)
@pytest.mark.parametrize("piece", [1, 2, 3, 1000])
async def test_read_data_framing(wire: bytes, body: bytes, rest: bytes, piece: int) -> None:
    reader = asyncio.StreamReader()
    for start in range(0, len(wire), piece):
        reader.feed_data(wire[start : start + piece])
    reader.feed_eof()
    framed = _Wire(reader, cast(asyncio.StreamWriter, None), TIMEOUT)
    framed.buffer += await reader.read(piece)
    assert await framed.read_data(1000) == body
    assert bytes(framed.buffer) + await reader.read() == rest


async def test_read_data_over_limit_stays_in_step() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"x" * 50 + b"\r\n" + b"y" * 5000 + b"\r\n.\r\nNOOP\r\n")
    reader.feed_eof()
    framed = _Wire(reader, cast(asyncio.StreamWriter, None), TIMEOUT)
    assert await framed.read_data(100) is None
    assert await framed.readline() == b"NOOP\r\n"


def test_message_too_big() -> None:
    with ThreadedSmtpSink(max_message_size=100) as sink, _client(sink) as client:
        client.ehlo()
        assert client.has_extn("size")
        client.mail("sender@example.org")
        client.rcpt("big@example.com")
        assert client.data(b"z" * 5000)[0] == 552
        assert client.noop()[0] == 250
    assert sink.messages == []


def test_command_order_is_enforced(raw: RawClient) -> None:
    assert raw.reply().startswith(b"220")
    assert raw.command("MAIL FROM:<s@example.org>").startswith(b"503")
    assert raw.command("HELO client.test").startswith(b"250 ")
    assert raw.command("RCPT TO:<r@example.com>").startswith(b"503")
    assert raw.command("MAIL FROM:<s@example.org>").startswith(b"250")
    assert raw.command("MAIL FROM:<s@example.org>").startswith(b"503")
    assert raw.command("DATA").startswith(b"554")
    assert raw.command("RCPT TO:bad").startswith(b"501")
    assert raw.command("RSET").startswith(b"250")
    assert raw.command("VRFY x").startswith(b"500")


def test_plaintext_pipelined_behind_starttls_is_discarded(tls_pair: TlsPair) -> None:
    with ThreadedSmtpSink(tls=tls_pair.server) as sink:
        raw = RawClient(sink.address)
        try:
            assert raw.reply().startswith(b"220")
            raw.command("EHLO client.test")
            raw.send(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
            assert raw.reply().startswith(b"220")
            raw.file.close()
            raw.sock = tls_pair.client.wrap_socket(raw.sock, server_hostname="localhost")
            raw.file = raw.sock.makefile("rb")
            assert raw.command("EHLO client.test").startswith(b"250")
            assert raw.command("RCPT TO:<r@example.com>").startswith(b"503")
        finally:
            raw.close()


def test_starttls(tls_pair: TlsPair) -> None:
    with ThreadedSmtpSink(tls=tls_pair.server) as sink, _client(sink) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.starttls(context=tls_pair.client)[0] == 220
        client.ehlo("after-tls.test")
        assert not client.has_extn("starttls")
        client.sendmail("sender@example.org", ["secure@example.com"], MESSAGE)
    [message] = sink.wait_for_count(1, TIMEOUT)
    assert message.tls_version in {"TLSv1.2", "TLSv1.3"}
    assert message.ehlo == "after-tls.test"


def test_starttls_not_offered(sink: ThreadedSmtpSink) -> None:
    with _client(sink) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS")[0] == 502


def test_broken_tls(tls_pair: TlsPair) -> None:
    with ThreadedSmtpSink(broken_tls=True) as sink, _client(sink) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        # The garbage fails the handshake; the sink's close may reset it first.
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            client.starttls(context=tls_pair.client)
    assert sink.messages == []


def test_greeting_421_refuses() -> None:
    with ThreadedSmtpSink(greeting_code=421) as sink:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            _client(sink)
        assert refused.value.smtp_code == 421
        raw = RawClient(sink.address)
        try:
            assert raw.reply().startswith(b"421 4.7.0")
            assert raw.is_closed()
        finally:
            raw.close()


def test_greeting_554_refuses_until_quit() -> None:
    with ThreadedSmtpSink(greeting_code=554) as sink:
        raw = RawClient(sink.address)
        try:
            assert raw.reply().startswith(b"554 ")
            assert raw.command("EHLO client.test").startswith(b"503")
            assert raw.command("QUIT").startswith(b"221")
            assert raw.is_closed()
        finally:
            raw.close()


def test_ehlo_extensions_can_drop_pipelining() -> None:
    with ThreadedSmtpSink(ehlo_extensions=["8BITMIME"]) as sink, _client(sink) as client:
        client.ehlo()
        assert client.has_extn("8bitmime")
        assert not client.has_extn("pipelining")


def test_max_messages_per_connection() -> None:
    with ThreadedSmtpSink(max_messages_per_connection=2) as sink, _client(sink) as client:
        for _ in range(2):
            client.sendmail("sender@example.org", ["a@example.com"], MESSAGE)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("sender@example.org", ["a@example.com"], MESSAGE)
        assert refused.value.smtp_code == 421
    assert sink.count_for("a@example.com") == 2


def test_two_sinks_share_a_port_on_different_addresses() -> None:
    with ThreadedSmtpSink("127.0.0.2") as first:
        port = first.address[1]
        with ThreadedSmtpSink("127.0.0.3", port) as second:
            assert second.address == ("127.0.0.3", port)
            for sink, rcpt in ((first, "one@example.com"), (second, "two@example.com")):
                with _client(sink) as client:
                    client.sendmail("sender@example.org", [rcpt], MESSAGE)
            [to_first] = first.wait_for_count(1, TIMEOUT)
            [to_second] = second.wait_for_count(1, TIMEOUT)
    assert to_first.rcpt_tos == ("one@example.com",)
    assert to_second.rcpt_tos == ("two@example.com",)
    assert first.count_for("two@example.com") == 0


def test_threaded_wait_for_count_times_out(sink: ThreadedSmtpSink) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="0 of 1"):
        sink.wait_for_count(1, 0.1)
    assert time.monotonic() - started < 2.0


def _send(address: tuple[str, int], rcpt: str) -> None:
    with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
        client.sendmail("sender@example.org", [rcpt], MESSAGE)


async def test_async_sink_wait_for_count() -> None:
    async with SmtpSink() as sink:
        assert sink.address is not None
        sending = asyncio.gather(
            *(asyncio.to_thread(_send, sink.address, f"r{i}@example.com") for i in range(3))
        )
        messages = await sink.wait_for_count(3, TIMEOUT)
        await sending
    assert sorted(m.rcpt_tos[0] for m in messages) == [f"r{i}@example.com" for i in range(3)]
    assert not sink.errors


async def test_async_wait_for_count_times_out() -> None:
    async with SmtpSink() as sink:
        with pytest.raises(TimeoutError, match="0 of 2"):
            await sink.wait_for_count(2, 0.1)


async def test_stop_closes_open_connections() -> None:
    sink = SmtpSink()
    host, port = await sink.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(host, port)
    assert (await reader.readline()).startswith(b"220")
    await sink.stop()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
