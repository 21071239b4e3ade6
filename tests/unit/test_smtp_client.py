"""The SMTP client's dialogue (engine.smtp.client), without sockets.

Each scenario is a transcript: ``S:`` what the server sends (``|`` separates
replies sent in one segment), ``C:`` what the client writes (``|`` separates
commands written together), ``E:`` the event the client hands out, ``A:`` an
action of the adapter (``mail FROM TO``, ``tls``, ``quit``, ``timeout``,
``lost``, ``tls-failed``).
"""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.smtp.client import (
    Broken,
    Capabilities,
    ClientDialogue,
    Event,
    Ready,
    Refused,
    StartTls,
    TransactionResult,
    stuff,
)
from engine.smtp.reply import Reply, Stage

BODY = b"Subject: hi\r\n\r\nhello\r\n"
GREET = "S: 220 mx.test ESMTP\nC: EHLO client.test\n"
ESMTP = GREET + "S: 250-mx.test | 250-PIPELINING | 250 8BITMIME\nE: Ready\n"
PLAIN = GREET + "S: 250 mx.test\nE: Ready\n"
GROUP = "C: MAIL FROM:<a@s.test> | RCPT TO:<b@r.test> | DATA\n"


def describe(event: Event | None) -> str:
    if event is None:
        return "none"
    if isinstance(event, Ready | StartTls):
        return type(event).__name__
    name = {Refused: "Refused", TransactionResult: "Result", Broken: "Broken"}[type(event)]
    enhanced = f" {event.reply.enhanced}" if event.reply.enhanced else ""
    return f"{name} {event.reply.code}{enhanced} {event.stage}"


class Player:
    """Plays a transcript against a dialogue, checking what it writes and hands out."""

    def __init__(self, dialogue: ClientDialogue, data: bytes = BODY) -> None:
        self.dialogue = dialogue
        self.data = data
        self.events: deque[Event] = deque()
        self.sent = b""
        self.ended: Event | None = None

    def pump(self) -> None:
        while (event := self.dialogue.next_event()) is not None:
            self.events.append(event)
        self.sent += b"".join(self.dialogue.data_to_send())

    def act(self, action: str) -> None:
        verb, *args = action.split()
        dialogue = self.dialogue
        if verb == "mail":
            dialogue.send_mail(args[0], args[1], self.data)
        elif verb == "tls":
            dialogue.tls_established()
        elif verb == "quit":
            dialogue.quit()
        elif verb == "timeout":
            self.events.append(dialogue.timed_out(2))
        elif verb == "lost":
            self.events.append(dialogue.connection_lost("reset"))
        elif verb == "tls-failed":
            self.events.append(dialogue.tls_failed("bad record"))
        else:
            raise AssertionError(f"unknown action {verb}")

    def play(self, transcript: str) -> None:
        for line in transcript.strip().splitlines():
            who, _, what = line.strip().partition(" ")
            if who == "S:":
                self.dialogue.receive(
                    b"".join(f"{r.strip()}\r\n".encode() for r in what.split("|"))
                )
            elif who == "A:":
                self.act(what)
            elif who == "C:":
                expected = b"".join(f"{c.strip()}\r\n".encode() for c in what.split("|"))
                self.pump()
                assert self.sent[: len(expected)] == expected, line
                self.sent = self.sent[len(expected) :]
                continue
            elif who == "E:":
                self.pump()
                assert self.events, f"no event for {line!r}"
                assert describe(self.events.popleft()) == what, line
                continue
            else:
                raise AssertionError(f"bad transcript line {line!r}")
            self.pump()
        self.pump()
        assert not self.events, list(self.events)
        assert self.sent == b"", self.sent


def play(
    transcript: str, *, starttls: bool = False, require_tls: bool = False, data: bytes = BODY
) -> ClientDialogue:
    dialogue = ClientDialogue("client.test", starttls=starttls, require_tls=require_tls)
    Player(dialogue, data).play(transcript)
    return dialogue


