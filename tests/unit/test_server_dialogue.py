"""The pure SMTP server dialogue (engine.smtp.server_dialogue), without sockets.

A scripted handler answers the dialogue's questions as the integration tests'
handler does; ``Talk`` performs the actions the way the listener does, with
no I/O, and keeps what was sent, asked and reported.
"""

from __future__ import annotations

import base64
import itertools
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.smtp.handler import Session
from engine.smtp.reply import Reply
from engine.smtp.server_config import ServerConfig
from engine.smtp.server_dialogue import (
    Ask,
    AskAuth,
    AskConnect,
    AskData,
    AskMail,
    AskRcpt,
    Awaiting,
    Close,
    NeedInput,
    Phase,
    Report,
    ServerDialogue,
    StartTls,
)

USER, PASSWORD = "alice", "s3cret"
CIPHER, TLS_VERSION = "TLS_AES_256_GCM_SHA384", "TLSv1.3"


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


PLAIN_OK = b64(f"\0{USER}\0{PASSWORD}")
PLAIN_WRONG = b64(f"\0{USER}\0nope")
PLAIN_OTHER_AUTHZID = b64(f"bob\0{USER}\0{PASSWORD}")
PLAIN_NOT_UTF8 = b64(b"\0\xff\0x")
CONFIG = ServerConfig(
    hostname="mx.test",
    tls_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),  # never used: no handshake here
    auth_enabled=True,
)


class Failure(Exception):
    """A scripted answer that stands for the handler raising."""


Answer = Reply | None | type[Failure]


@dataclass
class Script:
    """Accepts alice/s3cret; refuses senders named refused@ and recipients named
    nobody@; takes every message. ``failing`` question types raise instead."""

    refuse_connect: Reply | None = None
    failing: tuple[type[Ask], ...] = ()

    def __call__(self, question: Ask) -> Answer:
        if isinstance(question, self.failing):
            return Failure
        match question:
            case AskConnect():
                return self.refuse_connect
            case AskAuth(session=session, username=username, password=password):
                if (username, password) != (USER, PASSWORD):
                    return Reply(535, "5.7.8", "Authentication credentials invalid")
                session.authenticated_as = username
                return Reply(235, "2.7.0", "Authentication successful")
            case AskMail(address=address):
                if address.startswith("refused@"):
                    return Reply(550, "5.7.1", "Sender refused")
                return Reply(250, "2.1.0", "Sender OK")
            case AskRcpt(address=address):
                if address.startswith("nobody@"):
                    return Reply(550, "5.1.1", "No such user")
                return Reply(250, "2.1.5", "Recipient OK")
            case AskData():
                return Reply(250, "2.0.0", "Queued")
        return None


MAX_ACTIONS = 10_000


@dataclass
class Talk:
    """A dialogue and what came out of it, performed without I/O."""

    dialogue: ServerDialogue
    answer: Callable[[Ask], Answer] = field(default_factory=Script)
    handshake: Callable[[], bool] = lambda: True
    sent: list[Reply] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    questions: list[Ask] = field(default_factory=list)
    waits: list[NeedInput] = field(default_factory=list)
    handshakes: list[int] = field(default_factory=list)
    """``StartTls.dropped`` of each handshake."""
    closed: bool = False

    @classmethod
    def start(
        cls,
        answer: Callable[[Ask], Answer] | None = None,
        peer: str = "192.0.2.1",
        **overrides: Any,
    ) -> Talk:
        session = Session(id="s1", peer_host=peer, peer_port=40000, local_host="", local_port=587)
        talk = cls(ServerDialogue(replace(CONFIG, **overrides), session), answer or Script())
        talk.run()
        return talk

    def run(self) -> NeedInput | Close:
        """Perform actions until the dialogue waits for input or closes."""
        for _ in range(MAX_ACTIONS):
            action = self.dialogue.next_action()
            if isinstance(action, Reply):
                assert not self.closed
                self.sent.append(action)
            elif isinstance(action, NeedInput):
                self.waits.append(action)
                return action
            elif isinstance(action, Close):
                self.closed = True
                return action
            elif isinstance(action, StartTls):
                self.handshakes.append(action.dropped)
                if self.handshake():
                    self.dialogue.tls_started(CIPHER, TLS_VERSION)
                else:
                    self.dialogue.tls_failed()
            else:
                if isinstance(action, Report):
                    assert action.reply is self.sent[-1], "a report follows its reply"
                    self.reports.append(action)
                else:
                    self.questions.append(action)
                answer = self.answer(action)
                if answer is Failure:
                    self.dialogue.handler_failed()
                else:
                    assert not isinstance(answer, type)
                    self.dialogue.answer(answer)
        raise AssertionError(f"no wait after {MAX_ACTIONS} actions")

    def feed(self, data: bytes | str) -> list[str]:
        """Give ``data`` to the dialogue; the replies it sent, as ``key``s."""
        before = len(self.sent)
        self.dialogue.receive(data.encode() if isinstance(data, str) else data)
        self.run()
        return [key(reply) for reply in self.sent[before:]]

    def lines(self, *lines: str) -> list[str]:
        """Send ``lines`` in one write (a pipelined group)."""
        return self.feed("".join(line + "\r\n" for line in lines))

    def one_by_one(self, *lines: str) -> list[str]:
        """Send ``lines`` each in its own write, after the reply to the one before."""
        return [reply for line in lines for reply in self.lines(line)]

    @property
    def reported(self) -> list[tuple[str, str, str | None, str | None]]:
        return [(r.command, key(r.reply), r.sender, r.recipient) for r in self.reports]


def key(reply: Reply) -> str:
    """``"250 2.1.0 Sender OK"``; the first line only of a multi-line reply."""
    parts = (str(reply.code), reply.enhanced, reply.text.split("\n")[0])
    return " ".join(part for part in parts if part)


# Every command in every state

