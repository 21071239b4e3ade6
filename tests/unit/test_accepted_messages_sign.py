"""Whatever acceptance answers 250 can be signed, verifies with dkimpy, and can be sent.

Messages are drawn by Hypothesis from header lines of every kind: fields,
fields in the obsolete syntax (white space before the colon), folded ones,
and lines that are part of no field (no colon, a space, a control or a
non-ASCII octet in the name). Each goes through what the submission server
does: the SMTP reader's DATA checks (``engine.smtp.reader``), the header
section (``parse_header_fields``, refused with 550 5.6.0 when malformed), the
header From check, then ``plan_submission``. Accepted bodies are signed by
``DkimSigner`` and checked by dkimpy; the signed copy, made transparent as
``smtp_out`` sends it, must come out of the SMTP reader unchanged.
"""

from __future__ import annotations

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dkim.keys import generate_key, load_private_key
from engine.dkim.signer import DkimSigner, DkimSignError
from engine.header_section import MalformedHeader
from engine.model import Tenant
from engine.smtp.client import stuff
from engine.smtp.reader import MessageBody, MessageRejected, SmtpReader
from engine.submission.acceptance import from_domains, parse_header_fields, plan_submission
from tests.unit.test_acceptance import RX
from tests.unit.test_dkim_sign import DOMAIN, NOW, SELECTOR, dns_for

TENANT = Tenant(id=1, name="acme", created_at=NOW)
SENDING_DOMAINS = frozenset({DOMAIN})
PAIRS = {"rsa": generate_key("rsa"), "ed25519": generate_key("ed25519")}
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

FTEXT = bytes(range(0x21, 0x3A)) + bytes(range(0x3B, 0x7F))
NAME_INTRUDERS = [b" ", b"\t", b"\x01", b"\x7f", b"\xc3\xa9", b"\xff", b":"]
VALUE_OCTETS = [bytes([o]) for o in range(0x01, 0x100) if o not in (0x0A, 0x0D)]

names = st.one_of(
    st.sampled_from([b"Subject", b"To", b"Cc", b"Date", b"Message-ID", b"X-Campaign", b"List-Id"]),
    st.binary(min_size=1, max_size=12).map(lambda b: bytes(FTEXT[o % len(FTEXT)] for o in b)),
)
bad_names = st.tuples(names, st.sampled_from(NAME_INTRUDERS), names).map(b"".join)
values = st.lists(st.sampled_from(VALUE_OCTETS), max_size=40).map(b"".join)
before_colon = st.sampled_from([b"", b"", b"", b" ", b"\t", b" \t "])
continuations = st.lists(
    st.tuples(st.sampled_from([b" ", b"\t", b"   "]), values).map(b"".join), max_size=2
)
fields = st.builds(
    lambda name, space, value, folds: b"\r\n".join([name + space + b":" + value, *folds]),
    st.one_of(names, names, names, bad_names),
    before_colon,
    values,
    continuations,
)
other_lines = st.one_of(
    values,
    st.sampled_from([b" starts with a space", b"From alice Mon Nov  2 10:00:00 2026", b"."]),
)
header_froms = st.sampled_from(
    [
        f"From: news@{DOMAIN}".encode(),
        f"From : News <news@{DOMAIN}>".encode(),
        f"FROM:\r\n <news@{DOMAIN}>".encode(),
        f'from\t:\t"N, A" <news@{DOMAIN}>'.encode(),
    ]
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """DATA as a client might send it: header lines of every kind, mostly an empty
    line and a body."""
    lines = draw(st.lists(st.one_of(fields, fields, fields, other_lines), max_size=8))
    lines.insert(draw(st.integers(0, len(lines))), draw(header_froms))
    if draw(st.integers(0, 9)) == 0:
        return b"\r\n".join([*lines, b""])  # header only, no empty line
    body = draw(st.lists(st.one_of(values, other_lines), max_size=4))
    return b"\r\n".join([*lines, b"", *body, b""])


def through_the_wire(data: bytes) -> MessageBody | MessageRejected:
    """What the SMTP reader hands on after DATA, for ``data`` sent transparently."""
    reader = SmtpReader(max_message_bytes=1_000_000)
    reader.start_data()
    reader.feed(b"".join(stuff(data)))
    event = reader.next_event()
    assert isinstance(event, MessageBody | MessageRejected)
    return event


def sign(body: bytes, algorithm: str) -> bytes:
    key = load_private_key(PAIRS[algorithm].private_pem)
    return DkimSigner().sign(body, DOMAIN, SELECTOR, algorithm, key, now=NOW)


def accepted_body(data: bytes) -> bytes | None:
    """The stored body when the submission server would answer 250, else None.

    The checks of ``SubmissionHandler.on_data``, in its order.
    """
    received = through_the_wire(data)
    if not isinstance(received, MessageBody):
        return None
    try:
        fields = parse_header_fields(received.body)
    except MalformedHeader:
        return None
    domains = from_domains(fields)
    if not domains or any(d not in SENDING_DOMAINS for d in domains):
        return None
    submission, _ = plan_submission(
        tenant=TENANT,
        sender=f"news@{DOMAIN}",
        recipients=["someone@example.org"],
        raw=received.body,
        fields=fields,
        submission_id="0190000000000000000000000001",
        now=NOW,
        reception=RX,
    )
    return submission.body


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
@PROPERTY
@given(data=messages())
def test_every_accepted_message_is_signed_verifiably_and_can_be_sent(
    algorithm: str, data: bytes
) -> None:
    body = accepted_body(data)
    if body is None:
        return
    signed = sign(body, algorithm)
    assert dkim.verify(signed, dnsfunc=dns_for(PAIRS[algorithm])), signed
    assert through_the_wire(signed) == MessageBody(signed)


@PROPERTY
@given(data=messages())
def test_acceptance_and_the_signer_refuse_the_same_header_sections(data: bytes) -> None:
    refused_by_acceptance = refused_by_signer = False
    try:
        parse_header_fields(data)
    except MalformedHeader:
        refused_by_acceptance = True
    try:
        sign(data, "ed25519")
    except DkimSignError as exc:
        refused_by_signer = "malformed" in str(exc)
    assert refused_by_acceptance == refused_by_signer


def test_the_drawn_messages_include_both_verdicts() -> None:
    """The property above is not vacuous: some drawn messages are accepted, some refused."""
    verdicts: set[bool] = set()

    @settings(PROPERTY, max_examples=40)
    @given(data=messages())
    def collect(data: bytes) -> None:
        verdicts.add(accepted_body(data) is not None)

    collect()
    assert verdicts == {True, False}