# Opening the session

OPENINGS = {
    "greeting refused": ("S: 554 5.7.1 go away\nE: Refused 554 5.7.1 greeting", "closed"),
    "greeting in two segments": (
        "S: 220-mx.test\nS: 220 ESMTP\nC: EHLO client.test\nS: 250 mx.test\nE: Ready",
        "ready",
    ),
    "EHLO refused, HELO": (
        GREET + "S: 502 5.5.1 no\nC: HELO client.test\nS: 250 hi\nE: Ready",
        "ready",
    ),
    "EHLO refused, HELO refused": (
        GREET + "S: 500 no\nC: HELO client.test\nS: 550 no\nE: Refused 550 helo",
        "closed",
    ),
    "EHLO 521": (GREET + "S: 521 5.3.2 no mail here\nE: Refused 521 5.3.2 ehlo", "closed"),
    "EHLO 421": (GREET + "S: 421 4.3.2 busy\nE: Refused 421 4.3.2 ehlo", "closed"),
    "EHLO 4xx": (GREET + "S: 451 later\nE: Refused 451 ehlo", "closed"),
    "timeout at the greeting": ("A: timeout\nE: Broken 451 4.4.2 greeting", "closed"),
    "dropped at EHLO": (GREET + "A: lost\nE: Broken 451 4.4.2 ehlo", "closed"),
    "garbage greeting": ("S: HELLO\nE: Broken 451 4.5.0 greeting", "closed"),
}


@pytest.mark.parametrize(("transcript", "state"), OPENINGS.values(), ids=OPENINGS)
def test_opening(transcript: str, state: str) -> None:
    dialogue = play(transcript)
    assert (dialogue.ready, dialogue.closed) == (state == "ready", state == "closed")


TLS = GREET + "S: 250-mx.test | 250-STARTTLS | 250 PIPELINING\n"
TLS_OPENINGS = {
    "secured": (
        TLS + "C: STARTTLS\nS: 220 go\nE: StartTls\nA: tls\nC: EHLO client.test\n"
        "S: 250-mx.test | 250 PIPELINING\nE: Ready",
        False,
        "ready",
    ),
    "secured, then EHLO refused": (
        TLS + "C: STARTTLS\nS: 220 go\nE: StartTls\nA: tls\nC: EHLO client.test\n"
        "S: 421 bye\nE: Refused 421 ehlo",
        False,
        "closed",
    ),
    "refused, goes on in clear": (TLS + "C: STARTTLS\nS: 454 4.7.0 no\nE: Ready", False, "ready"),
    "refused with 421": (
        TLS + "C: STARTTLS\nS: 421 4.7.0 no\nE: Refused 421 4.7.0 starttls",
        False,
        "closed",
    ),
    "refused, required": (
        TLS + "C: STARTTLS\nS: 454 4.7.0 no\nE: Refused 454 4.7.0 starttls",
        True,
        "closed",
    ),
    "not offered, required": (
        GREET + "S: 250 mx.test\nE: Refused 451 4.7.10 starttls",
        True,
        "closed",
    ),
    "HELO only, required": (
        GREET + "S: 502 no\nC: HELO client.test\nS: 250 hi\nE: Refused 451 4.7.10 starttls",
        True,
        "closed",
    ),
    "handshake failed": (
        TLS + "C: STARTTLS\nS: 220 go\nE: StartTls\nA: tls-failed\nE: Broken 451 4.7.5 starttls",
        False,
        "closed",
    ),
    "dropped after STARTTLS": (
        TLS + "C: STARTTLS\nA: lost\nE: Broken 451 4.4.2 starttls",
        False,
        "closed",
    ),
}