STATES = {
    "before EHLO": [],
    "after EHLO": ["EHLO client.test"],
    "after STARTTLS": ["EHLO client.test", "STARTTLS"],
    "after STARTTLS and EHLO": ["EHLO client.test", "STARTTLS", "EHLO client.test"],
    "authenticated": ["EHLO client.test", "STARTTLS", "EHLO client.test", f"AUTH PLAIN {PLAIN_OK}"],
    "MAIL given": [
        "EHLO client.test",
        "STARTTLS",
        "EHLO client.test",
        f"AUTH PLAIN {PLAIN_OK}",
        "MAIL FROM:<a@x.example>",
    ],
    "RCPT given": [
        "EHLO client.test",
        "STARTTLS",
        "EHLO client.test",
        f"AUTH PLAIN {PLAIN_OK}",
        "MAIL FROM:<a@x.example>",
        "RCPT TO:<b@y.example>",
    ],
    "in DATA": [
        "EHLO client.test",
        "STARTTLS",
        "EHLO client.test",
        f"AUTH PLAIN {PLAIN_OK}",
        "MAIL FROM:<a@x.example>",
        "RCPT TO:<b@y.example>",
        "DATA",
    ],
    "in AUTH continuation": ["EHLO client.test", "STARTTLS", "EHLO client.test", "AUTH LOGIN"],
}

EHLO = "250 mx.test"
OK = "250 2.0.0 OK"
BYE = "221 2.0.0 mx.test closing connection"
READY = "220 2.0.0 Ready to start TLS"
TLS_ACTIVE = "503 5.5.1 TLS already active"
SEND_EHLO = "503 5.5.1 Send EHLO first"
SEND_HELO = "503 5.5.1 Send HELO/EHLO first"
ALREADY = "503 5.5.1 Already authenticated"
NEED_TLS = "538 5.7.11 Encryption required for requested authentication"
NEED_AUTH = "530 5.7.0 Authentication required"
NESTED = "503 5.5.1 Nested MAIL command"
NEED_MAIL = "503 5.5.1 Need MAIL command first"
UNKNOWN = "502 5.5.1 Command not recognized"
BAD_LINE = "500 5.5.2 Bare CR, LF or NUL not allowed in a command line"
BAD_B64 = "501 5.5.2 Invalid base64 data"
PASSWORD_PROMPT = "334 UGFzc3dvcmQ6"
ABSORBED = ""
"""No reply: the line is part of the DATA body."""

# Columns: the states above, in order. In AUTH continuation every line is a
# base64 response: "DATA", "NOOP", "" and the like decode, so they are the
# LOGIN username and the password prompt follows.
TABLE: dict[str, tuple[str, ...]] = {
    "EHLO client.test": (EHLO,) * 7 + (ABSORBED, BAD_B64),
    "HELO client.test": (EHLO,) * 7 + (ABSORBED, BAD_B64),
    "EHLO": ("501 5.5.4 Syntax: EHLO hostname",) * 7 + (ABSORBED, PASSWORD_PROMPT),
    "STARTTLS": (READY, READY) + (TLS_ACTIVE,) * 5 + (ABSORBED, PASSWORD_PROMPT),
    "STARTTLS now": ("501 5.5.4 Syntax: STARTTLS",) * 2 + (TLS_ACTIVE,) * 5 + (ABSORBED, BAD_B64),
    f"AUTH PLAIN {PLAIN_OK}": (
        SEND_EHLO,
        NEED_TLS,
        SEND_EHLO,
        "235 2.7.0 Authentication successful",
        ALREADY,
        ALREADY,
        ALREADY,
        ABSORBED,
        BAD_B64,
    ),
    "AUTH LOGIN": (
        SEND_EHLO,
        NEED_TLS,
        SEND_EHLO,
        "334 VXNlcm5hbWU6",
        ALREADY,
        ALREADY,
        ALREADY,
        ABSORBED,
        BAD_B64,
    ),
    "AUTH CRAM-MD5": (
        SEND_EHLO,
        NEED_TLS,
        SEND_EHLO,
        "504 5.5.4 Unrecognized authentication type",
        ALREADY,
        ALREADY,
        ALREADY,
        ABSORBED,
        BAD_B64,
    ),
    "MAIL FROM:<a@x.example>": (
        SEND_HELO,
        NEED_AUTH,
        SEND_HELO,
        NEED_AUTH,
        "250 2.1.0 Sender OK",
        NESTED,
        NESTED,
        ABSORBED,
        BAD_B64,
    ),
    "RCPT TO:<b@y.example>": (NEED_MAIL,) * 5
    + ("250 2.1.5 Recipient OK",) * 2
    + (ABSORBED, BAD_B64),
    "DATA": (NEED_MAIL,) * 5
    + ("554 5.5.1 No valid recipients", "354 End data with <CR><LF>.<CR><LF>")
    + (ABSORBED, PASSWORD_PROMPT),
    "RSET": (OK,) * 7 + (ABSORBED, PASSWORD_PROMPT),
    "NOOP": (OK,) * 7 + (ABSORBED, PASSWORD_PROMPT),
    "QUIT": (BYE,) * 7 + (ABSORBED, PASSWORD_PROMPT),
    "VRFY someone": ("252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery",)
    * 7
    + (ABSORBED, BAD_B64),
    "HELP": ("214 2.0.0 See RFC 5321",) * 7 + (ABSORBED, PASSWORD_PROMPT),
    "EXPN list": (UNKNOWN,) * 7 + (ABSORBED, BAD_B64),
    "BDAT 10 LAST": (UNKNOWN,) * 7 + (ABSORBED, BAD_B64),
    "BOGUS": (UNKNOWN,) * 7 + (ABSORBED, BAD_B64),
    "": (UNKNOWN,) * 7 + (ABSORBED, PASSWORD_PROMPT),
    "NO\nOP": (BAD_LINE,) * 7 + (ABSORBED, BAD_LINE),
}

