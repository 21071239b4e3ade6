"""The pure SMTP reader and command parsers (engine.smtp.reader)."""

from __future__ import annotations

import pytest

from engine.smtp.reader import (
    CommandError,
    CommandLine,
    Event,
    LineError,
    MessageBody,
    MessageRejected,
    SmtpReader,
    parse_command,
    parse_path,
)
from engine.smtp.reply import Reply

MAX = 1000


def drain(reader: SmtpReader) -> list[Event]:
    """Every event available now; switches to data mode after a DATA line."""
    events: list[Event] = []
    while (event := reader.next_event()) is not None:
        events.append(event)
        if isinstance(event, CommandLine) and event.text == "DATA":
            reader.start_data()
    return events


def run(chunks: list[bytes], max_bytes: int = MAX, max_line: int = 2048) -> list[Event]:
    reader = SmtpReader(max_line_length=max_line, max_message_bytes=max_bytes)
    events: list[Event] = []
    for chunk in chunks:
        reader.feed(chunk)
        events += drain(reader)
    return events


def splits(data: bytes) -> list[list[bytes]]:
    """The whole buffer, byte by byte, and a few fixed cut sizes."""
    out = [[data], [data[i : i + 1] for i in range(len(data))]]
    for size in (2, 3, 5, 7, 64):
        out.append([data[i : i + size] for i in range(0, len(data), size)])
    return out


def message(body: bytes, **kwargs: int) -> list[Event]:
    return run([b"DATA\r\n" + body + b"\r\n.\r\nNOOP\r\n"], **kwargs)


def reply_of(event: Event) -> Reply:
    assert isinstance(event, LineError | MessageRejected), event
    return event.reply


# Command framing

PIPELINE = b"EHLO client.test\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
PIPELINE_EVENTS = [
    CommandLine("EHLO client.test"),
    CommandLine("MAIL FROM:<a@b.example>"),
    CommandLine("RCPT TO:<c@d.example>"),
    CommandLine("DATA"),
]


@pytest.mark.parametrize("chunks", splits(PIPELINE + b"line one\r\n..dot\r\n.\r\nQUIT\r\n"))
def test_framing_survives_any_split(chunks: list[bytes]) -> None:
    assert run(chunks) == [
        *PIPELINE_EVENTS,
        MessageBody(b"line one\r\n.dot\r\n"),
        CommandLine("QUIT"),
    ]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"NOOP\nNOOP\r\n", "5.5.2"),
        (b"NO\rOP\r\n", "5.5.2"),
        (b"NO\0OP\r\n", "5.5.2"),
        (b"NOOP \xff\xfe\r\n", "5.5.2"),
    ],
)
def test_bad_command_lines_are_refused(line: bytes, code: str) -> None:
    events = run([line + b"RSET\r\n"])
    assert reply_of(events[0]).code == 500
    assert reply_of(events[0]).enhanced == code
    assert events[1:] == [CommandLine("RSET")]


def test_utf8_command_line_is_decoded() -> None:
    text = "MAIL FROM:<jos\u00e9@example.com> SMTPUTF8"
    assert run([text.encode() + b"\r\n"]) == [CommandLine(text)]


@pytest.mark.parametrize("chunks", splits(b"X" * 600 + b"\r\nNOOP\r\n"))
def test_long_command_line_is_refused_once(chunks: list[bytes]) -> None:
    events = run(chunks, max_line=512)
    assert events == [LineError(Reply(500, "5.5.2", "Line too long")), CommandLine("NOOP")]


@pytest.mark.parametrize(("length", "ok"), [(510, True), (511, False)])
def test_command_line_limit_counts_the_crlf(length: int, ok: bool) -> None:
    events = run([b"N" * length + b"\r\n"], max_line=512)
    assert isinstance(events[0], CommandLine) is ok