@pytest.mark.parametrize(
    ("transcript", "required", "state"), TLS_OPENINGS.values(), ids=TLS_OPENINGS
)
def test_opening_with_starttls(transcript: str, required: bool, state: str) -> None:
    dialogue = play(transcript, starttls=True, require_tls=required)
    assert (dialogue.ready, dialogue.closed) == (state == "ready", state == "closed")


def test_starttls_not_sent_unless_asked() -> None:
    dialogue = play(TLS + "E: Ready")
    assert dialogue.capabilities.starttls
    assert not dialogue.tls


def test_replies_injected_before_the_handshake_are_discarded() -> None:
    dialogue = ClientDialogue("client.test", starttls=True)
    player = Player(dialogue)
    player.play(TLS + "C: STARTTLS\nS: 220 go | 250-injected | 250 PIPELINING\nE: StartTls")
    dialogue.receive(b"250 injected while the handshake runs\r\n")
    player.play("A: tls\nC: EHLO client.test\nS: 250 mx.test\nE: Ready")
    assert dialogue.tls
    assert not dialogue.capabilities.pipelining, "capabilities come from the EHLO after TLS"


def test_securing_lasts_until_the_ehlo_after_the_handshake() -> None:
    dialogue = ClientDialogue("client.test", starttls=True)
    player = Player(dialogue)
    player.play(TLS + "C: STARTTLS")
    assert dialogue.securing
    player.play("S: 220 go\nE: StartTls\nA: tls\nC: EHLO client.test")
    assert dialogue.securing
    player.play("S: 250 mx.test\nE: Ready")
    assert not dialogue.securing


# Transactions

TRANSACTIONS = {
    "pipelined": (
        ESMTP + "A: mail a@s.test b@r.test\n" + GROUP + "S: 250 2.1.0 ok | 250 2.1.5 ok | 354 go\n"
        "C: Subject: hi | | hello | .\nS: 250 2.0.0 queued\nE: Result 250 2.0.0 dot",
        "ready",
    ),
    "pipelined, replies one by one": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok\nS: 250 ok\nS: 354 go\nC: Subject: hi | | hello | .\n"
        "S: 250 queued\nE: Result 250 dot",
        "ready",
    ),
    "one at a time": (
        PLAIN + "A: mail a@s.test b@r.test\nC: MAIL FROM:<a@s.test>\nS: 250 ok\n"
        "C: RCPT TO:<b@r.test>\nS: 251 forwarded\nC: DATA\nS: 354 go\n"
        "C: Subject: hi | | hello | .\nS: 250 queued\nE: Result 250 dot",
        "ready",
    ),
    "MAIL refused, one at a time": (
        PLAIN + "A: mail a@s.test b@r.test\nC: MAIL FROM:<a@s.test>\nS: 550 5.7.1 no\n"
        "C: RSET\nS: 250 ok\nE: Result 550 5.7.1 mail",
        "ready",
    ),
    "RCPT refused, pipelined": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 550 5.1.1 no such user | 554 5.5.1 no valid recipients\n"
        "C: RSET\nS: 250 ok\nE: Result 550 5.1.1 rcpt",
        "ready",
    ),
    "RCPT refused but DATA 354": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 450 4.2.0 later | 354 go\nC: .\nS: 554 no recipients\n"
        "C: RSET\nS: 250 ok\nE: Result 450 4.2.0 rcpt",
        "ready",
    ),
    "RSET refused": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 550 no | 503 no | 503 no\nC: RSET\nS: 500 what\nE: Result 550 mail",
        "closed",
    ),
    "421 at RCPT": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 421 4.7.0 closing\nE: Result 421 4.7.0 rcpt",
        "closed",
    ),
    "refusal then 421": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 550 5.1.1 no | 421 closing\nE: Result 550 5.1.1 rcpt",
        "closed",
    ),
    "421 at the end of data": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 250 ok | 354 go\nC: Subject: hi | | hello | .\n"
        "S: 421 4.3.0 shutting down\nE: Result 421 4.3.0 dot",
        "closed",
    ),
    "refused at the end of data": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 250 ok | 354 go\nC: Subject: hi | | hello | .\n"
        "S: 554 5.7.1 spam\nE: Result 554 5.7.1 dot",
        "ready",
    ),
    "success where a refusal or 354 was due": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 250 ok | 250 ok\nE: Broken 451 4.5.0 data",
        "closed",
    ),
    "354 at the end of data": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 250 ok | 354 go\nC: Subject: hi | | hello | .\n"
        "S: 354 again\nE: Broken 451 4.5.0 dot",
        "closed",
    ),
    "garbage for RCPT": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | HELLO WORLD\nE: Broken 451 4.5.0 rcpt",
        "closed",
    ),
    "timeout at the end of data": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 250 ok | 354 go\nC: Subject: hi | | hello | .\n"
        "A: timeout\nE: Broken 451 4.4.2 dot",
        "closed",
    ),
    "dropped after a refusal": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 550 5.1.1 no\nA: lost\nE: Result 550 5.1.1 rcpt",
        "closed",
    ),
    "timeout of RSET": (
        PLAIN + "A: mail a@s.test b@r.test\nC: MAIL FROM:<a@s.test>\nS: 452 4.3.1 full\n"
        "C: RSET\nA: timeout\nE: Result 452 4.3.1 mail",
        "closed",
    ),
    "unsafe sender": (ESMTP + "A: mail a<b@s.test b@r.test\nE: Result 553 5.1.7 mail", "ready"),
    "unsafe recipient": (
        ESMTP + "A: mail a@s.test b\x00@r.test\nE: Result 553 5.1.3 rcpt",
        "ready",
    ),
    "non-ASCII recipient without SMTPUTF8": (
        ESMTP + "A: mail a@s.test jos\u00e9@r.test\nE: Result 553 5.6.7 rcpt",
        "ready",
    ),
    "two transactions": (
        ESMTP
        + "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 550 no | 554 no\nC: RSET\nS: 250 ok\nE: Result 550 rcpt\n"
        "A: mail a@s.test b@r.test\n"
        + GROUP
        + "S: 250 ok | 250 ok | 354 go\nC: Subject: hi | | hello | .\n"
        "S: 250 queued\nE: Result 250 dot\nA: quit\nC: QUIT",
        "closed",
    ),
}