AWAITING = {
    Phase.COMMAND: Awaiting.COMMAND,
    Phase.AUTH_RESPONSE: Awaiting.AUTH_RESPONSE,
    Phase.BODY: Awaiting.BODY,
}


def phase_after(expected: str) -> Phase:
    if expected == ABSORBED or expected.startswith("354"):
        return Phase.BODY
    if expected.startswith("334"):
        return Phase.AUTH_RESPONSE
    return Phase.CLOSED if expected == BYE else Phase.COMMAND


@pytest.mark.parametrize(
    ("state", "line", "expected"),
    [
        pytest.param(state, line, replies[column], id=f"{state}: {line!r}")
        for line, replies in TABLE.items()
        for column, state in enumerate(STATES)
    ],
)
def test_every_command_in_every_state(state: str, line: str, expected: str) -> None:
    talk = Talk.start()
    talk.one_by_one(*STATES[state])
    assert talk.reports == []
    assert talk.lines(line) == ([expected] if expected else [])
    phase = phase_after(expected)
    assert talk.dialogue.phase is phase
    refused = [reply for reply in talk.sent if reply.code >= 400]
    assert [report.reply for report in talk.reports] == refused
    for report in talk.reports:
        if state == "in AUTH continuation":
            assert report.command == "AUTH LOGIN"
        else:
            assert line.startswith(report.command)
    if phase is Phase.CLOSED:
        assert talk.closed
    else:
        # a new wait, with a new deadline, after every command; one for the whole body
        assert talk.waits[-1] == NeedInput(AWAITING[phase], starts=state != "in DATA")


# Connection


def test_greeting_after_the_handler_lets_the_client_in() -> None:
    talk = Talk.start()
    assert [key(reply) for reply in talk.sent] == ["220 mx.test ESMTP"]
    assert [type(q) for q in talk.questions] == [AskConnect]
    assert talk.waits == [NeedInput(Awaiting.COMMAND, starts=True)]
    assert talk.dialogue.awaiting_command


def test_a_refused_client_is_told_why_and_reported() -> None:
    talk = Talk.start(Script(refuse_connect=Reply(554, "5.7.1", "Go away")))
    assert [key(reply) for reply in talk.sent] == ["554 5.7.1 Go away"]
    assert talk.reported == [("", "554 5.7.1 Go away", None, None)]
    assert talk.closed and talk.dialogue.phase is Phase.CLOSED
    assert isinstance(talk.dialogue.next_action(), Close)


def test_a_failing_connect_handler_greets() -> None:
    talk = Talk.start(Script(failing=(AskConnect,)))
    assert [key(reply) for reply in talk.sent] == ["220 mx.test ESMTP"]


def test_commands_sent_before_the_greeting_are_answered_after_it() -> None:
    session = Session(id="s1", peer_host="192.0.2.1", peer_port=1, local_host="", local_port=25)
    dialogue = ServerDialogue(CONFIG, session)
    dialogue.receive(b"NOOP\r\n")
    talk = Talk(dialogue)
    talk.run()
    assert [key(reply) for reply in talk.sent] == ["220 mx.test ESMTP", OK]


def test_a_question_must_be_answered_before_the_next_action() -> None:
    talk = Talk.start(auth_enabled=False)
    dialogue = talk.dialogue
    dialogue.receive(b"EHLO c.test\r\nMAIL FROM:<a@x.example>\r\n")
    assert isinstance(dialogue.next_action(), Reply)
    with pytest.raises(RuntimeError):
        dialogue.answer(None)  # nothing is asked yet
    assert isinstance(dialogue.next_action(), AskMail)
    assert not dialogue.awaiting_command
    assert not dialogue.shutdown()
    with pytest.raises(RuntimeError):
        dialogue.next_action()
    dialogue.answer(Reply(250, "2.1.0", "Fine"))
    assert dialogue.next_action() == Reply(250, "2.1.0", "Fine")
    assert dialogue.envelope.mail_from == "a@x.example"


# Pipelining (RFC 2920)


def test_a_pipelined_group_is_answered_in_order_before_one_wait() -> None:
    talk = Talk.start(auth_enabled=False)
    talk.lines("EHLO client.test")
    waits = len(talk.waits)
    sent = talk.lines(
        "MAIL FROM:<> BODY=8BITMIME",
        "RCPT TO:<b@y.example>",
        "RCPT TO:<nobody@y.example>",
        "RCPT TO:<c@y.example>",
        "DATA",
    )
    assert sent == [
        "250 2.1.0 Sender OK",
        "250 2.1.5 Recipient OK",
        "550 5.1.1 No such user",
        "250 2.1.5 Recipient OK",
        "354 End data with <CR><LF>.<CR><LF>",
    ]
    assert talk.waits[waits:] == [NeedInput(Awaiting.BODY, starts=True)]
    assert talk.reported == [("RCPT TO:<nobody@y.example>", sent[2], "", "nobody@y.example")]
    sent = talk.feed(b"Subject: x\r\n\r\n..stuffed\r\n.\r\nMAIL FROM:<d@x.example>\r\nQUIT\r\n")
    assert sent == ["250 2.0.0 Queued", "250 2.1.0 Sender OK", BYE]
    [data] = [q for q in talk.questions if isinstance(q, AskData)]
    assert data.envelope.mail_from == ""
    assert data.envelope.rcpt_tos == ["b@y.example", "c@y.example"]
    assert data.body == b"Subject: x\r\n\r\n.stuffed\r\n"
    assert talk.closed


def test_a_group_split_anywhere_gets_the_same_replies() -> None:
    group = (
        b"EHLO c.test\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nhi\r\n.\r\n"
    )
    whole = Talk.start(auth_enabled=False)
    expected = whole.feed(group)
    for cut in range(1, len(group)):
        talk = Talk.start(auth_enabled=False)
        assert talk.feed(group[:cut]) + talk.feed(group[cut:]) == expected, cut