def test_discard_pending_drops_pipelined_input() -> None:
    reader = SmtpReader(max_message_bytes=MAX)
    reader.feed(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")
    assert reader.next_event() == CommandLine("STARTTLS")
    assert reader.discard_pending() == len(b"MAIL FROM:<evil@x.example>\r\n")
    assert reader.next_event() is None


# DATA framing


@pytest.mark.parametrize(
    ("sent", "body"),
    [
        (b".\r\n", b""),
        (b"\r\n.\r\n", b"\r\n"),
        (b"hello\r\n.\r\n", b"hello\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...\r\n.\r\n", b"..\r\n"),
        (b"a\r\n..b\r\n..\r\n.\r\n", b"a\r\n.b\r\n.\r\n"),
        (b".leading\r\n.\r\n", b"leading\r\n"),
        (b"x\r\n\r\n.\r\n", b"x\r\n\r\n"),
        (b"8bit \xc3\xa9\r\n.\r\n", b"8bit \xc3\xa9\r\n"),
    ],
)
def test_data_end_and_unstuffing(sent: bytes, body: bytes) -> None:
    for chunks in splits(b"DATA\r\n" + sent + b"QUIT\r\n"):
        assert run(chunks) == [CommandLine("DATA"), MessageBody(body), CommandLine("QUIT")]


SMUGGLING = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r"]


@pytest.mark.parametrize("fake_end", SMUGGLING)
def test_smuggled_end_does_not_end_data(fake_end: bytes) -> None:
    sent = b"DATA\r\nhello" + fake_end + b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@y.example>\r\n"
    for chunks in splits(sent):
        assert run(chunks) == [CommandLine("DATA")]
    events = run([sent + b"more\r\n.\r\nQUIT\r\n"])
    assert events[1] == MessageRejected(
        Reply(550, "5.6.0", "Bare LF/CR/NUL not allowed, see RFC 5321 2.3.8")
    )
    assert events[2:] == [CommandLine("QUIT")]


@pytest.mark.parametrize(
    "body",
    [b"bare\nlf", b"bare\rcr", b"nul\0here", b"cr at end\r", b"\nfirst", b"two\r\r\nlines"],
)
def test_bare_newline_or_nul_is_rejected_after_the_end(body: bytes) -> None:
    events = message(body)
    assert reply_of(events[1]).code == 550
    assert reply_of(events[1]).enhanced == "5.6.0"
    assert events[2:] == [CommandLine("NOOP")]


@pytest.mark.parametrize(("length", "ok"), [(998, True), (999, False)])
def test_body_line_limit(length: int, ok: bool) -> None:
    events = message(b"short\r\n" + b"x" * length + b"\r\nshort", max_bytes=10_000)
    if ok:
        assert isinstance(events[1], MessageBody)
    else:
        assert reply_of(events[1]) == Reply(
            550, "5.5.2", "Message line longer than 998 octets, see RFC 5321 4.5.3.1.6"
        )
    assert events[2:] == [CommandLine("NOOP")]


@pytest.mark.parametrize(("extra", "ok"), [(0, True), (1, False), (40 * MAX, False)])
def test_size_limit_counts_the_unstuffed_body(extra: int, ok: bool) -> None:
    lines = [b"." + b"x" * 97 + b"\r\n"] * 9 + [b"." + b"x" * (97 + extra) + b"\r\n"]
    unstuffed = b"".join(lines)
    assert len(unstuffed) == MAX + extra
    sent = b"DATA\r\n" + b"".join(b"." + line for line in lines) + b".\r\nNOOP\r\n"
    for chunks in splits(sent):
        events = run(chunks, max_line=100_000)
        if ok:
            assert events[1] == MessageBody(unstuffed)
        else:
            assert reply_of(events[1]) == Reply(
                552, "5.3.4", "Message size exceeds fixed maximum message size"
            )
        assert events[2:] == [CommandLine("NOOP")]


def test_oversize_body_is_drained_without_buffering() -> None:
    reader = SmtpReader(max_message_bytes=MAX)
    reader.feed(b"DATA\r\n")
    assert reader.next_event() == CommandLine("DATA")
    reader.start_data()
    for _ in range(200):
        reader.feed(b"y" * 500 + b"\r\n")
        assert reader.next_event() is None
        assert reader.buffered < 2 * MAX
    reader.feed(b".\r\nQUIT\r\n")
    assert reply_of(reader.next_event() or CommandLine("")).code == 552
    assert reader.next_event() == CommandLine("QUIT")
    assert not reader.in_data


def test_reader_hands_out_nothing_more_than_was_fed() -> None:
    reader = SmtpReader(max_message_bytes=MAX)
    assert reader.next_event() is None
    reader.feed(b"NOOP\r")
    assert reader.next_event() is None
    reader.feed(b"\n")
    assert reader.next_event() == CommandLine("NOOP")
    assert reader.next_event() is None


# Command parsing


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("ehlo client.test", ("EHLO", "client.test")),
        ("MAIL FROM:<a@b.example>  ", ("MAIL", "FROM:<a@b.example>")),
        ("QUIT", ("QUIT", "")),
        ("AUTH PLAIN AGFsaWNlAHM=", ("AUTH", "PLAIN AGFsaWNlAHM=")),
        ("", ("", "")),
    ],
)
def test_parse_command(line: str, parsed: tuple[str, str]) -> None:
    assert parse_command(line) == parsed


