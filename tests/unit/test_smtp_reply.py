"""The SMTP vocabulary (engine.smtp.reply): enhanced codes, replies, stages."""

from __future__ import annotations

import pytest

from engine.smtp.reply import (
    EnhancedCode,
    Reply,
    Stage,
    find_enhanced_code,
    find_reply_code,
    parse_enhanced_code,
    split_enhanced_code,
    unfold_quoted_reply,
)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("5.7.1", EnhancedCode(5, 7, 1)),
        ("2.0.0", EnhancedCode(2, 0, 0)),
        ("4.4.2", EnhancedCode(4, 4, 2)),
        ("5.123.999", EnhancedCode(5, 123, 999)),
        ("  4.7.0\t", EnhancedCode(4, 7, 0)),
        ("3.1.1", None),
        ("1.0.0", None),
        ("5.1234.1", None),
        ("5.1.1234", None),
        ("5.1", None),
        ("5.1.1.1", None),
        ("5.1.1 text", None),
        ("5..1", None),
        ("x.y.z", None),
        ("", None),
        ("550", None),
    ],
)
def test_parse_enhanced_code(text: str, parsed: EnhancedCode | None) -> None:
    assert parse_enhanced_code(text) == parsed


@pytest.mark.parametrize(
    ("line", "code", "rest"),
    [
        ("5.1.1 user unknown", EnhancedCode(5, 1, 1), "user unknown"),
        ("5.1.1", EnhancedCode(5, 1, 1), ""),
        ("4.2.2   mailbox full", EnhancedCode(4, 2, 2), "mailbox full"),
        ("2.0.0\tok", EnhancedCode(2, 0, 0), "ok"),
        ("3.0.0 odd", None, "3.0.0 odd"),
        ("5.1234.1 too long", None, "5.1234.1 too long"),
        ("5.1.1234 too long", None, "5.1.1234 too long"),
        ("5.1.1: no space", None, "5.1.1: no space"),
        (" 5.1.1 indented", None, " 5.1.1 indented"),
        ("mx.example.com ESMTP", None, "mx.example.com ESMTP"),
        ("", None, ""),
    ],
)
def test_split_enhanced_code(line: str, code: EnhancedCode | None, rest: str) -> None:
    assert split_enhanced_code(line) == (code, rest)


def test_enhanced_code_prints_as_written() -> None:
    assert str(EnhancedCode(5, 7, 1)) == "5.7.1"


@pytest.mark.parametrize(
    ("reply", "wire", "line"),
    [
        (Reply(250, "2.1.0", "Sender ok"), b"250 2.1.0 Sender ok\r\n", "250 2.1.0 Sender ok"),
        (Reply(220, "", "mx ESMTP"), b"220 mx ESMTP\r\n", "220 mx ESMTP"),
        (Reply(250, "", "mx\nPIPELINING"), b"250-mx\r\n250 PIPELINING\r\n", "250 mx\nPIPELINING"),
        (
            Reply(550, "5.1.1", "no such user", stage=Stage.RCPT),
            b"550 5.1.1 no such user\r\n",
            "550 5.1.1 no such user",
        ),
    ],
)
def test_reply_wire_bytes_and_line(reply: Reply, wire: bytes, line: str) -> None:
    assert reply.encode() == wire
    assert reply.encode() is reply.encode()
    assert str(reply) == line


def test_stage_is_part_of_the_value_but_not_of_the_wire() -> None:
    plain = Reply(451, "4.4.2", "connection dropped")
    staged = Reply(451, "4.4.2", "connection dropped", stage=Stage.DOT)
    assert plain.stage is None and staged.stage is Stage.DOT
    assert plain != staged
    assert plain.encode() == staged.encode()


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(550, "5.7.1", "refused"), EnhancedCode(5, 7, 1)),
        (Reply(421, "", "closing"), None),
    ],
)
def test_reply_enhanced_code(reply: Reply, code: EnhancedCode | None) -> None:
    assert reply.enhanced_code == code


@pytest.mark.parametrize(
    ("stage", "command"),
    [
        (Stage.DNS, "DNS"),
        (Stage.CONNECT, "connect"),
        (Stage.GREETING, "connect"),
        (Stage.EHLO, "EHLO"),
        (Stage.STARTTLS, "STARTTLS"),
        (Stage.MAIL, "MAIL FROM"),
        (Stage.RCPT, "RCPT TO"),
        (Stage.DATA, "DATA"),
        (Stage.DOT, "DATA"),
        (Stage.RSET, "RSET"),
    ],
)
def test_stage_names_its_command_as_records_do(stage: Stage, command: str) -> None:
    assert stage.command == command


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("host mx.example.com said: 550 5.1.1 no such user", (550, 26)),
        ("550-5.1.1 The email account", (550, 0)),
        ("554: delivery error: dd", (554, 0)),
        ("smtp;550 5.1.1 User unknown", (550, 5)),
        ("421", (421, 0)),
        ("203.0.113.250 does not like recipient", None),
        ("exceeds 5500 bytes", None),
        ("550:x", None),
        ("no code here", None),
    ],
)
def test_find_reply_code(text: str, found: tuple[int, int] | None) -> None:
    assert find_reply_code(text) == found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Sorry, no mailbox here by that name. (#5.1.1)", EnhancedCode(5, 1, 1)),
        ("<mx.example.com #5.7.606 smtp;550 5.7.606 banned>", EnhancedCode(5, 7, 606)),
        ("451 4.7.650 rate limited", EnhancedCode(4, 7, 650)),
        ("version 1.5.1.1 and 10.4.4.1", None),
        ("host 192.0.2.1", None),
    ],
)
def test_find_enhanced_code(text: str, found: EnhancedCode | None) -> None:
    assert find_enhanced_code(text) == found


@pytest.mark.parametrize(
    ("text", "unfolded"),
    [
        (
            "550-5.1.1 The account 550-5.1.1 does not exist. 550 5.1.1 https://x - gsmtp",
            "550 5.1.1 The account does not exist. https://x - gsmtp",
        ),
        ("452-4.2.2 over 452 4.2.2 quota", "452 4.2.2 over quota"),
        ("550 5.1.1 exceeds 552 MB", "550 5.1.1 exceeds 552 MB"),
        ("User unknown", "User unknown"),
    ],
)
def test_unfold_quoted_reply(text: str, unfolded: str) -> None:
    assert unfold_quoted_reply(text) == unfolded