# Rejection records


def test_a_refused_transaction_is_reported_once_by_its_mail() -> None:
    talk = Talk.start(auth_enabled=False)
    talk.lines("EHLO client.test")
    sent = talk.lines(
        "MAIL FROM:<refused@x.example>", "RCPT TO:<b@y.example>", "RCPT TO:<c@y.example>", "DATA"
    )
    assert sent == ["550 5.7.1 Sender refused", NEED_MAIL, NEED_MAIL, NEED_MAIL]
    assert talk.reported == [
        ("MAIL FROM:<refused@x.example>", "550 5.7.1 Sender refused", "refused@x.example", None)
    ]
    # RSET ends the refused transaction: a 503 after it is reported again
    talk.reports.clear()
    assert talk.lines("RSET", "RCPT TO:<b@y.example>") == [OK, NEED_MAIL]
    assert talk.reported == [("RCPT TO:<b@y.example>", NEED_MAIL, None, None)]
    talk.reports.clear()
    sent = talk.lines(
        "MAIL FROM:<>",
        "RCPT TO:<nobody@y.example>",
        "RCPT TO:<@r.example:b@y.example>",
        "DATA",
        "RSET",
        "DATA",
    )
    assert sent == [
        "250 2.1.0 Sender OK",
        "550 5.1.1 No such user",
        "501 5.1.3 Source routes are not accepted",
        "554 5.5.1 No valid recipients",
        OK,
        NEED_MAIL,
    ]
    assert [(command, sender, rcpt) for command, _, sender, rcpt in talk.reported] == [
        ("RCPT TO:<nobody@y.example>", "", "nobody@y.example"),
        ("RCPT TO:<@r.example:b@y.example>", "", None),
        ("DATA", "", None),
        ("DATA", None, None),
    ]


def test_an_unauthenticated_mail_is_reported_with_its_sender() -> None:
    talk = Talk.start(allow_plaintext_auth_on_loopback=True, peer="127.0.0.1")
    talk.lines("EHLO client.test")
    sent = talk.lines("MAIL FROM:<a@x.example>", "RCPT TO:<b@y.example>", "DATA")
    assert sent == [NEED_AUTH, NEED_MAIL, NEED_MAIL]
    assert talk.reported == [("MAIL FROM:<a@x.example>", NEED_AUTH, "a@x.example", None)]
    assert not any(isinstance(q, AskMail) for q in talk.questions)


def test_a_refused_ehlo_does_not_forget_a_refused_mail() -> None:
    talk = Talk.start(auth_enabled=False)
    talk.lines("EHLO client.test", "MAIL FROM:<refused@x.example>")
    talk.reports.clear()
    assert talk.lines("EHLO", "RCPT TO:<b@y.example>") == [
        "501 5.5.4 Syntax: EHLO hostname",
        NEED_MAIL,
    ]
    assert [command for command, *_ in talk.reported] == ["EHLO"]


def test_the_handler_failing_is_a_451_never_a_lost_message() -> None:
    failing = (AskMail, AskRcpt, AskData, Report)
    talk = Talk.start(Script(failing=failing), auth_enabled=False)
    talk.lines("EHLO client.test")
    assert talk.lines("MAIL FROM:<a@x.example>") == ["451 4.3.0 Local error in processing"]
    assert talk.lines("RCPT TO:<b@y.example>") == [NEED_MAIL]
    assert talk.dialogue.phase is Phase.COMMAND


def test_a_handler_answering_nothing_counts_as_failing() -> None:
    def nothing(question: Ask) -> Answer:
        return Script()(question) if isinstance(question, AskConnect) else None

    talk = Talk.start(nothing, auth_enabled=False)
    talk.lines("EHLO client.test")
    assert talk.lines("MAIL FROM:<a@x.example>") == ["451 4.3.0 Local error in processing"]


def test_a_failing_data_handler_gets_451_and_ends_the_transaction() -> None:
    talk = Talk.start(Script(failing=(AskData,)), auth_enabled=False)
    talk.lines("EHLO c.test", "MAIL FROM:<a@x.example>", "RCPT TO:<b@y.example>", "DATA")
    assert talk.lines("body", ".") == ["451 4.3.0 Local error in processing"]
    assert talk.reported[-1] == ("DATA", "451 4.3.0 Local error in processing", "a@x.example", None)
    assert talk.dialogue.envelope.mail_from is None


# AUTH (RFC 4954, RFC 4616)