@pytest.mark.parametrize(("transcript", "state"), TRANSACTIONS.values(), ids=TRANSACTIONS)
def test_transaction(transcript: str, state: str) -> None:
    dialogue = play(transcript)
    assert (dialogue.ready, dialogue.closed) == (state == "ready", state == "closed")


def test_the_pipelined_group_is_one_write_and_the_message_another() -> None:
    dialogue = play(ESMTP)
    dialogue.send_mail("a@s.test", "b@r.test", b".x\r\n")
    assert dialogue.data_to_send() == [b"MAIL FROM:<a@s.test>\r\nRCPT TO:<b@r.test>\r\nDATA\r\n"]
    dialogue.receive(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert dialogue.next_event() is None
    assert dialogue.data_to_send() == [b".", b".x\r\n", b".\r\n"]
    assert dialogue.awaiting is Stage.DOT


@pytest.mark.parametrize(
    ("ehlo", "sender", "recipient", "data", "mail"),
    [
        ("250 mx", "a@s.test", "b@r.test", b"x\r\n", "MAIL FROM:<a@s.test>"),
        ("250 mx", "", "b@r.test", b"x\r\n", "MAIL FROM:<>"),
        ("250-mx | 250 8BITMIME", "a@s", "b@r", b"\xc3\xa9\r\n", "MAIL FROM:<a@s> BODY=8BITMIME"),
        ("250-mx | 250 8BITMIME", "a@s", "b@r", b"ascii\r\n", "MAIL FROM:<a@s>"),
        ("250 mx", "a@s", "b@r", b"\xc3\xa9\r\n", "MAIL FROM:<a@s>"),
        ("250-mx | 250 SIZE 100", "a@s", "b@r", b"x" * 10, "MAIL FROM:<a@s> SIZE=10"),
        ("250-mx | 250 SIZE", "a@s", "b@r", b"x" * 10, "MAIL FROM:<a@s> SIZE=10"),
        ("250-mx | 250 smtputf8", "\u00e9@s", "b@r", b"x", "MAIL FROM:<\u00e9@s> SMTPUTF8"),
    ],
)
def test_mail_parameters(ehlo: str, sender: str, recipient: str, data: bytes, mail: str) -> None:
    dialogue = play(GREET + f"S: {ehlo}\nE: Ready")
    dialogue.send_mail(sender, recipient, data)
    assert dialogue.data_to_send() == [f"{mail}\r\n".encode()]


def test_a_message_over_the_size_limit_is_not_sent() -> None:
    dialogue = play(GREET + "S: 250-mx | 250 SIZE 10\nE: Ready")
    dialogue.send_mail("a@s", "b@r", b"x" * 11)
    event = dialogue.next_event()
    assert isinstance(event, TransactionResult)
    assert (event.reply.code, event.reply.enhanced, event.stage) == (552, "5.3.4", Stage.MAIL)
    assert dialogue.data_to_send() == []
    assert dialogue.ready


@pytest.mark.parametrize(
    ("action", "text"),
    [
        ("timeout", "timed out waiting for the reply to RCPT TO after 2 s"),
        ("lost", "connection dropped: reset"),
    ],
)
def test_local_failure_texts(action: str, text: str) -> None:
    dialogue = play(PLAIN + "A: mail a@s b@r\nC: MAIL FROM:<a@s>\nS: 250 ok\nC: RCPT TO:<b@r>")
    player = Player(dialogue)
    player.act(action)
    event = player.events.popleft()
    assert isinstance(event, Broken)
    assert event.reply == Reply(451, "4.4.2", text)
    assert event.stage is Stage.RCPT


def test_a_reply_while_idle_breaks_the_next_transaction() -> None:
    dialogue = play(ESMTP)
    dialogue.receive(b"421 4.4.2 idle too long\r\n")
    assert not dialogue.ready
    dialogue.send_mail("a@s.test", "b@r.test", BODY)
    event = dialogue.next_event()
    assert isinstance(event, Broken)
    assert (event.reply.code, event.stage) == (451, Stage.MAIL)
    assert dialogue.data_to_send() == []
    assert dialogue.closed


def test_quit_only_when_in_step() -> None:
    dialogue = play(ESMTP + "A: mail a@s b@r\n" + "C: MAIL FROM:<a@s> | RCPT TO:<b@r> | DATA")
    assert not dialogue.quit()
    assert dialogue.data_to_send() == []
    assert dialogue.closed


def test_awaiting_and_replies_say_when_a_new_deadline_starts() -> None:
    dialogue = play(ESMTP + "A: mail a@s b@r\n" + "C: MAIL FROM:<a@s> | RCPT TO:<b@r> | DATA")
    assert (dialogue.awaiting, dialogue.replies) == (Stage.MAIL, 2)
    dialogue.receive(b"250 ok\r\n250 o")
    assert dialogue.next_event() is None
    assert (dialogue.awaiting, dialogue.replies) == (Stage.RCPT, 3)


def test_no_transaction_while_one_runs() -> None:
    dialogue = play(ESMTP + "A: mail a@s b@r\n" + "C: MAIL FROM:<a@s> | RCPT TO:<b@r> | DATA")
    with pytest.raises(RuntimeError):
        dialogue.send_mail("a@s", "b@r", BODY)


@pytest.mark.parametrize(
    ("text", "keywords", "size"),
    [
        ("mx.test", {}, None),
        ("mx.test\nPIPELINING\nSIZE 35882577\nSTARTTLS", None, 35882577),
        ("mx.test\nsize", None, 0),
        ("mx.test\nSIZE unlimited", None, 0),
        ("mx.test\nAUTH PLAIN LOGIN\n  8bitmime  ", {"auth": "PLAIN LOGIN", "8bitmime": ""}, None),
    ],
)
def test_capabilities(text: str, keywords: dict[str, str] | None, size: int | None) -> None:
    capabilities = Capabilities.from_ehlo(Reply(250, "", text))
    if keywords is not None:
        assert dict(capabilities.keywords) == keywords
    assert capabilities.size == size


def test_capability_flags() -> None:
    text = "mx\nPIPELINING\nSTARTTLS\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES"
    capabilities = Capabilities.from_ehlo(Reply(250, "", text))
    assert capabilities.pipelining and capabilities.starttls
    assert capabilities.eight_bit_mime and capabilities.smtputf8
    assert not Capabilities().pipelining


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", b".\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b".a\r\n.\r\n", b"..a\r\n..\r\n.\r\n"),
        (b"a\r\n..b\r\n", b"a\r\n...b\r\n.\r\n"),
    ],
)
def test_stuff(data: bytes, expected: bytes) -> None:
    assert b"".join(stuff(data)) == expected