@pytest.mark.parametrize(
    ("arg", "keyword", "address", "params"),
    [
        ("FROM:<>", "FROM", "", {}),
        ("FROM:<a@b.example>", "FROM", "a@b.example", {}),
        ("from: <a@b.example>", "FROM", "a@b.example", {}),
        ('FROM:<"john doe"@b.example>', "FROM", '"john doe"@b.example', {}),
        ('FROM:<"a>b\\"c"@b.example>', "FROM", '"a>b\\"c"@b.example', {}),
        ("TO:<user%other@x.example>", "TO", "user%other@x.example", {}),
        ("TO:<Postmaster>", "TO", "Postmaster", {}),
        ("TO:<a.b+tag@[192.0.2.1]>", "TO", "a.b+tag@[192.0.2.1]", {}),
        ("TO:<a@[IPv6:2001:db8::1]>", "TO", "a@[IPv6:2001:db8::1]", {}),
        ("TO:<a@localhost>", "TO", "a@localhost", {}),
        (f"TO:<a@x-{'l' * 61}.b-c.example>", "TO", f"a@x-{'l' * 61}.b-c.example", {}),
        ("FROM:<a@b.example> SIZE=1000", "FROM", "a@b.example", {"SIZE": "1000"}),
        ("FROM:<a@b.example> body=8bitmime", "FROM", "a@b.example", {"BODY": "8BITMIME"}),
        ("FROM:<a@b.example> BODY=7BIT", "FROM", "a@b.example", {"BODY": "7BIT"}),
        (
            "FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8",
            "FROM",
            "j\u00f6rg@b\u00fccher.example",
            {"SMTPUTF8": ""},
        ),
    ],
)
def test_parse_path_accepts(arg: str, keyword: str, address: str, params: dict[str, str]) -> None:
    assert parse_path(arg, keyword) == (address, params)


def test_rcpt_may_use_utf8_when_the_transaction_does() -> None:
    assert parse_path("TO:<\u00e9@b.example>", "TO", smtputf8=True) == ("\u00e9@b.example", {})


@pytest.mark.parametrize(
    ("arg", "keyword", "code", "enhanced"),
    [
        ("<a@b.example>", "FROM", 501, "5.5.4"),
        ("TO:<a@b.example>", "FROM", 501, "5.5.4"),
        ("FROM:a@b.example", "FROM", 501, "5.1.7"),
        ("FROM:<a@b.example", "FROM", 501, "5.1.7"),
        ("FROM:<@relay.example:a@b.example>", "FROM", 501, "5.1.7"),
        ("TO:<@r1.example,@r2.example:a@b.example>", "TO", 501, "5.1.3"),
        ("TO:<>", "TO", 501, "5.1.3"),
        ("TO:<a>", "TO", 501, "5.1.3"),
        ("TO:<a@>", "TO", 501, "5.1.3"),
        ("TO:<@b.example>", "TO", 501, "5.1.3"),
        ("TO:<a..b@c.example>", "TO", 501, "5.1.3"),
        ("TO:<.a@c.example>", "TO", 501, "5.1.3"),
        ("TO:<a b@c.example>", "TO", 501, "5.1.3"),
        ("TO:<a@b@c.example>", "TO", 501, "5.1.3"),
        ('TO:<"unterminated@c.example>', "TO", 501, "5.1.3"),
        ('TO:<"q"x@c.example>', "TO", 501, "5.1.3"),
        ("TO:<a@-bad.example>", "TO", 501, "5.1.3"),
        ("TO:<a@bad-.example>", "TO", 501, "5.1.3"),
        ("TO:<a@b..example>", "TO", 501, "5.1.3"),
        ("TO:<a@b.example.>", "TO", 501, "5.1.3"),
        ("TO:<a@.b.example>", "TO", 501, "5.1.3"),
        ("TO:<a@b.example\t>", "TO", 501, "5.1.3"),
        ("TO:<a@under_score.example>", "TO", 501, "5.1.3"),
        ("TO:<a@[300.1.1.1]>", "TO", 501, "5.1.3"),
        ("TO:<a@[IPv6:zz::1]>", "TO", 501, "5.1.3"),
        (f"TO:<{'l' * 65}@b.example>", "TO", 501, "5.1.3"),
        (f"TO:<a@{'l' * 64}.example>", "TO", 501, "5.1.3"),
        (f"TO:<a@{'.'.join(['l' * 60] * 5)}>", "TO", 501, "5.1.3"),
        ("TO:<\u00e9@b.example>", "TO", 553, "5.6.7"),
        ("FROM:<a@b\u00fccher.example>", "FROM", 553, "5.6.7"),
        ("FROM:<a@b.example>SIZE=1", "FROM", 501, "5.5.4"),
        ("FROM:<a@b.example> SIZE=big", "FROM", 501, "5.5.4"),
        ("FROM:<a@b.example> SIZE=", "FROM", 501, "5.5.4"),
        ("FROM:<a@b.example> BODY=BINARYMIME", "FROM", 501, "5.5.4"),
        ("FROM:<a@b.example> SMTPUTF8=yes", "FROM", 501, "5.5.4"),
        ("FROM:<a@b.example> SIZE=1 SIZE=2", "FROM", 501, "5.5.4"),
        ("FROM:<a@b.example> RET=HDRS", "FROM", 555, "5.5.4"),
        ("TO:<a@b.example> NOTIFY=NEVER", "TO", 555, "5.5.4"),
        ("TO:<a@b.example> SIZE=1", "TO", 555, "5.5.4"),
    ],
)
def test_parse_path_refuses(arg: str, keyword: str, code: int, enhanced: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_path(arg, keyword)
    assert (caught.value.reply.code, caught.value.reply.enhanced) == (code, enhanced)