EHLO_OVER_TLS = ["EHLO client.test", "STARTTLS", "EHLO client.test"]
"""Sent one by one: what follows STARTTLS in one write is dropped."""
AUTH_DIALOGUES = {
    "plain initial response": [(f"AUTH PLAIN {PLAIN_OK}", "235 2.7.0 Authentication successful")],
    "plain continuation": [
        ("AUTH PLAIN", "334"),
        (PLAIN_OK, "235 2.7.0 Authentication successful"),
    ],
    "plain empty": [("AUTH PLAIN", "334"), ("=", "501 5.5.2 Malformed PLAIN response")],
    "plain without separators": [
        (f"AUTH PLAIN {b64(USER + PASSWORD)}", "501 5.5.2 Malformed PLAIN response")
    ],
    "plain wrong": [(f"AUTH PLAIN {PLAIN_WRONG}", "535 5.7.8 Authentication credentials invalid")],
    "plain foreign authzid": [
        (
            f"AUTH PLAIN {PLAIN_OTHER_AUTHZID}",
            "535 5.7.8 Authorization identity not allowed",
        )
    ],
    "plain not utf-8": [(f"AUTH PLAIN {PLAIN_NOT_UTF8}", "501 5.5.2 Credentials are not UTF-8")],
    "login prompts": [
        ("AUTH LOGIN", "334 VXNlcm5hbWU6"),
        (b64(USER), PASSWORD_PROMPT),
        (b64(PASSWORD), "235 2.7.0 Authentication successful"),
    ],
    "login initial username": [
        (f"AUTH LOGIN {b64(USER)}", PASSWORD_PROMPT),
        (b64(PASSWORD), "235 2.7.0 Authentication successful"),
    ],
    "login username not utf-8, told after the password": [
        ("AUTH LOGIN", "334 VXNlcm5hbWU6"),
        (b64(b"\xff"), PASSWORD_PROMPT),
        (b64(PASSWORD), "501 5.5.2 Credentials are not UTF-8"),
    ],
    "login cancelled": [
        ("AUTH LOGIN", "334 VXNlcm5hbWU6"),
        ("*", "501 5.0.0 Authentication cancelled"),
    ],
    "login cancelled at the password": [
        ("AUTH LOGIN", "334 VXNlcm5hbWU6"),
        (b64(USER), PASSWORD_PROMPT),
        ("*", "501 5.0.0 Authentication cancelled"),
    ],
    "cancelled in the initial response": [("AUTH PLAIN *", "501 5.0.0 Authentication cancelled")],
    "bad base64": [("AUTH PLAIN", "334"), ("not base64!", BAD_B64)],
    "bad line in a response": [("AUTH PLAIN", "334"), ("a\nb", BAD_LINE)],
    "mechanism in lower case": [(f"auth plain {PLAIN_OK}", "235 2.7.0 Authentication successful")],
    "twice": [
        (f"AUTH PLAIN {PLAIN_OK}", "235 2.7.0 Authentication successful"),
        (f"AUTH PLAIN {PLAIN_OK}", ALREADY),
    ],
}


@pytest.mark.parametrize("steps", AUTH_DIALOGUES.values(), ids=AUTH_DIALOGUES.keys())
def test_auth_dialogues(steps: list[tuple[str, str]]) -> None:
    talk = Talk.start()
    talk.one_by_one(*EHLO_OVER_TLS)
    for line, expected in steps:
        assert talk.lines(line) == [expected]
    assert talk.dialogue.phase is Phase.COMMAND
    assert talk.lines("NOOP") == [OK]
    for command, *_ in talk.reported:
        assert command.startswith("AUTH ") and len(command.split()) == 2
    assert PASSWORD not in repr(talk.reports) and PASSWORD not in repr(talk.questions)


def test_auth_responses_are_not_commands_and_get_their_own_deadline() -> None:
    talk = Talk.start(max_commands=5)
    talk.one_by_one(*EHLO_OVER_TLS)
    talk.lines("AUTH LOGIN")
    assert talk.waits[-1] == NeedInput(Awaiting.AUTH_RESPONSE, starts=True)
    talk.feed(b64(USER)[:3])
    assert talk.waits[-1] == NeedInput(Awaiting.AUTH_RESPONSE, starts=False)
    assert talk.feed(b64(USER)[3:] + "\r\n") == [PASSWORD_PROMPT]
    assert talk.waits[-1] == NeedInput(Awaiting.AUTH_RESPONSE, starts=True)
    assert not talk.dialogue.awaiting_command
    assert talk.lines(b64(PASSWORD)) == ["235 2.7.0 Authentication successful"]
    assert talk.lines("NOOP") == [OK]  # the 5th command: responses did not count
    assert talk.lines("NOOP") == ["421 4.7.0 Too many commands, closing connection"]


def test_a_failing_auth_handler_is_a_temporary_failure() -> None:
    talk = Talk.start(Script(failing=(AskAuth,)))
    talk.one_by_one(*EHLO_OVER_TLS)
    assert talk.lines(f"AUTH PLAIN {PLAIN_OK}") == ["454 4.7.0 Temporary authentication failure"]
    assert talk.dialogue.session.authenticated_as is None


def test_a_positive_auth_reply_authenticates_the_username() -> None:
    def lenient(question: Ask) -> Answer:
        if isinstance(question, AskAuth):
            return Reply(235, "2.7.0", "OK")  # without setting authenticated_as
        return Script()(question)

    talk = Talk.start(lenient)
    talk.one_by_one(*EHLO_OVER_TLS, f"AUTH PLAIN {PLAIN_OK}")
    assert talk.dialogue.session.authenticated_as == USER
    assert talk.lines("MAIL FROM:<a@x.example>") == ["250 2.1.0 Sender OK"]


def test_plaintext_auth_on_loopback_when_configured() -> None:
    talk = Talk.start(allow_plaintext_auth_on_loopback=True, peer="127.0.0.1")
    talk.lines("EHLO client.test")
    assert "AUTH PLAIN LOGIN" in talk.sent[-1].text
    assert talk.lines(f"AUTH PLAIN {PLAIN_OK}") == ["235 2.7.0 Authentication successful"]
    remote = Talk.start(allow_plaintext_auth_on_loopback=True)
    remote.lines("EHLO client.test")
    assert "AUTH" not in remote.sent[-1].text


def test_auth_not_offered() -> None:
    talk = Talk.start(auth_enabled=False)
    talk.lines("EHLO client.test")
    assert "AUTH" not in talk.sent[-1].text
    assert talk.lines(f"AUTH PLAIN {PLAIN_OK}") == ["502 5.5.1 AUTH not available"]
    assert talk.lines("MAIL FROM:<a@x.example>") == ["250 2.1.0 Sender OK"]


# EHLO keywords, STARTTLS (RFC 3207)


def keywords(reply: Reply) -> list[str]:
    return reply.text.split("\n")[1:]