# Properties

SERVER_LINES = [
    b"220 mx\r\n",
    b"250 ok\r\n",
    b"250-mx\r\n",
    b"250-PIPELINING\r\n",
    b"250-STARTTLS\r\n",
    b"251 ok\r\n",
    b"354 go\r\n",
    b"421 bye\r\n",
    b"451 later\r\n",
    b"502 no\r\n",
    b"550 no\r\n",
    b"220 go\r\n",
    b"garbage\r\n",
    b"\r\n",
]
ACTIONS = ["mail", "tls", "quit", "timeout", "lost", "tls-failed"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(ACTIONS),
            st.lists(st.sampled_from(SERVER_LINES), min_size=1, max_size=4).map(b"".join),
        ),
        max_size=30,
    ),
    st.booleans(),
)
def test_any_conversation_ends_in_events_never_exceptions(
    steps: list[str | bytes], starttls: bool
) -> None:
    """Whatever the server sends, no exception escapes and the dialogue never hangs:
    it is closed, ready, waiting for a reply, or waiting for the handshake it asked
    for. A transaction ends in exactly one result; once closed, nothing is sent."""
    dialogue = ClientDialogue("client.test", starttls=starttls)
    in_transaction = handshake_due = False
    for step in steps:
        was_closed = dialogue.closed
        events: list[Event] = []
        if isinstance(step, bytes):
            dialogue.receive(step)
        elif step == "mail" and dialogue.ready:
            dialogue.send_mail("a@s", "b@r", BODY)
            in_transaction = True
        elif step == "tls" and handshake_due:
            dialogue.tls_established()
            handshake_due = False
        elif step == "quit" and not in_transaction:
            dialogue.quit()
        elif step == "timeout" and dialogue.awaiting is not None:
            events.append(dialogue.timed_out(1))
        elif step == "lost" and not was_closed:
            events.append(dialogue.connection_lost())
        elif step == "tls-failed" and handshake_due:
            events.append(dialogue.tls_failed("x"))
            handshake_due = False
        while (event := dialogue.next_event()) is not None:
            events.append(event)
        sent = dialogue.data_to_send()
        if was_closed:
            assert not events and not sent
        for event in events:
            if isinstance(event, TransactionResult):
                assert in_transaction, event
                in_transaction = False
            elif isinstance(event, Broken):
                in_transaction = False
            elif isinstance(event, StartTls):
                handshake_due = True
        if dialogue.closed:
            assert not in_transaction
            handshake_due = False
        else:
            waiting = dialogue.awaiting is not None
            assert dialogue.ready or waiting or handshake_due, (step, events)