def test_ehlo_keywords_before_and_after_tls() -> None:
    talk = Talk.start(max_message_bytes=5000)
    talk.lines("EHLO client.test")
    common = ["PIPELINING", "SIZE 5000", "8BITMIME", "ENHANCEDSTATUSCODES"]
    assert keywords(talk.sent[-1]) == [*common, "STARTTLS", "SMTPUTF8"]
    talk.one_by_one("STARTTLS", "EHLO client.test")
    assert keywords(talk.sent[-1]) == [*common, "AUTH PLAIN LOGIN", "SMTPUTF8"]
    assert not any("CHUNKING" in reply.text for reply in talk.sent)  # BDAT is not offered
    talk.lines("HELO client.test")
    assert talk.sent[-1].text == "mx.test"


def test_starttls_drops_what_was_pipelined_after_it() -> None:
    talk = Talk.start()
    talk.lines("EHLO client.test")
    after = b"MAIL FROM:<evil@x.example>\r\nNOOP\r\n"
    assert talk.feed(b"STARTTLS\r\n" + after) == [READY]
    assert talk.handshakes == [len(after)]
    assert talk.waits[-1] == NeedInput(Awaiting.COMMAND, starts=True)
    assert talk.lines("NOOP") == [OK]
    assert not any(isinstance(q, AskMail) for q in talk.questions)
    assert "evil" not in repr(talk.reports)


def test_octets_arriving_during_the_handshake_are_dropped() -> None:
    talk = Talk.start()
    talk.lines("EHLO client.test")
    talk.dialogue.receive(b"STARTTLS\r\n")
    assert talk.dialogue.next_action() == Reply(220, "2.0.0", "Ready to start TLS")
    assert talk.dialogue.next_action() == StartTls(0)
    talk.dialogue.receive(b"MAIL FROM:<evil@x.example>\r\n")
    with pytest.raises(RuntimeError):
        talk.dialogue.next_action()  # the handshake runs
    talk.dialogue.tls_started(CIPHER, TLS_VERSION)
    assert talk.dialogue.buffered == 0
    talk.run()
    assert talk.lines("NOOP") == [OK]


def test_starttls_forgets_ehlo_transaction_and_auth() -> None:
    talk = Talk.start(auth_enabled=False)
    talk.lines("EHLO client.test", "MAIL FROM:<a@x.example>")
    session = talk.dialogue.session
    assert talk.lines("STARTTLS") == [READY]
    assert session.ehlo_name is None and talk.dialogue.envelope.mail_from is None
    assert (session.tls_cipher, session.tls_version) == (CIPHER, TLS_VERSION)
    assert talk.dialogue.tls
    assert talk.lines("MAIL FROM:<a@x.example>") == [SEND_HELO]
    assert talk.lines("STARTTLS") == [TLS_ACTIVE]


def test_a_failed_handshake_ends_the_dialogue_silently() -> None:
    talk = Talk.start()
    talk.handshake = lambda: False
    talk.lines("EHLO client.test")
    assert talk.lines("STARTTLS") == [READY]
    assert talk.closed and talk.reports == []


def test_starttls_not_available_without_a_context() -> None:
    talk = Talk.start(tls_context=None, auth_enabled=False)
    talk.lines("EHLO client.test")
    assert "STARTTLS" not in talk.sent[-1].text
    assert talk.lines("STARTTLS") == ["454 4.7.0 TLS not available"]


# Limits


def test_max_commands_counts_refused_lines_too() -> None:
    talk = Talk.start(max_commands=3)
    sent = talk.feed(b"NOOP\r\nBAD\nLINE\r\nNOOP\r\nNOOP\r\nNOOP\r\n")
    assert sent == [OK, BAD_LINE, OK, "421 4.7.0 Too many commands, closing connection"]
    assert talk.closed
    assert [command for command, *_ in talk.reported] == ["", ""]


def test_size_limit_by_parameter_and_by_body() -> None:
    talk = Talk.start(auth_enabled=False, max_message_bytes=1000)
    talk.lines("EHLO client.test")
    too_big = "552 5.3.4 Message size exceeds fixed maximum message size"
    assert talk.lines("MAIL FROM:<a@x.example> SIZE=1001") == [too_big]
    assert talk.reported[-1] == ("MAIL FROM:<a@x.example> SIZE=1001", too_big, "a@x.example", None)
    assert talk.lines("MAIL FROM:<a@x.example> SIZE=1000", "RCPT TO:<b@y.example>", "DATA") == [
        "250 2.1.0 Sender OK",
        "250 2.1.5 Recipient OK",
        "354 End data with <CR><LF>.<CR><LF>",
    ]
    assert talk.feed(b"x" * 500 + b"\r\n" + b"y" * 500 + b"\r\n") == []
    assert talk.dialogue.buffered < 1100
    assert talk.lines("z" * 5000) == []
    assert talk.dialogue.buffered < 1100
    assert talk.lines(".") == [too_big]
    assert talk.reported[-1] == ("DATA", too_big, "a@x.example", None)
    assert not any(isinstance(q, AskData) for q in talk.questions)
    assert talk.lines("NOOP") == [OK]


def test_parameters_need_ehlo() -> None:
    talk = Talk.start(auth_enabled=False)
    talk.lines("HELO client.test")
    assert talk.lines("MAIL FROM:<a@x.example> SIZE=10") == ["555 5.5.4 Parameters need EHLO"]


def test_too_many_recipients() -> None:
    talk = Talk.start(auth_enabled=False, max_recipients=2)
    talk.lines("EHLO client.test", "MAIL FROM:<a@x.example>")
    sent = talk.lines("RCPT TO:<r1@y.example>", "RCPT TO:<r2@y.example>", "RCPT TO:<r3@y.example>")
    assert sent == ["250 2.1.5 Recipient OK"] * 2 + ["452 4.5.3 Too many recipients"]
    assert talk.reported[-1] == ("RCPT TO:<r3@y.example>", sent[2], "a@x.example", "r3@y.example")
    assert len([q for q in talk.questions if isinstance(q, AskRcpt)]) == 2
    assert talk.lines("DATA", "hi", ".") == [
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 Queued",
    ]
    [data] = [q for q in talk.questions if isinstance(q, AskData)]
    assert data.envelope.rcpt_tos == ["r1@y.example", "r2@y.example"]


def test_smtputf8_addresses_need_the_parameter() -> None:
    talk = Talk.start(auth_enabled=False)
    talk.lines("EHLO client.test")
    assert talk.lines("MAIL FROM:<ä@x.example>") == [
        "553 5.6.7 Non-ASCII address requires SMTPUTF8"
    ]
    talk.lines("MAIL FROM:<ä@x.example> SMTPUTF8")
    assert talk.lines("RCPT TO:<ö@y.example>") == ["250 2.1.5 Recipient OK"]


# Deadlines, the end of input, shutdown


def test_a_command_line_has_one_deadline_however_it_trickles_in() -> None:
    talk = Talk.start()
    for octet in b"NOOP":
        talk.feed(bytes([octet]))
    assert talk.waits[1:] == [NeedInput(Awaiting.COMMAND, starts=False)] * 4
    assert talk.feed(b"\r\n") == [OK]
    assert talk.waits[-1] == NeedInput(Awaiting.COMMAND, starts=True)


def test_a_data_body_has_one_deadline_from_the_354() -> None:
    talk = Talk.start(auth_enabled=False)
    talk.lines("EHLO c.test", "MAIL FROM:<a@x.example>", "RCPT TO:<b@y.example>", "DATA")
    assert talk.waits[-1] == NeedInput(Awaiting.BODY, starts=True)
    start = len(talk.waits)
    for _ in range(5):
        talk.lines("line")
    assert talk.waits[start:] == [NeedInput(Awaiting.BODY, starts=False)] * 5
    assert not talk.dialogue.awaiting_command


@pytest.mark.parametrize("state", ["after EHLO", "MAIL given", "in DATA", "in AUTH continuation"])
def test_a_deadline_passing_ends_the_dialogue_with_421(state: str) -> None:
    talk = Talk.start()
    talk.one_by_one(*STATES[state])
    talk.dialogue.timed_out()
    talk.run()
    assert [key(reply) for reply in talk.sent[-1:]] == [
        "421 4.4.2 Timeout exceeded, closing connection"
    ]
    assert talk.reported[-1][:2] == ("", "421 4.4.2 Timeout exceeded, closing connection")
    assert talk.closed


@pytest.mark.parametrize("state", list(STATES))
def test_the_end_of_input_ends_the_dialogue_silently(state: str) -> None:
    talk = Talk.start()
    talk.one_by_one(*STATES[state])
    sent = len(talk.sent)
    talk.feed(b"NOOP")  # an unfinished line is dropped with the connection
    talk.dialogue.receive_eof()
    assert talk.run() == Close()
    assert len(talk.sent) == sent
    talk.dialogue.receive(b"NOOP\r\n")
    assert talk.run() == Close()


def test_the_end_of_input_comes_after_what_was_sent_before_it() -> None:
    talk = Talk.start(auth_enabled=False)
    talk.dialogue.receive(b"EHLO c.test\r\nNOOP\r\n")
    talk.dialogue.receive_eof()
    talk.run()
    assert [key(reply) for reply in talk.sent[1:]] == [EHLO, OK]
    assert talk.closed


@pytest.mark.parametrize(
    ("state", "ends"),
    [
        ("before EHLO", True),
        ("after EHLO", True),
        ("authenticated", True),
        ("MAIL given", False),
        ("RCPT given", False),
        ("in DATA", False),
        ("in AUTH continuation", False),
    ],
)
def test_shutdown_ends_only_a_dialogue_idle_between_transactions(state: str, ends: bool) -> None:
    talk = Talk.start()
    talk.one_by_one(*STATES[state])
    assert talk.dialogue.awaiting_command is (state not in ("in DATA", "in AUTH continuation"))
    assert talk.dialogue.shutdown() is ends
    talk.run()
    if ends:
        assert key(talk.sent[-1]) == "421 4.3.2 Service shutting down, closing connection"
        assert talk.reported[-1][:2] == ("", key(talk.sent[-1]))
        assert talk.closed
    else:
        assert not talk.closed and talk.dialogue.phase is not Phase.CLOSED


def test_shutdown_waits_for_the_transaction_to_end() -> None:
    talk = Talk.start(auth_enabled=False)
    talk.lines("EHLO c.test", "MAIL FROM:<a@x.example>", "RCPT TO:<b@y.example>", "DATA")
    assert not talk.dialogue.shutdown()
    assert talk.lines("last words", ".") == ["250 2.0.0 Queued"]
    assert talk.dialogue.shutdown()
    talk.run()
    assert talk.closed


def test_shutdown_does_not_preempt_input_already_received() -> None:
    talk = Talk.start()
    talk.dialogue.receive(b"NOOP\r\n")
    assert not talk.dialogue.shutdown()  # the NOOP is answered first
    talk.run()
    assert key(talk.sent[-1]) == OK


# Random command sequences and byte chunks

SESSION = [
    b"EHLO c.test\r\n",
    b"STARTTLS\r\n",
    b"EHLO c.test\r\n",
    f"AUTH PLAIN {PLAIN_OK}\r\n".encode(),
    b"MAIL FROM:<a@x.example> SIZE=100\r\n",
    b"RCPT TO:<b@y.example>\r\n",
    b"RCPT TO:<nobody@y.example>\r\n",
    b"DATA\r\n",
    b"Subject: x\r\n\r\nbody\r\n..stuffed\r\n",
    b".\r\n",
    b"MAIL FROM:<>\r\n",
    b"RCPT TO:<c@y.example>\r\n",
    b"DATA\r\n",
    b"hi\r\n.\r\n",
    b"QUIT\r\n",
]
"""A whole session, line by line, that random edits then spoil."""
AUTHS = [
    [f"AUTH PLAIN {PLAIN_OK}\r\n".encode()],
    [b"AUTH PLAIN\r\n", f"{PLAIN_OK}\r\n".encode()],
    [b"AUTH LOGIN\r\n", f"{b64(USER)}\r\n".encode(), f"{b64(PASSWORD)}\r\n".encode()],
    [f"AUTH LOGIN {b64(USER)}\r\n".encode(), f"{b64(PASSWORD)}\r\n".encode()],
]
"""The ways to authenticate, in place of ``SESSION``'s."""
BODIES = [
    b"Subject: x\r\n\r\nbody\r\n..stuffed\r\n",
    b"bare\nLF\r\n",
    b"z" * 999 + b"\r\n",
    b"w" * 2500 + b"\r\n",
]
"""Bodies taken and refused, in place of ``SESSION``'s."""
LINES = [
    b"HELO c.test\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    f"{b64(USER)}\r\n".encode(),
    f"{b64(PASSWORD)}\r\n".encode(),
    b"*\r\n",
    b"=\r\n",
    b"MAIL FROM:<refused@x.example> SMTPUTF8\r\n",
    b"RCPT TO:<d@y.example>\r\n",
    b"\r\n.\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"BDAT 3 LAST\r\nabc",
    b"bare\nLF\r\n",
    b"\x00\xff\r\n",
    b"x" * 700,
    b"y" * 2100 + b"\r\n",
    b"\r",
    b"\n",
    *SESSION,
]
EVENTS = ("eof", "timeout", "shutdown")
FUZZ_CONFIG = replace(
    CONFIG, max_line_length=512, max_message_bytes=2000, max_recipients=3, max_commands=60
)
FUZZ = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def sessions(draw: st.DrawFn) -> list[bytes | str]:
    """``SESSION`` (one of ``AUTHS``, one of ``BODIES``) with lines dropped, repeated, swapped for
    others or for random bytes, cut into writes anywhere, with a stray end of input, deadline or
    shutdown."""
    lines = [*SESSION[:3], *draw(st.sampled_from(AUTHS)), *SESSION[4:8]]
    lines += [draw(st.sampled_from(BODIES)), *SESSION[9:]]
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(lines)))
        edit = draw(st.sampled_from(["insert", "insert", "delete", "noise"]))
        if edit == "delete" and at < len(lines):
            del lines[at]
        elif edit == "noise":
            lines.insert(at, draw(st.binary(max_size=24)))
        else:
            lines.insert(at, draw(st.sampled_from(LINES)))
    writes: list[bytes] = []
    for line in lines:
        cuts = draw(st.lists(st.integers(1, max(len(line) - 1, 1)), max_size=2))
        pieces = [line[a:b] for a, b in itertools.pairwise([0, *sorted(set(cuts)), len(line)])]
        pipelined = draw(st.booleans())
        if writes and b"STARTTLS\r\n" in writes[-1]:
            pipelined = draw(st.integers(0, 3)) == 0  # then dropped, mostly not
        if writes and pipelined:
            writes[-1] += pieces.pop(0)
        writes += [piece for piece in pieces if piece]
    steps: list[bytes | str] = list(writes)
    event = draw(st.sampled_from([None, None, *EVENTS]))
    if event is not None:
        steps.insert(draw(st.integers(0, len(steps))), event)
    return steps


def scripted(draw: st.DataObject) -> Callable[[Ask], Answer]:
    """A handler whose every answer is drawn: mostly the script's, else a
    refusal, a failure or nothing."""
    script = Script()

    def answer(question: Ask) -> Answer:
        choice = draw.draw(st.sampled_from(["script"] * 12 + ["refuse", "fail", "none"]))
        if choice == "script":
            return script(question)
        if choice == "refuse":
            return None if isinstance(question, Report) else Reply(550, "5.7.1", "No")
        return Failure if choice == "fail" else None

    return answer


def check_waiting(talk: Talk, action: NeedInput | Close) -> None:
    """A wait is legitimate: nothing handled is pending, and the buffer is bounded."""
    dialogue = talk.dialogue
    if isinstance(action, Close):
        assert dialogue.phase is Phase.CLOSED
        assert dialogue.next_action() == Close()
        return
    assert action.awaiting is AWAITING[dialogue.phase]
    again = dialogue.next_action()
    assert again == NeedInput(action.awaiting, starts=False), "input was left unhandled"
    config = dialogue.config
    if dialogue.phase is Phase.BODY:
        assert dialogue.buffered <= 2 * config.max_message_bytes + 16
    else:
        assert dialogue.buffered <= config.max_line_length


@FUZZ
@given(
    script=st.data(),
    writes=sessions(),
    loopback=st.booleans(),
    handshake=st.sampled_from([True, True, True, False]),
)
def test_random_input_never_raises_nor_hangs(
    script: st.DataObject, writes: list[bytes | str], loopback: bool, handshake: bool
) -> None:
    config = replace(FUZZ_CONFIG, allow_plaintext_auth_on_loopback=loopback)
    peer = "127.0.0.1" if loopback else "192.0.2.1"
    session = Session(id="s1", peer_host=peer, peer_port=1, local_host="", local_port=587)
    talk = Talk(ServerDialogue(config, session), scripted(script), lambda: handshake)
    action = talk.run()
    for write in writes:
        check_waiting(talk, action)
        if isinstance(write, bytes):
            talk.dialogue.receive(write)
        elif write == "eof":
            talk.dialogue.receive_eof()
        elif write == "timeout":
            talk.dialogue.timed_out()
        else:
            talk.dialogue.shutdown()
        action = talk.run()
    check_waiting(talk, action)
    for reply in talk.sent:
        assert 200 <= reply.code < 600 and reply.encode().endswith(b"\r\n")
    # It can always be brought to an end: any body ends, any AUTH exchange fails.
    talk.dialogue.receive(b"\r\n.\r\nQUIT\r\nQUIT\r\nQUIT\r\n")
    talk.run()
    assert talk.closed
